"""Architecture graphs: the Keras layer graph as nodes, directed edges and node features.

:func:`architecture_graph` turns the layer graph of a resolved architecture into an
:class:`ArchitectureGraph`, the input of the graph predictor (:mod:`cnngen.predictors.neural`).
Each Keras layer is one node, and each connection from a layer to a layer that reads it is one
directed edge. A node's features are a one-hot encoding of its Keras class
(:data:`KIND_VOCABULARY`) and of its activation (:data:`ACTIVATION_VOCABULARY`), followed by a
few numeric attributes scaled to about [0, 1] (:data:`NUMERIC_ATTRIBUTES`).

Solving shapes is left to :mod:`cnngen.solver`, and learning on graphs to
:mod:`cnngen.predictors.neural`. Nothing here imports TensorFlow or PyTorch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from cnngen.architecture import ACTIVATIONS
from cnngen.errors import CNNGenError
from cnngen.solver import KerasLayer, ResolvedArchitecture

logger = logging.getLogger(__name__)

# Every Keras class the solver emits, in the order of the one-hot columns.
KIND_VOCABULARY = (
    "InputLayer",
    "Conv2D",
    "BatchNormalization",
    "MaxPooling2D",
    "AveragePooling2D",
    "Dropout",
    "Add",
    "Concatenate",
    "Flatten",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Dense",
)
ACTIVATION_VOCABULARY = ACTIVATIONS

# Numeric node attributes, scaled so that the values the solver draws fall in [0, 1]. Values
# pinned in a phrase may exceed 1. Layers without an attribute get 0.
#   kernel        convolution kernel_size or pooling pool_size, divided by 7
#   stride        strides / 2
#   width         log2(1 + output channels or units) / 10
#   output_size   log2(1 + output height) / 8, for spatial outputs
#   dropout_rate  rate of a Dropout layer
NUMERIC_ATTRIBUTES = ("kernel", "stride", "width", "output_size", "dropout_rate")
_KERNEL_SCALE = 7.0
_STRIDE_SCALE = 2.0
_WIDTH_LOG2_SCALE = 10.0
_SIZE_LOG2_SCALE = 8.0

FEATURE_NAMES = (
    *(f"kind_{kind}" for kind in KIND_VOCABULARY),
    *(f"activation_{name}" for name in ACTIVATION_VOCABULARY),
    *NUMERIC_ATTRIBUTES,
)


@dataclass(frozen=True)
class ArchitectureGraph:
    """The layer graph of one architecture, in the solver's topological order.

    Attributes:
        node_kinds: Keras class of each node; the first node is the input.
        adjacency: ``(n, n)`` matrix of 0 and 1 where ``adjacency[i, j] == 1`` when layer
            ``j`` reads the output of layer ``i``. It has no self-loops.
        node_features: ``(n, len(FEATURE_NAMES))`` float32 matrix, one row per node.
    """

    node_kinds: list[str]
    adjacency: np.ndarray
    node_features: np.ndarray

    @property
    def num_nodes(self) -> int:
        """Number of nodes, which is the number of Keras layers with the input."""
        return len(self.node_kinds)


def architecture_graph(resolved: ResolvedArchitecture) -> ArchitectureGraph:
    """Build the graph of a resolved architecture's Keras layers.

    Args:
        resolved: The architecture with its Keras layer graph.

    Returns:
        The nodes, directed edges from each layer to its readers, and node features.

    Raises:
        CNNGenError: If a layer has a Keras class outside :data:`KIND_VOCABULARY` or reads a
            layer that does not come before it.
    """
    layers = resolved.layers
    position = {layer.name: index for index, layer in enumerate(layers)}
    adjacency = np.zeros((len(layers), len(layers)), dtype=np.float32)
    for index, layer in enumerate(layers):
        for source in layer.inputs:
            if position.get(source, index) >= index:
                raise CNNGenError(
                    f"layer {layer.name!r} reads {source!r}, which is not an earlier layer of "
                    "the architecture; solve the phrase with cnngen.solver.solve"
                )
            adjacency[position[source], index] = 1.0
    features = np.stack([_node_features(layer) for layer in layers])
    return ArchitectureGraph([layer.class_name for layer in layers], adjacency, features)


def _node_features(layer: KerasLayer) -> np.ndarray:
    if layer.class_name not in KIND_VOCABULARY:
        raise CNNGenError(
            f"layer {layer.name!r} has Keras class {layer.class_name!r}, which the graph "
            f"encoding does not know; expected one of: {', '.join(KIND_VOCABULARY)}"
        )
    kinds = np.zeros(len(KIND_VOCABULARY), dtype=np.float32)
    kinds[KIND_VOCABULARY.index(layer.class_name)] = 1.0
    activations = np.zeros(len(ACTIVATION_VOCABULARY), dtype=np.float32)
    activation = layer.config.get("activation")
    if activation in ACTIVATION_VOCABULARY:
        activations[ACTIVATION_VOCABULARY.index(activation)] = 1.0
    return np.concatenate([kinds, activations, _numeric_attributes(layer)])


def _numeric_attributes(layer: KerasLayer) -> np.ndarray:
    config = layer.config
    kernel = config.get("kernel_size", config.get("pool_size", 0))
    stride = config.get("strides", 0)
    shape = layer.output_shape
    # Spatial outputs are (height, width, channels); flat outputs are (features,).
    output_size = math.log2(1 + shape[0]) / _SIZE_LOG2_SCALE if len(shape) == 3 else 0.0
    values = (
        kernel / _KERNEL_SCALE,
        stride / _STRIDE_SCALE,
        math.log2(1 + shape[-1]) / _WIDTH_LOG2_SCALE,
        output_size,
        config.get("rate", 0.0),
    )
    return np.asarray(values, dtype=np.float32)
