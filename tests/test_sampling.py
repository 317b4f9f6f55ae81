"""Tests of cnngen.sampling: seeded derivations that follow the configured probabilities."""

import statistics

import pytest

from cnngen.architecture import CONVOLUTIONS, Merge
from cnngen.grammar import parse
from cnngen.sampling import (
    SamplingConfig,
    architecture_seeds,
    sample_architecture,
    sample_many,
    sample_resolved,
)
from conftest import INPUT_SHAPES


def test_same_seed_same_architecture():
    assert sample_architecture(7) == sample_architecture(7)
    assert [sample_architecture(s).to_phrase() for s in range(20)] == [
        sample_architecture(s).to_phrase() for s in range(20)
    ]


def test_different_seeds_differ():
    phrases = {sample_architecture(s).to_phrase() for s in range(50)}
    assert len(phrases) > 40


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_sampled_phrases_parse_and_solve(input_shape):
    for seed in range(200):
        resolved = sample_resolved(seed, input_shape, 10)
        assert parse(resolved.to_phrase()) == resolved.architecture
        assert parse(resolved.architecture.to_bare_phrase()) == sample_architecture(seed)


def test_block_and_dense_counts_follow_config():
    blocks, dense = [], []
    for seed in range(600):
        architecture = sample_architecture(seed)
        blocks.append(
            sum(1 for n in architecture.features if isinstance(n, Merge) or n.kind in CONVOLUTIONS)
        )
        dense.append(sum(1 for layer in architecture.head if layer.kind == "dense"))
    assert set(blocks) == {3, 4, 5}
    assert set(dense) == {1, 2, 3}
    assert statistics.mean(blocks) == pytest.approx(4.0, abs=0.15)


def test_merge_share_follows_config():
    merges = total = 0
    for seed in range(600):
        for node in sample_architecture(seed).features:
            if isinstance(node, Merge) or node.kind in CONVOLUTIONS:
                total += 1
                merges += isinstance(node, Merge)
    assert merges / total == pytest.approx(1 / 3, abs=0.04)


def test_original_effective_config_always_pools():
    config = SamplingConfig.original_effective()
    for seed in range(100):
        features = sample_architecture(seed, config).features
        blocks = [
            i for i, n in enumerate(features) if isinstance(n, Merge) or n.kind in CONVOLUTIONS
        ]
        for index in blocks:
            following = features[index + 1 : index + 3]
            assert any(n.kind in ("max_pooling", "avg_pooling") for n in following)


def test_no_merges_when_probability_zero():
    config = SamplingConfig(merge_probability=0.0)
    assert all("[" not in sample_architecture(s, config).to_phrase() for s in range(100))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"merge_probability": 1.5}, "merge_probability must be in"),
        ({"feature_blocks": ()}, "feature_blocks must be"),
        ({"dense_layers": (0,)}, "dense_layers must be"),
    ],
)
def test_config_rejects_bad_values(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        SamplingConfig(**kwargs)


def test_architecture_seeds_distinct_and_stable():
    seeds = architecture_seeds(42, 500)
    assert len(set(seeds)) == 500
    assert seeds == architecture_seeds(42, 500)
    assert seeds[:10] != architecture_seeds(43, 10)


def test_sample_many_yields_count():
    pairs = list(sample_many(1, 5, (8, 8, 1), 10))
    assert [seed for seed, _ in pairs] == architecture_seeds(1, 5)
