"""Tests of cnngen.solver: valid shapes for every input, pinned values kept or rejected."""

import pytest

from cnngen.errors import SolverError
from cnngen.grammar import parse
from cnngen.solver import conv_output_size, solve
from conftest import INPUT_SHAPES, read_original_phrases

FIVE_BLOCKS = "input " + "conv max_pooling " * 5 + "flatten dense output"


def _spatial_sizes(resolved):
    return [layer.output_shape[0] for layer in resolved.layers if len(layer.output_shape) == 3]


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
@pytest.mark.parametrize("phrase", read_original_phrases() + [FIVE_BLOCKS])
def test_solve_keeps_sizes_positive(phrase, input_shape):
    for seed in range(10):
        resolved = solve(parse(phrase), input_shape, 10, seed)
        assert min(_spatial_sizes(resolved)) >= 1
        assert resolved.architecture.is_fully_pinned
        assert resolved.layers[-1].output_shape == (10,)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_solve_matches_merged_branches(input_shape):
    for phrase in read_original_phrases():
        for seed in range(10):
            for layer in solve(parse(phrase), input_shape, 10, seed).layers:
                if layer.class_name == "Add":
                    assert layer.input_shapes[0] == layer.input_shapes[1]
                if layer.class_name == "Concatenate":
                    assert layer.input_shapes[0][:2] == layer.input_shapes[1][:2]


def test_solve_same_seed_same_network():
    phrase = read_original_phrases()[7]
    first = solve(parse(phrase), (28, 28, 1), 10, seed=3)
    second = solve(parse(phrase), (28, 28, 1), 10, seed=3)
    other = solve(parse(phrase), (28, 28, 1), 10, seed=4)
    assert first.to_phrase() == second.to_phrase()
    assert first.layers == second.layers
    assert first.to_phrase() != other.to_phrase()


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_pinned_phrase_solves_to_itself(input_shape):
    for phrase in read_original_phrases():
        resolved = solve(parse(phrase), input_shape, 10, seed=11)
        again = solve(parse(resolved.to_phrase()), input_shape, 10, seed=999)
        assert again.to_phrase() == resolved.to_phrase()
        assert again.layers == resolved.layers


def test_solve_keeps_pinned_values():
    phrase = "input conv(filters=24, kernel=5, stride=1, padding=valid, activation=tanh) flatten dense(units=40) dense output"
    resolved = solve(parse(phrase), (28, 28, 1), 10)
    conv = resolved.layers[1]
    assert conv.config == {
        "filters": 24,
        "kernel_size": 5,
        "strides": 1,
        "padding": "valid",
        "activation": "tanh",
    }
    assert conv.output_shape == (24, 24, 24)
    assert resolved.layers[3].config["units"] == 40


def test_empty_right_keeps_shape():
    phrase = (
        "input conv [ ( max_pooling conv avg_pooling , Empty ) ](merge=add) flatten dense output"
    )
    for seed in range(30):
        resolved = solve(parse(phrase), (32, 32, 3), 10, seed)
        add = next(layer for layer in resolved.layers if layer.class_name == "Add")
        assert add.input_shapes[0] == add.input_shapes[1] == resolved.layers[1].output_shape


INVALID_PINS = [
    (
        "input conv(kernel=9, padding=valid) flatten dense output",
        (8, 8, 1),
        r"kernel 9 is larger than its 8x8 input",
    ),
    (
        "input conv max_pooling(pool=3, padding=valid, stride=3) conv(kernel=5, padding=valid) flatten dense output",
        (8, 8, 1),
        r"larger than its",
    ),
    (
        "input conv flatten dense(units=5) output",
        (8, 8, 1),
        r"needs one unit per class \(10\), not 5",
    ),
    ("input conv flatten dense(activation=relu) output", (8, 8, 1), r"activation must be softmax"),
    (
        "input conv(filters=8) [ ( conv(filters=4) , Empty ) ](merge=add) flatten dense output",
        (8, 8, 1),
        r"merge=add needs equal channels.*8.*4|left branch ends with 4 and the right with 8",
    ),
    (
        "input conv [ ( conv(stride=2) , Empty ) ] flatten dense output",
        (8, 8, 1),
        r"branches end at different sizes",
    ),
]


@pytest.mark.parametrize("phrase, input_shape, pattern", INVALID_PINS)
def test_solve_rejects_invalid_pins(phrase, input_shape, pattern):
    with pytest.raises(SolverError, match=pattern):
        solve(parse(phrase), input_shape, 10)


@pytest.mark.parametrize(
    "input_shape, num_classes, pattern",
    [
        ((8, 8), 10, "height, width, channels"),
        ((8, 6, 1), 10, "square"),
        ((8, 8, 1), 1, "num_classes"),
        ((0, 0, 1), 10, "positive"),
    ],
)
def test_solve_rejects_bad_inputs(input_shape, num_classes, pattern):
    with pytest.raises(SolverError, match=pattern):
        solve(parse("input conv flatten dense output"), input_shape, num_classes)


@pytest.mark.parametrize(
    "size, kernel, stride, padding, expected",
    [
        (8, 3, 1, "same", 8),
        (8, 3, 2, "same", 4),
        (7, 3, 2, "same", 4),
        (8, 3, 1, "valid", 6),
        (8, 3, 2, "valid", 3),
        (1, 1, 4, "valid", 1),
    ],
)
def test_conv_output_size(size, kernel, stride, padding, expected):
    assert conv_output_size(size, kernel, stride, padding) == expected
