"""The architecture tree and its canonical phrase.

An :class:`Architecture` is the content of a phrase: a sequence of feature-extraction nodes (layers
and merges), an interstice, and a classification head of dropout and dense layers. Each layer
carries the hyper-parameters the phrase pins; the rest are chosen by :mod:`cnngen.solver`.
This module also owns the table of hyper-parameters each token accepts, so that the parser
and the solver check values against one definition.

Parsing text lives in :mod:`cnngen.grammar`; choosing values and shapes in :mod:`cnngen.solver`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

CONVOLUTIONS = ("conv", "convbn", "bnconv")
POOLINGS = ("max_pooling", "avg_pooling")
INTERSTICES = ("flatten", "global_avg_pooling", "global_max_pooling")
PADDINGS = ("same", "valid")
ACTIVATIONS = ("relu", "selu", "tanh", "gelu", "elu", "sigmoid", "swish", "linear", "softmax")
MERGE_OPERATORS = ("add", "concat")

ParamValue = Union[int, float, str]


@dataclass(frozen=True)
class ParamSpec:
    """The type and range of values one hyper-parameter key accepts.

    Attributes:
        type: ``int``, ``float`` or ``str``.
        choices: For strings, the accepted names.
        minimum: Smallest accepted number (inclusive) for numbers.
        maximum: Largest accepted number (exclusive) for numbers, or None.
    """

    type: type
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def check(self, value: ParamValue) -> str | None:
        """Return why ``value`` is not accepted, or None when it is."""
        if self.type is str:
            if not isinstance(value, str) or value not in self.choices:
                return f"expected one of {', '.join(self.choices)}"
            return None
        if self.type is int and not (isinstance(value, int) and not isinstance(value, bool)):
            return "expected an integer"
        if self.type is float and (isinstance(value, bool) or not isinstance(value, int | float)):
            return "expected a number"
        if self.minimum is not None and value < self.minimum:
            return f"expected a value >= {self.minimum:g}"
        if self.maximum is not None and value >= self.maximum:
            return f"expected a value < {self.maximum:g}"
        return None


_CONV_KEYS = {
    "filters": ParamSpec(int, minimum=1),
    "kernel": ParamSpec(int, minimum=1),
    "stride": ParamSpec(int, minimum=1),
    "padding": ParamSpec(str, PADDINGS),
    "activation": ParamSpec(str, ACTIVATIONS),
}
_EPSILON = {"epsilon": ParamSpec(float, minimum=1e-30, maximum=1.0)}
_POOL_KEYS = {
    "pool": ParamSpec(int, minimum=1),
    "stride": ParamSpec(int, minimum=1),
    "padding": ParamSpec(str, PADDINGS),
}

# Accepted keys per token, in the order the canonical phrase prints them.
PARAM_SPECS: dict[str, dict[str, ParamSpec]] = {
    "conv": _CONV_KEYS,
    "convbn": {**_CONV_KEYS, **_EPSILON},
    "bnconv": {**_EPSILON, **_CONV_KEYS},
    "max_pooling": _POOL_KEYS,
    "avg_pooling": _POOL_KEYS,
    "dropout": {"rate": ParamSpec(float, minimum=0.0, maximum=1.0)},
    "dense": {"units": ParamSpec(int, minimum=1), "activation": ParamSpec(str, ACTIVATIONS)},
    "flatten": {},
    "global_avg_pooling": {},
    "global_max_pooling": {},
    "merge": {"merge": ParamSpec(str, MERGE_OPERATORS)},
}


def format_value(value: ParamValue) -> str:
    """Format a hyper-parameter value so that the grammar reads it back unchanged."""
    if isinstance(value, float):
        text = repr(value)
        return text if ("." in text or "e" in text) else text + ".0"
    return str(value)


def _format_args(kind: str, params: dict[str, ParamValue]) -> str:
    if not params:
        return ""
    order = list(PARAM_SPECS[kind])
    keys = sorted(params, key=order.index)
    return "(" + ", ".join(f"{key}={format_value(params[key])}" for key in keys) + ")"


@dataclass(frozen=True)
class Layer:
    """One token of a phrase with its pinned hyper-parameters.

    Attributes:
        kind: The token, such as ``conv`` or ``max_pooling``.
        params: Pinned hyper-parameters (a subset of ``PARAM_SPECS[kind]``).
    """

    kind: str
    params: dict[str, ParamValue] = field(default_factory=dict, compare=True, hash=False)

    def __hash__(self) -> int:
        return hash((self.kind, tuple(sorted(self.params.items()))))

    def to_phrase(self) -> str:
        """Return the token with its arguments, as the grammar reads it."""
        return self.kind + _format_args(self.kind, self.params)


@dataclass(frozen=True)
class MergeBody:
    """One ``( left , right )`` pair of a merge.

    Attributes:
        left: Layers and nested merges of the left branch, in order.
        right: Convolutions of the right branch; empty for ``Empty`` (identity).
    """

    left: tuple[Node, ...]
    right: tuple[Layer, ...]

    def to_phrase(self) -> str:
        """Return ``( left , right )`` in the grammar's syntax."""
        left = " ".join(node.to_phrase() for node in self.left)
        right = " ".join(layer.to_phrase() for layer in self.right) or "Empty"
        return f"( {left} , {right} )"


