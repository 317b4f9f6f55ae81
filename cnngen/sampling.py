"""Seeded random derivations of the grammar.

:func:`sample_architecture` draws a bare architecture (no hyper-parameters) with the
probabilities of :class:`SamplingConfig`, whose defaults are the values the original CNNGen
generator configures. :func:`sample_resolved` then hands it to :func:`cnngen.solver.solve`
with the same seed, so sampled and hand-written phrases follow one path.

The original generator's code departs from its configuration in two places (it adds a pooling
after every block, and it draws dropout with probability 1/4 and always ``Empty`` on the right
of a one-body merge); :meth:`SamplingConfig.original_effective` reproduces that behaviour.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from cnngen.architecture import (
    CONVOLUTIONS,
    INTERSTICES,
    POOLINGS,
    Architecture,
    Layer,
    Merge,
    MergeBody,
    Node,
)
from cnngen.errors import SolverError
from cnngen.solver import ResolvedArchitecture, SolverConfig, solve


@dataclass(frozen=True)
class SamplingConfig:
    """Probabilities and counts of a random derivation.

    Attributes:
        feature_blocks: Choices for the number of feature-extraction blocks.
        merge_probability: Chance that a block (or a left-branch item) is a merge, not a convolution.
        dropout_probability: Chance of a dropout after a convolution, a merge or before a dense.
        pooling_probability: Chance of a pooling after a block and at each end of a left branch.
        merge_bodies: Choices for the number of bodies of a top-level merge.
        right_convolutions: Choices for the number of convolutions on a right side.
        left_convolutions: Choices for the number of convolutions in a plain left branch.
        empty_right_probability: Chance that a one-body merge has ``Empty`` on its right.
        dense_layers: Choices for the number of dense layers, the classifier included.
        max_merge_depth: Deepest nesting of merges; deeper left branches get convolutions only.
    """

    feature_blocks: tuple[int, ...] = (3, 4, 5)
    merge_probability: float = 1 / 3
    dropout_probability: float = 0.20
    pooling_probability: float = 0.66
    merge_bodies: tuple[int, ...] = (1, 2)
    right_convolutions: tuple[int, ...] = (1, 2)
    left_convolutions: tuple[int, ...] = (1, 2)
    empty_right_probability: float = 0.5
    dense_layers: tuple[int, ...] = (1, 2, 3)
    max_merge_depth: int = 2

    def __post_init__(self):
        for name in (
            "merge_probability",
            "dropout_probability",
            "pooling_probability",
            "empty_right_probability",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SamplingConfig.{name} must be in [0, 1], got {value!r}")
        for name in (
            "feature_blocks",
            "merge_bodies",
            "right_convolutions",
            "left_convolutions",
            "dense_layers",
        ):
            values = getattr(self, name)
            if not values or any(not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(
                    f"SamplingConfig.{name} must be a non-empty tuple of positive integers, got {values!r}"
                )

    @classmethod
    def original_effective(cls) -> SamplingConfig:
        """Return the probabilities the original generator's code effectively used."""
        return cls(dropout_probability=0.25, pooling_probability=1.0, empty_right_probability=1.0)


