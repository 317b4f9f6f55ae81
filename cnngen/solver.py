"""Hyper-parameters and shapes: from an architecture to a fully pinned, valid network.

:func:`solve` walks the architecture in phrase order, tracking the spatial size and channel
count of every tensor. It keeps each pinned value (and checks it), and draws each missing one
from :class:`SolverConfig` with a seeded generator, choosing only values that keep the network
valid for the input shape:

- no spatial size ever falls below 1;
- in a merge whose right side is ``Empty``, the left branch keeps the spatial size (and the
  channel count when the operator is ``add``), because it is joined with its own input;
- in a merge with convolutions on the right, the left branch reduces the size at most once.
  The first right convolution is chosen to reach the left branch's output size, and under
  ``add`` the last one reaches its channel count;
- the last dense layer is the classifier: one unit per class and a softmax.

One activation and one merge operator are drawn per architecture, as in the original CNNGen;
filters start at ``base_filters`` and grow by ``filter_step`` at each size-reducing
convolution, whatever the channel count of the convolution's input. The result is a :class:`ResolvedArchitecture`: the pinned architecture plus its
Keras layer graph with shapes, which metrics, code emission and features read.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

from cnngen.architecture import CONVOLUTIONS, POOLINGS, Architecture, Layer, Merge, MergeBody, Node
from cnngen.errors import SolverError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class SolverConfig:
    """The values the solver draws from when a phrase leaves a hyper-parameter open."""

    conv_kernels: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7)
    conv_strides: tuple[int, ...] = (1, 2)
    pool_sizes: tuple[int, ...] = (2, 3)
    pool_strides: tuple[int, ...] = (1, 2)
    paddings: tuple[str, ...] = ("same", "valid")
    activations: tuple[str, ...] = ("relu", "selu", "tanh", "gelu")
    merge_operators: tuple[str, ...] = ("add", "concat")
    dropout_rates: tuple[float, ...] = (0.01, 0.1, 0.2, 0.4, 0.5, 0.8)
    bn_epsilons: tuple[float, ...] = (1.1e-10, 1.1e-7, 1.1e-5, 1.001e-5, 1e-3)
    dense_units: tuple[int, ...] = (16, 32, 64, 128, 256)
    base_filters: int = 16
    filter_step: int = 16


@dataclass(frozen=True)
class KerasLayer:
    """One Keras layer of a resolved architecture.

    Attributes:
        name: Unique layer name, also used in the emitted code.
        class_name: Keras class, such as ``Conv2D`` or ``Add``.
        config: Constructor arguments other than ``name``.
        inputs: Names of the layers it reads, in order.
        input_shapes: Shapes it reads, without the batch axis.
        output_shape: Shape it produces, without the batch axis.
        token: The phrase token it comes from (``conv``, ``merge``, ``input``, ...).
    """

    name: str
    class_name: str
    config: dict
    inputs: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    token: str


@dataclass(frozen=True)
class ResolvedArchitecture:
    """An architecture with every hyper-parameter pinned and its Keras layer graph.

    Attributes:
        architecture: The fully pinned architecture.
        input_shape: (height, width, channels) of the data set's images.
        num_classes: Number of classes of the classifier.
        layers: Keras layers in topological order; the first is the input.
    """

    architecture: Architecture
    input_shape: Shape
    num_classes: int
    layers: tuple[KerasLayer, ...]

    def to_phrase(self) -> str:
        """Return the fully pinned phrase, which rebuilds this network for the same input."""
        return self.architecture.to_phrase()


@dataclass
class _Tensor:
    name: str
    shape: Shape  # (size, size, channels) or (features,)

    @property
    def size(self) -> int:
        return self.shape[0]

    @property
    def channels(self) -> int:
        return self.shape[-1]


@dataclass(frozen=True)
class _Mode:
    """Constraints on a branch: keep the size, keep the channels, how many reductions remain."""

    keep_size: bool = False
    keep_channels: bool = False
    reductions_left: int | None = None  # None: no limit (outside merges)

    def may_reduce(self) -> bool:
        return not self.keep_size and self.reductions_left != 0


def conv_output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Return the output size of a convolution or pooling along one spatial axis (Keras rules)."""
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


