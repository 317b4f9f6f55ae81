"""Parameters, FLOPs and depth of a resolved architecture, computed without Keras.

The counts read the solver's layer graph, so they cost microseconds and need no TensorFlow.
Parameters equal Keras's ``model.count_params()`` (trainable and non-trainable, so a
BatchNormalization layer counts its moving mean and variance).

FLOPs are those of one forward pass on one image, with a multiply-add counted as 2:

=========================  ==============================================
Conv2D                     2 · K² · C_in · C_out · H_out · W_out
Dense                      2 · N_in · N_out
BatchNormalization         2 · H · W · C (a scale and a shift per value)
Max/AveragePooling2D       K² · C · H_out · W_out (one operation per window value)
Global pooling             H · W · C
Add                        H · W · C
Concatenate, Flatten,      0
Dropout, Input
=========================  ==============================================

Biases and activation functions are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from cnngen.solver import KerasLayer, ResolvedArchitecture


class LayerCost(NamedTuple):
    """Parameters and FLOPs of one Keras layer (a named tuple, cheap to create in bulk)."""

    name: str
    class_name: str
    output_shape: tuple[int, ...]
    params: int
    flops: int


@dataclass(frozen=True)
class ArchitectureMetrics:
    """Size and cost of a resolved architecture.

    Attributes:
        params: Parameter count, equal to Keras's ``count_params()``.
        flops: FLOPs of one forward pass on one image (multiply-add = 2).
        num_layers: Number of Keras layers, equal to ``len(model.layers)`` (the input included).
        depth: Longest path of weighted layers (Conv2D and Dense) from input to output.
        per_layer: The cost of each layer, in graph order.
    """

    params: int
    flops: int
    num_layers: int
    depth: int
    per_layer: tuple[LayerCost, ...]

    def as_dict(self) -> dict:
        """Return the totals and the per-layer breakdown as JSON-ready values."""
        return {
            "params": self.params,
            "flops": self.flops,
            "num_layers": self.num_layers,
            "depth": self.depth,
            "per_layer": [
                {
                    "name": c.name,
                    "class_name": c.class_name,
                    "output_shape": list(c.output_shape),
                    "params": c.params,
                    "flops": c.flops,
                }
                for c in self.per_layer
            ],
        }


def layer_params(layer: KerasLayer) -> int:
    """Return the parameter count of one layer, as Keras counts it."""
    if layer.class_name == "Conv2D":
        kernel = layer.config["kernel_size"]
        in_channels = layer.input_shapes[0][-1]
        filters = layer.config["filters"]
        return kernel * kernel * in_channels * filters + filters
    if layer.class_name == "Dense":
        return layer.input_shapes[0][-1] * layer.config["units"] + layer.config["units"]
    if layer.class_name == "BatchNormalization":
        return 4 * layer.output_shape[-1]
    return 0


def layer_flops(layer: KerasLayer) -> int:
    """Return the FLOPs of one layer on one image (see the module docstring for the rules)."""
    out_values = math.prod(layer.output_shape)
    name = layer.class_name
    if name == "Conv2D":
        kernel = layer.config["kernel_size"]
        return 2 * kernel * kernel * layer.input_shapes[0][-1] * out_values
    if name == "Dense":
        return 2 * layer.input_shapes[0][-1] * layer.config["units"]
    if name == "BatchNormalization":
        return 2 * out_values
    if name in ("MaxPooling2D", "AveragePooling2D"):
        pool = layer.config["pool_size"]
        return pool * pool * out_values
    if name in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return math.prod(layer.input_shapes[0])
    if name == "Add":
        return out_values
    return 0


def _weighted_depth(layers: tuple[KerasLayer, ...]) -> int:
    depth: dict[str, int] = {}
    for layer in layers:
        incoming = 0
        for name in layer.inputs:
            incoming = max(incoming, depth[name])
        depth[layer.name] = incoming + (1 if layer.class_name in ("Conv2D", "Dense") else 0)
    return depth[layers[-1].name]


def compute_metrics(resolved: ResolvedArchitecture) -> ArchitectureMetrics:
    """Compute parameters, FLOPs, layer count and depth of a resolved architecture."""
    per_layer = tuple(
        LayerCost(
            layer.name,
            layer.class_name,
            layer.output_shape,
            layer_params(layer),
            layer_flops(layer),
        )
        for layer in resolved.layers
    )
    return ArchitectureMetrics(
        params=sum(c.params for c in per_layer),
        flops=sum(c.flops for c in per_layer),
        num_layers=len(resolved.layers),
        depth=_weighted_depth(resolved.layers),
        per_layer=per_layer,
    )
