"""Tests of cnngen.graph on hand-written and sampled architectures."""

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest

from cnngen.errors import CNNGenError
from cnngen.grammar import parse
from cnngen.graph import (
    ACTIVATION_VOCABULARY,
    FEATURE_NAMES,
    KIND_VOCABULARY,
    NUMERIC_ATTRIBUTES,
    architecture_graph,
)
from cnngen.sampling import sample_many
from cnngen.solver import solve

RESIDUAL_PHRASE = (
    "input conv(filters=32, kernel=3, stride=2, padding=same, activation=relu) "
    "[ ( conv(filters=32, kernel=4, stride=1, padding=same, activation=relu) , Empty ) ]"
    "(merge=add) dropout(rate=0.5) flatten dense(units=64, activation=relu) "
    "dense(units=10, activation=softmax) output"
)


@pytest.fixture(scope="module")
def residual():
    return solve(parse(RESIDUAL_PHRASE), (28, 28, 1), 10, seed=0)


@pytest.fixture(scope="module")
def sampled():
    return [resolved for _, resolved in sample_many(3, 20, (32, 32, 3), 10)]


def feature(graph, node: int, name: str) -> float:
    return float(graph.node_features[node, FEATURE_NAMES.index(name)])


def test_nodes_follow_keras_layers(residual):
    graph = architecture_graph(residual)
    assert graph.node_kinds == [layer.class_name for layer in residual.layers]
    assert graph.num_nodes == 8
    assert graph.node_features.shape == (8, len(FEATURE_NAMES))
    assert graph.node_features.dtype == np.float32


def test_edges_point_from_input_to_reader(residual):
    graph = architecture_graph(residual)
    names = [layer.name for layer in residual.layers]
    add = names.index("add_1")
    expected_sources = {names.index("conv2d_1"), names.index("conv2d_2")}
    assert set(np.flatnonzero(graph.adjacency[:, add])) == expected_sources
    assert graph.adjacency[names.index("input_1"), names.index("conv2d_1")] == 1
    assert graph.adjacency[names.index("conv2d_1"), names.index("input_1")] == 0


def test_feature_names_cover_every_column():
    assert len(FEATURE_NAMES) == len(KIND_VOCABULARY) + len(ACTIVATION_VOCABULARY) + len(
        NUMERIC_ATTRIBUTES
    )
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


# (layer position, feature, expected value) for RESIDUAL_PHRASE on a 28x28x1 input.
ATTRIBUTES = [
    (0, "kind_InputLayer", 1.0),
    (0, "output_size", math.log2(29) / 8),
    (0, "width", math.log2(2) / 10),
    (1, "kind_Conv2D", 1.0),
    (1, "activation_relu", 1.0),
    (1, "kernel", 3 / 7),
    (1, "stride", 1.0),
    (1, "width", math.log2(33) / 10),
    (1, "output_size", math.log2(15) / 8),
    (2, "kernel", 4 / 7),
    (2, "stride", 0.5),
    (3, "kind_Add", 1.0),
    (3, "kernel", 0.0),
    (4, "dropout_rate", 0.5),
    (5, "kind_Flatten", 1.0),
    (5, "output_size", 0.0),
    (5, "width", math.log2(1 + 14 * 14 * 32) / 10),
    (6, "width", math.log2(65) / 10),
    (7, "activation_softmax", 1.0),
    (7, "activation_relu", 0.0),
]


@pytest.mark.parametrize(("node", "name", "expected"), ATTRIBUTES)
def test_node_attribute_values(residual, node, name, expected):
    graph = architecture_graph(residual)
    assert feature(graph, node, name) == pytest.approx(expected, rel=1e-6)


def test_sampled_graphs_are_acyclic_and_connected(sampled):
    for resolved in sampled:
        graph = architecture_graph(resolved)
        edges = sum(len(layer.inputs) for layer in resolved.layers)
        assert graph.adjacency.sum() == edges
        # The solver's order is topological, so every edge points forward.
        assert not np.tril(graph.adjacency).any()
        # Every node but the input reads something, and every node but the output is read.
        assert (graph.adjacency[:, 1:].sum(axis=0) >= 1).all()
        assert (graph.adjacency[:-1].sum(axis=1) >= 1).all()


def test_sampled_graphs_one_hot_kinds(sampled):
    kinds = slice(0, len(KIND_VOCABULARY))
    for resolved in sampled:
        graph = architecture_graph(resolved)
        np.testing.assert_array_equal(graph.node_features[:, kinds].sum(axis=1), 1.0)
        assert np.isfinite(graph.node_features).all()
        assert graph.node_features.min() >= 0


def test_same_architecture_same_graph(sampled):
    first = architecture_graph(sampled[0])
    second = architecture_graph(sampled[0])
    np.testing.assert_array_equal(first.adjacency, second.adjacency)
    np.testing.assert_array_equal(first.node_features, second.node_features)


def with_layer(resolved, index: int, **changes):
    layers = list(resolved.layers)
    layers[index] = dataclasses.replace(layers[index], **changes)
    return dataclasses.replace(resolved, layers=tuple(layers))


BAD_LAYERS = [
    (2, {"class_name": "LSTM"}, "Keras class 'LSTM'"),
    (1, {"inputs": ("conv2d_2",)}, "reads 'conv2d_2', which is not an earlier layer"),
    (1, {"inputs": ("missing_1",)}, "reads 'missing_1'"),
]


@pytest.mark.parametrize(("index", "changes", "message"), BAD_LAYERS)
def test_bad_layer_graph_rejected(residual, index, changes, message):
    with pytest.raises(CNNGenError, match=message):
        architecture_graph(with_layer(residual, index, **changes))


def test_import_stays_light():
    code = (
        "import sys, cnngen.graph; "
        "print(sorted({'torch', 'tensorflow', 'keras'} & set(sys.modules)))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert output.returncode == 0, output.stderr
    assert output.stdout.strip() == "[]"