@dataclass
class _Solver:
    input_shape: Shape
    num_classes: int
    rng: random.Random
    config: SolverConfig
    activation: str = ""
    merge_operator: str = ""
    layers: list[KerasLayer] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    seen_conv: bool = False
    width: int = 0

    # ---------------------------------------------------------------- graph building

    def add(
        self, class_name: str, token: str, config: dict, inputs: list[_Tensor], shape
    ) -> _Tensor:
        prefix = _NAME_PREFIX[class_name]
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        name = f"{prefix}_{self.counters[prefix]}"
        self.layers.append(
            KerasLayer(
                name=name,
                class_name=class_name,
                config=config,
                inputs=tuple(t.name for t in inputs),
                input_shapes=tuple(t.shape for t in inputs),
                output_shape=tuple(shape),
                token=token,
            )
        )
        return _Tensor(name, tuple(shape))

    def pick(self, layer: Node, key: str, choices):
        if key in layer.params:
            return layer.params[key]
        choices = list(choices)
        return choices[self.rng.randrange(len(choices))]

    # ---------------------------------------------------------------- sequences of nodes

    def nodes(self, nodes, tensor: _Tensor, mode: _Mode) -> tuple[list[Node], _Tensor, _Mode]:
        solved = []
        for node in nodes:
            before = tensor.size
            if isinstance(node, Merge):
                node, tensor = self.merge(node, tensor, mode)
            elif node.kind in CONVOLUTIONS:
                node, tensor = self.convolution(node, tensor, mode)
            elif node.kind in POOLINGS:
                node, tensor = self.pooling(node, tensor, mode)
            else:
                node, tensor = self.dropout(node, tensor)
            if tensor.size < before and mode.reductions_left:
                mode = replace(mode, reductions_left=mode.reductions_left - 1)
            solved.append(node)
        return solved, tensor, mode

    # ---------------------------------------------------------------- layers

    def spatial_choice(self, layer: Layer, size: int, mode: _Mode, kernels, strides):
        """Pick (kernel, stride, padding), keeping the size when the mode forbids reducing it."""
        key_kernel = "kernel" if layer.kind in CONVOLUTIONS else "pool"
        if not mode.may_reduce():
            padding = self.pick(layer, "padding", ["same"])
            stride = self.pick(layer, "stride", [1])
            kernel = self.pick(layer, key_kernel, _feasible_kernels(kernels, size, padding) or [1])
            if padding == "valid":
                kernel = self.pick(layer, key_kernel, [1])
            return kernel, stride, padding
        padding = self.pick(layer, "padding", self.config.paddings)
        kernel = self.pick(layer, key_kernel, _feasible_kernels(kernels, size, padding) or [1])
        stride = self.pick(layer, "stride", strides if size > 1 else [1])
        return kernel, stride, padding

    def check_spatial(self, layer: Layer, size: int, kernel: int, padding: str) -> None:
        if padding == "valid" and kernel > size:
            raise SolverError(
                f"{layer.to_phrase()}: kernel {kernel} is larger than its {size}x{size} input "
                "with padding=valid; pin a smaller kernel or padding=same"
            )

    def convolution(self, layer: Layer, tensor: _Tensor, mode: _Mode):
        kernel, stride, padding = self.spatial_choice(
            layer, tensor.size, mode, self.config.conv_kernels, self.config.conv_strides
        )
        self.check_spatial(layer, tensor.size, kernel, padding)
        out_size = conv_output_size(tensor.size, kernel, stride, padding)
        filters = self.pick(layer, "filters", [self.default_filters(tensor, out_size, mode)])
        activation = self.pick(layer, "activation", [self.activation])
        params = {"filters": filters, "kernel": kernel, "stride": stride, "padding": padding}
        params["activation"] = activation
        if layer.kind != "conv":
            params["epsilon"] = self.pick(layer, "epsilon", self.config.bn_epsilons)
        self.seen_conv = True
        return Layer(layer.kind, params), self.emit_convolution(
            layer.kind, params, tensor, out_size
        )

    def default_filters(self, tensor: _Tensor, out_size: int, mode: _Mode) -> int:
        # The width grows at each size-reducing convolution and does not follow the input's
        # channels, so concatenations do not multiply the channel counts of later layers.
        if mode.keep_channels:
            return tensor.channels
        if self.seen_conv and out_size < tensor.size:
            self.width += self.config.filter_step
        return self.width

    def emit_convolution(self, kind: str, params: dict, tensor: _Tensor, out_size: int) -> _Tensor:
        conv_config = {
            "filters": params["filters"],
            "kernel_size": params["kernel"],
            "strides": params["stride"],
            "padding": params["padding"],
            "activation": params["activation"],
        }
        out_shape = (out_size, out_size, params["filters"])
        if kind == "bnconv":
            tensor = self.add(
                "BatchNormalization", kind, {"epsilon": params["epsilon"]}, [tensor], tensor.shape
            )
        tensor = self.add("Conv2D", kind, conv_config, [tensor], out_shape)
        if kind == "convbn":
            tensor = self.add(
                "BatchNormalization", kind, {"epsilon": params["epsilon"]}, [tensor], out_shape
            )
        return tensor

    def pooling(self, layer: Layer, tensor: _Tensor, mode: _Mode):
        pool, stride, padding = self.spatial_choice(
            layer, tensor.size, mode, self.config.pool_sizes, self.config.pool_strides
        )
        self.check_spatial(layer, tensor.size, pool, padding)
        out_size = conv_output_size(tensor.size, pool, stride, padding)
        params = {"pool": pool, "stride": stride, "padding": padding}
        class_name = "MaxPooling2D" if layer.kind == "max_pooling" else "AveragePooling2D"
        config = {"pool_size": pool, "strides": stride, "padding": padding}
        out = self.add(
            class_name, layer.kind, config, [tensor], (out_size, out_size, tensor.channels)
        )
        return Layer(layer.kind, params), out

    def dropout(self, layer: Layer, tensor: _Tensor):
        rate = self.pick(layer, "rate", self.config.dropout_rates)
        out = self.add("Dropout", "dropout", {"rate": rate}, [tensor], tensor.shape)
        return Layer("dropout", {"rate": rate}), out

    # ---------------------------------------------------------------- merges

    def merge(self, merge: Merge, tensor: _Tensor, mode: _Mode):
        operator = self.pick(merge, "merge", [self.merge_operator])
        left_in = right_in = tensor
        bodies = []
        for body in merge.bodies:
            empty_right = not body.right
            keep_size = mode.keep_size or empty_right
            branch_mode = _Mode(
                keep_size=keep_size,
                keep_channels=mode.keep_channels or (empty_right and operator == "add"),
                reductions_left=0
                if keep_size
                else (1 if mode.reductions_left is None else mode.reductions_left),
            )
            left, left_out, _ = self.nodes(body.left, left_in, branch_mode)
            right, right_out = self.right_branch(body.right, right_in, left_out, operator)
            self.check_join(merge, operator, left_out, right_out)
            join_class = "Add" if operator == "add" else "Concatenate"
            channels = left_out.channels + (right_out.channels if operator == "concat" else 0)
            join_shape = (left_out.size, left_out.size, channels)
            left_in = self.add(join_class, "merge", {}, [left_out, right_out], join_shape)
            right_in = right_out
            bodies.append(MergeBody(tuple(left), tuple(right)))
        return Merge(tuple(bodies), {"merge": operator}), left_in

    def right_branch(self, convs, tensor: _Tensor, target: _Tensor, operator: str):
        solved = []
        for index, layer in enumerate(convs):
            if index == 0:
                kernel, stride, padding = self.reaching_choice(layer, tensor.size, target.size)
            else:
                kernel, stride, padding = self.spatial_choice(
                    layer, tensor.size, _Mode(keep_size=True), self.config.conv_kernels, [1]
                )
            self.check_spatial(layer, tensor.size, kernel, padding)
            out_size = conv_output_size(tensor.size, kernel, stride, padding)
            default = (
                target.channels
                if operator == "add"
                else self.default_filters(tensor, out_size, _Mode())
            )
            params = {
                "filters": self.pick(layer, "filters", [default]),
                "kernel": kernel,
                "stride": stride,
                "padding": padding,
                "activation": self.pick(layer, "activation", [self.activation]),
            }
            if layer.kind != "conv":
                params["epsilon"] = self.pick(layer, "epsilon", self.config.bn_epsilons)
            tensor = self.emit_convolution(layer.kind, params, tensor, out_size)
            solved.append(Layer(layer.kind, params))
        return solved, tensor

    def reaching_choice(self, layer: Layer, size: int, target_size: int):
        """Pick (kernel, stride, padding) for a convolution from ``size`` to ``target_size``."""
        candidates = []
        for padding in self.config.paddings:
            for kernel in _feasible_kernels(self.config.conv_kernels, size, padding) or [1]:
                for stride in range(1, size + 1):
                    if conv_output_size(size, kernel, stride, padding) == target_size:
                        candidates.append((kernel, stride, padding))
        candidates = [
            c
            for c in candidates
            if all(layer.params.get(k, v) == v for k, v in zip(("kernel", "stride", "padding"), c))
        ]
        if not candidates:
            # A valid convolution with stride 1 and kernel size - target + 1 always fits.
            candidates = [(size - target_size + 1, 1, "valid")]
        kernel, stride, padding = candidates[self.rng.randrange(len(candidates))]
        return (
            self.pick(layer, "kernel", [kernel]),
            self.pick(layer, "stride", [stride]),
            self.pick(layer, "padding", [padding]),
        )

    def check_join(self, merge: Merge, operator: str, left: _Tensor, right: _Tensor) -> None:
        if left.size != right.size:
            raise SolverError(
                f"{merge.to_phrase()}: its branches end at different sizes "
                f"({left.size}x{left.size} on the left, {right.size}x{right.size} on the right); "
                "pin strides, kernels or paddings so that both branches reach the same size"
            )
        if operator == "add" and left.channels != right.channels:
            raise SolverError(
                f"{merge.to_phrase()}: merge=add needs equal channels, but the left branch ends "
                f"with {left.channels} and the right with {right.channels}; pin matching filters "
                "or use merge=concat"
            )

    # ---------------------------------------------------------------- head

    def head(self, architecture: Architecture, tensor: _Tensor):
        interstice = architecture.interstice.kind
        if interstice == "flatten":
            shape = (math.prod(tensor.shape),)
            tensor = self.add("Flatten", "flatten", {}, [tensor], shape)
        else:
            class_name = (
                "GlobalAveragePooling2D"
                if interstice == "global_avg_pooling"
                else "GlobalMaxPooling2D"
            )
            tensor = self.add(class_name, interstice, {}, [tensor], (tensor.channels,))
        head = []
        last_dense = max(i for i, layer in enumerate(architecture.head) if layer.kind == "dense")
        for index, layer in enumerate(architecture.head):
            if layer.kind == "dropout":
                solved, tensor = self.dropout(layer, tensor)
            elif index == last_dense:
                solved, tensor = self.classifier(layer, tensor)
            else:
                units = self.pick(
                    layer,
                    "units",
                    [u for u in self.config.dense_units if u <= tensor.shape[0]]
                    or [min(self.config.dense_units)],
                )
                params = {
                    "units": units,
                    "activation": self.pick(layer, "activation", [self.activation]),
                }
                tensor = self.add("Dense", "dense", dict(params), [tensor], (units,))
                solved = Layer("dense", params)
            head.append(solved)
        return head

    def classifier(self, layer: Layer, tensor: _Tensor):
        units = layer.params.get("units", self.num_classes)
        activation = layer.params.get("activation", "softmax")
        if units != self.num_classes:
            raise SolverError(
                f"{layer.to_phrase()}: the last dense layer is the classifier and needs one unit "
                f"per class ({self.num_classes}), not {units}; remove units or pin units={self.num_classes}"
            )
        if activation != "softmax":
            raise SolverError(
                f"{layer.to_phrase()}: the classifier's activation must be softmax (the loss reads "
                "probabilities); remove activation or pin activation=softmax"
            )
        params = {"units": units, "activation": "softmax"}
        return Layer("dense", params), self.add("Dense", "dense", dict(params), [tensor], (units,))


