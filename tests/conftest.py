"""Shared fixtures: phrases written for the tests, found relative to this file."""

import os
from pathlib import Path

import pytest

# Quiet TensorFlow's start-up banners in test output; set before any test imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TESTS_DIR = Path(__file__).parent
INPUT_SHAPES = [(8, 8, 1), (28, 28, 1), (32, 32, 3)]


def read_original_phrases() -> list[str]:
    """Return the bare phrases of original_phrases.txt, without comments."""
    lines = (TESTS_DIR / "original_phrases.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="session")
def original_phrases() -> list[str]:
    return read_original_phrases()
