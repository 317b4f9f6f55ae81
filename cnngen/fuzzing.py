"""Random and mutated phrases for robustness checks of the parser and the solver.

Used by the fuzz test (Hypothesis drives the choices) and by the long fuzz benchmark (a seeded
``random.Random`` drives them). :func:`check_phrase` states the property both verify: a phrase
is either rejected with :class:`~cnngen.errors.PhraseSyntaxError`, or it parses and then
either solves to a network whose shapes are valid or is rejected with
:class:`~cnngen.errors.SolverError`. Any other exception is a bug.
"""

from __future__ import annotations

import random

from cnngen.errors import PhraseSyntaxError, SolverError
from cnngen.grammar import parse
from cnngen.metrics import compute_metrics
from cnngen.solver import solve

# Every token the lexer recognizes, plus near misses a person might type.
VOCABULARY = (
    "input", "output", "conv", "convbn", "bnconv", "max_pooling", "avg_pooling", "dropout",
    "flatten", "global_avg_pooling", "global_max_pooling", "dense", "Empty", "[", "]", "(",
    ")", ",", "=", "filters", "kernel", "stride", "padding", "same", "valid", "relu", "rate",
    "units", "merge", "add", "concat", "epsilon", "3", "0", "-1", "0.5", "1e-3", "upconv",
    "empty", "Conv", "pool", "@", "#", "(filters=8)", "(kernel=99)", "(rate=0.9)",
)  # fmt: skip


def mutate(phrase: str, rng: random.Random) -> str:
    """Return the phrase with one token deleted, inserted, replaced or swapped, or truncated."""
    tokens = phrase.split(" ")
    operation = rng.choice(("delete", "insert", "replace", "swap", "truncate", "characters"))
    position = rng.randrange(len(tokens))
    if operation == "delete" and len(tokens) > 1:
        del tokens[position]
    elif operation == "insert":
        tokens.insert(position, rng.choice(VOCABULARY))
    elif operation == "replace":
        tokens[position] = rng.choice(VOCABULARY)
    elif operation == "swap":
        other = rng.randrange(len(tokens))
        tokens[position], tokens[other] = tokens[other], tokens[position]
    elif operation == "truncate":
        return phrase[: rng.randrange(len(phrase) + 1)]
    else:
        cut = rng.randrange(len(phrase) + 1)
        return phrase[:cut] + chr(rng.randrange(32, 127)) + phrase[cut:]
    return " ".join(tokens)


def check_phrase(phrase: str, input_shape=(8, 8, 1), num_classes: int = 10) -> str:
    """Parse and solve a phrase; return "rejected", "unsolvable" or "accepted".

    Raises:
        AssertionError: A solved network has an invalid shape.
        Exception: Any exception other than the two rejections is a bug and propagates.
    """
    try:
        architecture = parse(phrase)
    except PhraseSyntaxError:
        return "rejected"
    try:
        resolved = solve(architecture, input_shape, num_classes, seed=len(phrase))
    except SolverError:
        return "unsolvable"
    for layer in resolved.layers:
        assert all(size >= 1 for size in layer.output_shape), (phrase, layer)
    assert parse(resolved.to_phrase()) == resolved.architecture
    compute_metrics(resolved)
    return "accepted"
