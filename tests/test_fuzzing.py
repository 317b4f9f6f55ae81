"""Fuzz tests of the parser and solver: bad input is rejected cleanly, never crashes."""

import contextlib
import io
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnngen.fuzzing import VOCABULARY, check_phrase, mutate
from cnngen.sampling import sample_architecture, sample_resolved

OUTCOMES = {"rejected", "unsolvable", "accepted"}
FUZZ_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def assert_quiet_check(phrase):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        outcome = check_phrase(phrase)
    assert outcome in OUTCOMES
    assert stderr.getvalue() == ""


@FUZZ_SETTINGS
@given(st.lists(st.sampled_from(VOCABULARY), max_size=25))
def test_random_token_sequences(tokens):
    assert_quiet_check(" ".join(tokens))


@FUZZ_SETTINGS
@given(st.text(max_size=80))
def test_random_characters(text):
    assert_quiet_check(text)


@FUZZ_SETTINGS
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(1, 4), st.booleans())
def test_mutated_valid_phrases(seed, mutation_seed, num_mutations, pinned):
    phrase = (
        sample_resolved(seed, (28, 28, 1), 10).to_phrase()
        if pinned
        else sample_architecture(seed).to_phrase()
    )
    rng = random.Random(mutation_seed)
    for _ in range(num_mutations):
        phrase = mutate(phrase, rng)
    for shape in ((8, 8, 1), (28, 28, 1)):
        assert check_phrase(phrase, shape) in OUTCOMES


@FUZZ_SETTINGS
@given(st.integers(0, 10_000))
def test_sampled_phrases_are_accepted(seed):
    assert check_phrase(sample_architecture(seed).to_phrase(), (32, 32, 3)) == "accepted"
