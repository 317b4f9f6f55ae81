"""Tests of cnngen.code_features on emitted, hand-written and edited Keras sources, and of
the same features read from architecture objects."""

import pytest

from cnngen.code_features import (
    CODE_FEATURE_COLUMNS,
    architecture_code_features,
    code_feature_frame,
    code_features,
    stored_code_features,
)
from cnngen.errors import CNNGenError
from cnngen.generation import sampling_config
from cnngen.grammar import parse
from cnngen.keras_source import emit_source, write_source
from cnngen.sampling import sample_many
from cnngen.solver import solve

# A residual block around one convolution, two dropouts and a hidden dense layer.
RESIDUAL_PHRASE = (
    "input conv(filters=8, kernel=3, stride=1, padding=same, activation=relu) dropout(rate=0.2) "
    "[ ( conv(filters=8, kernel=5, stride=1, padding=same, activation=relu) , Empty ) ](merge=add) "
    "max_pooling(pool=2, stride=2, padding=valid) flatten dropout(rate=0.4) "
    "dense(units=16, activation=relu) dense output"
)
CHAIN_PHRASE = (
    "input conv(filters=4, kernel=3, stride=1, padding=valid, activation=tanh) flatten dense output"
)


def features_of(phrase: str) -> dict[str, float]:
    return code_features(emit_source(solve(parse(phrase), (8, 8, 1), 10, seed=0)))


def test_columns_are_unique_and_prefixed():
    assert len(set(CODE_FEATURE_COLUMNS)) == len(CODE_FEATURE_COLUMNS)
    assert all(name.startswith("code_") for name in CODE_FEATURE_COLUMNS)


RESIDUAL_EXPECTED = {
    "code_num_conv2d": 2,
    "code_num_dropout": 2,
    "code_num_add": 1,
    "code_num_maxpooling2d": 1,
    "code_num_flatten": 1,
    "code_num_dense": 2,
    "code_num_other_layers": 0,
    "code_filters_mean": 8,
    "code_filters_sum": 16,
    "code_kernel_size_mean": 4,
    "code_kernel_size_max": 5,
    "code_rate_max": 0.4,
    "code_rate_sum": pytest.approx(0.6),
    "code_units_sum": 26,  # 16 hidden units and NUM_CLASSES
    "code_units_max": 16,
    "code_padding_same": 2,
    "code_padding_valid": 1,
    "code_activation_relu": 3,
    "code_activation_softmax": 1,
    "code_num_merges": 1,
    "code_merge_inputs": 2,
    "code_width": 2,  # the merge's input waits while the convolution runs
    "code_depth": 10,  # input, conv, dropout, conv, add, pool, flatten, dropout, two dense
    "code_num_assignments": 10,
    "code_input_size": 8,
    "code_num_classes": 10,
}


@pytest.mark.parametrize(("name", "expected"), RESIDUAL_EXPECTED.items())
def test_residual_phrase(name, expected):
    assert features_of(RESIDUAL_PHRASE)[name] == expected


CHAIN_EXPECTED = {
    "code_num_conv2d": 1,
    "code_num_merges": 0,
    "code_width": 1,
    "code_depth": 4,
    "code_activation_tanh": 1,
    "code_rate_mean": 0,  # no dropout: statistics of absent keywords are 0
    "code_epsilon_max": 0,
}


@pytest.mark.parametrize(("name", "expected"), CHAIN_EXPECTED.items())
def test_chain_phrase(name, expected):
    assert features_of(CHAIN_PHRASE)[name] == expected


def test_tuple_kernel_counts_as_mean():
    source = emit_source(solve(parse(CHAIN_PHRASE), (8, 8, 1), 10, seed=0))
    edited = source.replace("kernel_size=3", "kernel_size=(3, 5)")
    assert code_features(edited)["code_kernel_size_mean"] == 4


def test_header_changes_no_feature():
    source = emit_source(solve(parse(RESIDUAL_PHRASE), (8, 8, 1), 10, seed=0))
    edited = source.replace('"""CNNGen architecture', '"""An edited\n\nCNNGen architecture', 1)
    assert edited != source
    assert code_features(edited) == code_features(source)


def test_unknown_layer_class_counted_as_other():
    source = emit_source(solve(parse(CHAIN_PHRASE), (8, 8, 1), 10, seed=0))
    edited = source.replace("layers.Flatten(", "layers.Reshape((-1,), ")
    features = code_features(edited)
    assert features["code_num_other_layers"] == 1
    assert features["code_num_flatten"] == 0


BAD_SOURCES = [
    ("def build_model(:\n", "not valid Python"),
    ("INPUT_SHAPE = (8, 8, 1)\nNUM_CLASSES = 10\n", "defines no build_model"),
    ("def build_model():\n    return None\n", r"defines no INPUT_SHAPE or NUM_CLASSES"),
]


@pytest.mark.parametrize(("source", "message"), BAD_SOURCES)
def test_bad_source_rejected(source, message):
    with pytest.raises(CNNGenError, match=message):
        code_features(source)


@pytest.mark.parametrize("sampling", ["configured", "original_effective"])
@pytest.mark.parametrize(
    ("shape", "classes"), [((8, 8, 1), 10), ((28, 28, 1), 10), ((32, 32, 3), 100)]
)
def test_object_path_equals_parsed_source(sampling, shape, classes):
    """Reading the layer graph gives, for every column, what parsing the emitted file gives."""
    config = sampling_config(sampling)
    for _, resolved in sample_many(11, 150, shape, classes, config):
        from_source = code_features(emit_source(resolved))
        assert architecture_code_features(resolved) == from_source, resolved.to_phrase()


def test_object_path_counts_lines_of_build_model():
    resolved = solve(parse("input conv flatten dense output"), (8, 8, 1), 10)
    assert (
        architecture_code_features(resolved)["code_num_lines"]
        == (code_features(emit_source(resolved))["code_num_lines"])
    )
    longer = solve(parse("input conv conv max_pooling flatten dense output"), (8, 8, 1), 10)
    difference = len(longer.layers) - len(resolved.layers)
    features = architecture_code_features(longer)
    assert features["code_num_lines"] == (
        architecture_code_features(resolved)["code_num_lines"] + difference
    )


def test_frame_from_sources_and_resolved():
    resolved = [r for _, r in sample_many(3, 4, (28, 28, 1), 10)]
    from_objects = code_feature_frame(resolved)
    from_sources = code_feature_frame([emit_source(r) for r in resolved])
    assert list(from_objects.columns) == list(CODE_FEATURE_COLUMNS)
    assert from_objects.equals(from_sources)


def test_stored_files_and_regenerated_sources_agree(tmp_path):
    import pandas as pd

    sampled = list(sample_many(4, 3, (8, 8, 1), 10))
    for index, (_, resolved) in enumerate(sampled):
        write_source(resolved, tmp_path / "architectures" / f"a{index}.py")
    rows = pd.DataFrame(
        {
            "arch_id": [f"a{i}" for i in range(3)],
            "phrase": [r.to_phrase() for _, r in sampled],
            "seed": [seed for seed, _ in sampled],
            "dataset": "digits",
            "code_path": [f"architectures/a{i}.py" for i in range(3)],
        }
    )
    from_files = stored_code_features(rows, tmp_path)
    regenerated = stored_code_features(rows.drop(columns=["code_path"]))
    assert from_files.equals(regenerated)
    assert list(from_files.index) == ["a0", "a1", "a2"]