@dataclass(frozen=True)
class Merge:
    """A ``[ body ... ]`` block whose branches are joined by Add or Concatenate.

    Body k's left branch reads the join of body k-1, or the merge's input for the first body.
    Its right branch reads the right branch output of body k-1, so the right path runs beside
    the left path across the bodies. Each body ends with a join of its two branches.

    Attributes:
        bodies: The merge bodies, at least one.
        params: Pinned ``merge`` operator (``add`` or ``concat``), if any.
    """

    bodies: tuple[MergeBody, ...]
    params: dict[str, ParamValue] = field(default_factory=dict, compare=True, hash=False)

    kind = "merge"

    def __hash__(self) -> int:
        return hash((self.bodies, tuple(sorted(self.params.items()))))

    def to_phrase(self) -> str:
        """Return ``[ ( ... ) ... ]`` with the pinned operator, as the grammar reads it."""
        bodies = " ".join(body.to_phrase() for body in self.bodies)
        return f"[ {bodies} ]" + _format_args("merge", self.params)


Node = Union[Layer, Merge]


@dataclass(frozen=True)
class Architecture:
    """A whole phrase: feature extraction, interstice, classification head.

    Attributes:
        features: Convolutions, merges, dropouts and poolings before the interstice.
        interstice: ``flatten``, ``global_avg_pooling`` or ``global_max_pooling``.
        head: Dropout and dense layers; the last is the dense classifier.
    """

    features: tuple[Node, ...]
    interstice: Layer
    head: tuple[Layer, ...]

    def to_phrase(self) -> str:
        """Return the canonical phrase, with every pinned hyper-parameter."""
        parts = ["input"]
        parts += [node.to_phrase() for node in self.features]
        parts.append(self.interstice.to_phrase())
        parts += [layer.to_phrase() for layer in self.head]
        parts.append("output")
        return " ".join(parts)

    def to_bare_phrase(self) -> str:
        """Return the phrase without hyper-parameters, as the original CNNGen wrote it."""
        return strip_params(self).to_phrase()

    def iter_layers(self):
        """Yield every layer and merge, depth first, in phrase order."""
        yield from _iter_nodes(self.features)
        yield self.interstice
        yield from self.head

    @property
    def is_fully_pinned(self) -> bool:
        """Whether every layer pins every hyper-parameter its token accepts."""
        return all(set(node.params) == set(_specs_of(node)) for node in self.iter_layers())

    def __str__(self) -> str:
        return self.to_phrase()


def _specs_of(node: Node) -> dict[str, ParamSpec]:
    return PARAM_SPECS[node.kind]


def _iter_nodes(nodes):
    for node in nodes:
        yield node
        if isinstance(node, Merge):
            for body in node.bodies:
                yield from _iter_nodes(body.left)
                yield from body.right


def _strip_node(node: Node) -> Node:
    if isinstance(node, Merge):
        bodies = tuple(
            MergeBody(
                tuple(_strip_node(n) for n in body.left), tuple(Layer(r.kind) for r in body.right)
            )
            for body in node.bodies
        )
        return Merge(bodies)
    return Layer(node.kind)


def strip_params(architecture: Architecture) -> Architecture:
    """Return the same architecture with no hyper-parameter pinned."""
    return Architecture(
        features=tuple(_strip_node(node) for node in architecture.features),
        interstice=Layer(architecture.interstice.kind),
        head=tuple(Layer(layer.kind) for layer in architecture.head),
    )