class _Sampler:
    def __init__(self, rng: random.Random, config: SamplingConfig):
        self.rng = rng
        self.config = config

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def convolution(self) -> Layer:
        return Layer(self.rng.choice(CONVOLUTIONS))

    def pooling(self) -> Layer:
        return Layer(self.rng.choice(POOLINGS))

    def conv_with_dropout(self) -> list[Node]:
        nodes: list[Node] = [self.convolution()]
        if self.chance(self.config.dropout_probability):
            nodes.append(Layer("dropout"))
        return nodes

    def feature_block(self) -> list[Node]:
        if self.chance(self.config.merge_probability):
            nodes: list[Node] = [self.merge(depth=1, top_level=True)]
        else:
            nodes = [self.convolution()]
        if self.chance(self.config.dropout_probability):
            nodes.append(Layer("dropout"))
        if self.chance(self.config.pooling_probability):
            nodes.append(self.pooling())
        return nodes

    def merge(self, depth: int, top_level: bool) -> Merge:
        num_bodies = self.rng.choice(self.config.merge_bodies) if top_level else 1
        bodies = []
        for _ in range(num_bodies):
            left = self.left(depth)
            if num_bodies == 1 and self.chance(self.config.empty_right_probability):
                right: tuple[Layer, ...] = ()
            else:
                right = tuple(
                    self.convolution()
                    for _ in range(self.rng.choice(self.config.right_convolutions))
                )
            bodies.append(MergeBody(tuple(left), right))
        return Merge(tuple(bodies))

    def left(self, depth: int) -> list[Node]:
        nodes: list[Node] = []
        if self.chance(self.config.pooling_probability):
            nodes.append(self.pooling())
        if depth < self.config.max_merge_depth and self.chance(self.config.merge_probability):
            # Zero or more convolutions, then nested merges each followed by zero or more.
            for _ in range(self.rng.choice((0,) + self.config.left_convolutions)):
                nodes += self.conv_with_dropout()
            for _ in range(self.rng.choice((1, 2))):
                nodes.append(self.merge(depth + 1, top_level=False))
                for _ in range(self.rng.choice((0, 1))):
                    nodes += self.conv_with_dropout()
        else:
            for _ in range(self.rng.choice(self.config.left_convolutions)):
                nodes += self.conv_with_dropout()
        if self.chance(self.config.pooling_probability):
            nodes.append(self.pooling())
        return nodes

    def architecture(self) -> Architecture:
        features: list[Node] = []
        for _ in range(self.rng.choice(self.config.feature_blocks)):
            features += self.feature_block()
        interstice = Layer(self.rng.choice(INTERSTICES))
        head: list[Layer] = []
        for _ in range(self.rng.choice(self.config.dense_layers)):
            if self.chance(self.config.dropout_probability):
                head.append(Layer("dropout"))
            head.append(Layer("dense"))
        return Architecture(tuple(features), interstice, tuple(head))


def sample_architecture(seed: int, config: SamplingConfig | None = None) -> Architecture:
    """Draw a bare architecture from the grammar.

    Args:
        seed: Seed of the draws; the same seed gives the same architecture.
        config: Probabilities; defaults to the original generator's configuration.

    Returns:
        An architecture with no hyper-parameter pinned.
    """
    return _Sampler(random.Random(seed), config or SamplingConfig()).architecture()


def sample_resolved(
    seed: int,
    input_shape: tuple[int, int, int],
    num_classes: int,
    sampling: SamplingConfig | None = None,
    solver: SolverConfig | None = None,
) -> ResolvedArchitecture:
    """Draw an architecture and pin its hyper-parameters for an input shape.

    Raises:
        SolverError: The solver found no valid network (it always does for sampled phrases).
    """
    return solve(sample_architecture(seed, sampling), input_shape, num_classes, seed, solver)


def architecture_seeds(run_seed: int, count: int) -> list[int]:
    """Derive ``count`` distinct architecture seeds from one run seed."""
    if not isinstance(count, int) or count < 0:
        raise SolverError(f"count must be a non-negative integer, got {count!r}")
    rng = random.Random(run_seed)
    seeds: list[int] = []
    seen: set[int] = set()
    while len(seeds) < count:
        seed = rng.randrange(2**31)
        if seed not in seen:
            seen.add(seed)
            seeds.append(seed)
    return seeds


def sample_many(
    run_seed: int,
    count: int,
    input_shape: tuple[int, int, int],
    num_classes: int,
    sampling: SamplingConfig | None = None,
    solver: SolverConfig | None = None,
) -> Iterator[tuple[int, ResolvedArchitecture]]:
    """Yield ``(seed, resolved architecture)`` pairs for ``count`` seeds derived from ``run_seed``."""
    for seed in architecture_seeds(run_seed, count):
        yield seed, sample_resolved(seed, input_shape, num_classes, sampling, solver)