_NAME_PREFIX = {
    "InputLayer": "input",
    "Conv2D": "conv2d",
    "BatchNormalization": "batch_normalization",
    "MaxPooling2D": "max_pooling2d",
    "AveragePooling2D": "average_pooling2d",
    "Dropout": "dropout",
    "Add": "add",
    "Concatenate": "concatenate",
    "Flatten": "flatten",
    "GlobalAveragePooling2D": "global_average_pooling2d",
    "GlobalMaxPooling2D": "global_max_pooling2d",
    "Dense": "dense",
}


def _feasible_kernels(kernels, size: int, padding: str) -> list[int]:
    limit = size if padding == "valid" else max(1, size // 2)
    return [k for k in kernels if k <= limit]


def _check_inputs(input_shape, num_classes) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(v, int) and v >= 1 for v in shape):
        raise SolverError(
            f"input_shape must be (height, width, channels) of positive integers, got {input_shape!r}"
        )
    if shape[0] != shape[1]:
        raise SolverError(f"input_shape must be square (height == width), got {input_shape!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise SolverError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return shape


def solve(
    architecture: Architecture,
    input_shape: Shape,
    num_classes: int,
    seed: int = 0,
    config: SolverConfig | None = None,
) -> ResolvedArchitecture:
    """Pin every hyper-parameter of an architecture for an input shape.

    Args:
        architecture: A parsed or sampled architecture; pinned values are kept.
        input_shape: (height, width, channels) of the images, square.
        num_classes: Number of classes of the classifier.
        seed: Seed of the draws; the same seed gives the same network.
        config: The values to draw from; defaults to :class:`SolverConfig`.

    Returns:
        The resolved architecture with its Keras layer graph.

    Raises:
        SolverError: A pinned value cannot fit the input shape or the merges it sits in.
    """
    shape = _check_inputs(input_shape, num_classes)
    solver = _Solver(shape, num_classes, random.Random(seed), config or SolverConfig())
    solver.width = solver.config.base_filters
    # One activation and one merge operator per architecture, drawn first so that the rest of
    # the draws do not depend on whether they are pinned.
    solver.activation = solver.rng.choice(solver.config.activations)
    solver.merge_operator = solver.rng.choice(solver.config.merge_operators)

    tensor = solver.add("InputLayer", "input", {"shape": shape}, [], shape)
    features, tensor, _ = solver.nodes(architecture.features, tensor, _Mode())
    head = solver.head(architecture, tensor)
    pinned = Architecture(tuple(features), architecture.interstice, tuple(head))
    return ResolvedArchitecture(pinned, shape, num_classes, tuple(solver.layers))
