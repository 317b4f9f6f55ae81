"""Tests of cnngen.features on sampled and hand-written architectures."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cnngen.datasets import get_dataset_info
from cnngen.errors import CNNGenError
from cnngen.features import (
    FEATURE_COLUMNS,
    PAPER_FEATURES,
    architecture_features,
    feature_frame,
    resolve_stored,
    stored_features,
)
from cnngen.grammar import parse
from cnngen.metrics import compute_metrics
from cnngen.sampling import sample_many, sample_resolved
from cnngen.solver import solve

DATASETS = ["digits", "fashion_mnist", "cifar10", "cifar100"]

# A residual block around one convolution, two dropouts and a hidden dense layer.
RESIDUAL_PHRASE = (
    "input conv(filters=8, kernel=3, stride=1, padding=same, activation=relu) dropout(rate=0.2) "
    "[ ( conv(filters=8, kernel=5, stride=1, padding=same, activation=relu) , Empty ) ](merge=add) "
    "max_pooling(pool=2, stride=2, padding=valid) flatten dropout(rate=0.4) "
    "dense(units=16, activation=relu) dense output"
)


def sampled(dataset: str, count: int = 5, run_seed: int = 0):
    info = get_dataset_info(dataset)
    return list(sample_many(run_seed, count, info.input_shape, info.num_classes))


def test_paper_features_lead_the_columns():
    assert FEATURE_COLUMNS[:4] == PAPER_FEATURES
    assert PAPER_FEATURES == ("num_layers", "epochs", "flops", "params")
    assert len(set(FEATURE_COLUMNS)) == len(FEATURE_COLUMNS)


@pytest.mark.parametrize("dataset", DATASETS)
def test_paper_features_match_metrics(dataset):
    for _, resolved in sampled(dataset):
        metrics = compute_metrics(resolved)
        features = architecture_features(resolved, epochs=3)
        assert features["num_layers"] == metrics.num_layers == len(resolved.layers)
        assert features["flops"] == metrics.flops
        assert features["params"] == metrics.params
        assert features["depth"] == metrics.depth
        assert features["epochs"] == 3


def test_residual_phrase_features():
    resolved = solve(parse(RESIDUAL_PHRASE), (8, 8, 1), 10, seed=0)
    features = architecture_features(resolved, epochs=1)
    expected = {
        "num_conv2d": 2,
        "num_dropout": 2,
        "num_dense": 2,
        "num_add": 1,
        "num_concatenate": 0,
        "num_batch_normalization": 0,
        "num_max_pooling2d": 1,
        "num_merges": 1,
        "num_merge_bodies": 1,
        "num_identity_shortcuts": 1,
        "max_merge_nesting": 1,
        "kernel_mean": 4.0,
        "kernel_max": 5,
        "num_strided_conv2d": 0,
        "filters_mean": 8.0,
        "filters_max": 8,
        "filters_last": 8,
        "dropout_rate_max": 0.4,
        "hidden_dense_units": 16,
        "final_spatial_size": 4,
        "interstice_size": 4 * 4 * 8,
        "interstice_flatten": 1,
        "interstice_global_avg_pooling": 0,
        "activation_relu": 1.0,
        "activation_selu": 0.0,
        "input_size": 8,
        "input_channels": 1,
        "num_classes": 10,
    }
    for name, value in expected.items():
        assert features[name] == value, name
    assert features["dropout_rate_mean"] == pytest.approx(0.3)


def test_features_without_dropout_are_zero():
    phrase = (
        "input conv(filters=4, kernel=3, stride=1, padding=same, activation=tanh) "
        "global_avg_pooling dense output"
    )
    features = architecture_features(solve(parse(phrase), (8, 8, 1), 10), epochs=1)
    assert features["num_dropout"] == 0
    assert features["dropout_rate_mean"] == 0.0
    assert features["dropout_rate_max"] == 0.0
    assert features["hidden_dense_units"] == 0
    assert features["interstice_global_avg_pooling"] == 1
    assert features["activation_tanh"] == 1.0


def test_feature_frame_shape_and_epochs():
    resolved = [r for _, r in sampled("digits", count=4)]
    frame = feature_frame(resolved, [1, 2, 3, 4])
    assert list(frame.columns) == list(FEATURE_COLUMNS)
    assert len(frame) == 4
    assert frame["epochs"].tolist() == [1, 2, 3, 4]
    assert feature_frame(resolved, 5)["epochs"].tolist() == [5, 5, 5, 5]


def test_feature_frame_accepts_numpy_epochs():
    resolved = [r for _, r in sampled("digits", count=2)]
    frame = feature_frame(resolved, np.array([2, 3]))
    assert frame["epochs"].tolist() == [2, 3]


def test_feature_frame_rejects_count_mismatch():
    resolved = [r for _, r in sampled("digits", count=3)]
    with pytest.raises(CNNGenError, match="got 2 epoch counts for 3 architectures"):
        feature_frame(resolved, [1, 2])


@pytest.mark.parametrize("epochs", [0, -1, 2.5, True, "3", None])
def test_invalid_epochs_rejected(epochs):
    resolved = sample_resolved(1, (8, 8, 1), 10)
    with pytest.raises(CNNGenError, match="invalid epochs"):
        architecture_features(resolved, epochs)


@pytest.mark.parametrize("dataset", DATASETS)
def test_stored_phrase_gives_same_features(dataset):
    for seed, resolved in sampled(dataset, count=6, run_seed=3):
        rebuilt = resolve_stored(resolved.to_phrase(), seed, dataset)
        assert rebuilt.to_phrase() == resolved.to_phrase()
        assert architecture_features(rebuilt, 2) == architecture_features(resolved, 2)


def test_pinned_phrase_needs_no_seed():
    seed, resolved = sampled("digits", count=1)[0]
    rebuilt = resolve_stored(resolved.to_phrase(), None, "digits")
    assert architecture_features(rebuilt, 1) == architecture_features(resolved, 1)


def test_bare_phrase_without_seed_rejected():
    with pytest.raises(CNNGenError, match="leaves hyper-parameters open and has no seed"):
        resolve_stored("input conv flatten dense output", None, "digits")


def stored_rows(dataset="digits", count=4):
    rows = []
    for seed, resolved in sampled(dataset, count=count):
        rows.append(
            {
                "arch_id": f"a{seed}",
                "phrase": resolved.to_phrase(),
                "seed": seed,
                "dataset": dataset,
                "epochs": 2,
                "params": compute_metrics(resolved).params,
            }
        )
    return pd.DataFrame(rows)


def test_stored_features_indexed_by_arch_id():
    rows = stored_rows()
    features = stored_features(rows)
    assert list(features.index) == rows["arch_id"].tolist()
    assert features.index.name == "arch_id"
    assert (features["params"].to_numpy() == rows["params"].to_numpy()).all()
    assert (features["epochs"] == 2).all()


def test_stored_features_accept_nullable_integers():
    rows = stored_rows()
    for column in ("seed", "epochs", "params"):
        rows[column] = rows[column].astype("Int64")
    rows.loc[0, "params"] = pd.NA
    assert len(stored_features(rows)) == len(rows)


def test_stored_features_reject_other_dataset():
    rows = stored_rows("digits")
    rows["dataset"] = "cifar10"
    with pytest.raises(CNNGenError, match="stored with .* parameters but its phrase rebuilds"):
        stored_features(rows)


def test_stored_features_reject_missing_columns():
    rows = stored_rows().drop(columns=["seed"])
    with pytest.raises(CNNGenError, match=r"lacks the columns \['seed'\]"):
        stored_features(rows)


def test_stored_features_reject_missing_epochs():
    rows = stored_rows()
    rows["epochs"] = rows["epochs"].astype("Int64")
    rows.loc[1, "epochs"] = pd.NA
    with pytest.raises(CNNGenError, match="has no stored epoch count"):
        stored_features(rows)


def test_features_import_no_tensorflow():
    code = (
        "import sys, cnngen.features, cnngen.predictors, cnngen.evaluation, cnngen.analysis; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.split() == ["False", "False"]
