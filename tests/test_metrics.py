"""Tests of cnngen.metrics: analytic counts against Keras and hand computations."""

import pytest

from cnngen.grammar import parse
from cnngen.keras_source import emit_source
from cnngen.metrics import compute_metrics
from cnngen.sampling import sample_resolved
from cnngen.solver import solve
from conftest import INPUT_SHAPES, read_original_phrases


def _build(resolved):
    namespace = {}
    exec(compile(emit_source(resolved), "<emitted>", "exec"), namespace)
    return namespace["build_model"](resolved.input_shape, resolved.num_classes)


def test_hand_computed_counts():
    phrase = (
        "input conv(filters=4, kernel=3, stride=1, padding=same, activation=relu) "
        "max_pooling(pool=2, stride=2, padding=valid) flatten dense(units=10) output"
    )
    metrics = compute_metrics(solve(parse(phrase), (8, 8, 1), 10))
    conv_params = 3 * 3 * 1 * 4 + 4
    dense_params = 4 * 4 * 4 * 10 + 10
    assert metrics.params == conv_params + dense_params
    conv_flops = 2 * 3 * 3 * 1 * 8 * 8 * 4
    pool_flops = 2 * 2 * 4 * 4 * 4
    dense_flops = 2 * 64 * 10
    assert metrics.flops == conv_flops + pool_flops + dense_flops
    assert [c.flops for c in metrics.per_layer] == [0, conv_flops, pool_flops, 0, dense_flops]
    assert metrics.depth == 2


def test_batch_norm_counts_four_per_channel():
    phrase = (
        "input convbn(filters=8, kernel=1, stride=1, padding=same) global_avg_pooling dense output"
    )
    metrics = compute_metrics(solve(parse(phrase), (8, 8, 1), 10))
    bn = next(c for c in metrics.per_layer if c.class_name == "BatchNormalization")
    assert bn.params == 32
    assert bn.flops == 2 * 8 * 8 * 8


@pytest.mark.slow
@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_params_and_layers_equal_keras(input_shape):
    import keras

    resolved_list = [solve(parse(p), input_shape, 10, seed=5) for p in read_original_phrases()]
    resolved_list += [sample_resolved(seed, input_shape, 10) for seed in range(25)]
    for resolved in resolved_list:
        model = _build(resolved)
        metrics = compute_metrics(resolved)
        assert metrics.params == model.count_params(), resolved.to_phrase()
        assert metrics.num_layers == len(model.layers), resolved.to_phrase()
        costs = {cost.name: cost for cost in metrics.per_layer}
        for layer in model.layers:
            assert tuple(layer.output.shape[1:]) == costs[layer.name].output_shape
            assert layer.count_params() == costs[layer.name].params
        keras.backend.clear_session()


def test_as_dict_is_json_ready():
    import json

    metrics = compute_metrics(sample_resolved(1, (28, 28, 1), 10))
    document = json.loads(json.dumps(metrics.as_dict()))
    assert document["params"] == metrics.params
    assert len(document["per_layer"]) == metrics.num_layers
