"""Tests of cnngen.grammar: what the parser accepts, rejects and prints back."""

import os
import shutil
import subprocess
import sys

from pathlib import Path

import pytest

import cnngen._antlr
from cnngen.architecture import Layer, Merge
from cnngen.errors import PhraseSyntaxError
from cnngen.grammar import parse
from conftest import read_original_phrases

VALID = [
    "input conv max_pooling flatten dense output",
    "input conv [ ( conv max_pooling , conv ) ( conv , convbn ) ] global_avg_pooling dense output",
    "input conv\n  max_pooling\tflatten dense output",
    "input conv(filters=16, kernel=3, stride=1, padding=same, activation=relu) flatten dense output",
    "input convbn(epsilon=1e-3) bnconv(epsilon=1.1e-10) flatten dense output",
    "input conv [ ( conv(filters=8) , Empty ) ](merge=concat) flatten dropout(rate=0.5) dense output",
    "input conv max_pooling(pool=2, stride=2, padding=valid) flatten dense(units=32, activation=tanh) dense output",
]

# (phrase, line, column, token, message pattern)
INVALID = [
    (
        "input max_pooling conv flatten dense output",
        1,
        6,
        "max_pooling",
        r"unexpected 'max_pooling'; expected .*'conv'",
    ),
    ("input conv@ flatten dense output", 1, 10, "@", r"invalid character '@'"),
    ("input conv output", 1, 11, "output", r"no classification head"),
    ("input conv flatten output", 1, 19, "output", r"no classification head"),
    ("input conv flatten dense", 1, 24, "<EOF>", r"unexpected end of phrase"),
    ("input conv dense output", 1, 11, "dense", r"unexpected 'dense'"),
    ("", 1, 0, "<EOF>", r"expected 'input'"),
    ("input conv flatten dense output output", 1, 32, "output", r"unexpected 'output'"),
    ("input [ ( conv , ) ] flatten dense output", 1, 17, ")", r"unexpected '\)'"),
    ("input [ ( conv , Empty conv ) ] flatten dense output", 1, 23, "conv", r"unexpected 'conv'"),
    ("input [ ( , Empty ) ] flatten dense output", 1, 10, ",", r"unexpected ','"),
    ("input conv empty flatten dense output", 1, 11, "empty", r"unexpected 'empty'"),
    ("input upconv flatten dense output", 1, 6, "upconv", r"unexpected 'upconv'"),
    (
        "input conv(filter=3) flatten dense output",
        1,
        11,
        "filter",
        r"unknown hyper-parameter 'filter' for conv; accepted: filters",
    ),
    (
        "input conv(filters=3.5) flatten dense output",
        1,
        19,
        "3.5",
        r"invalid value '3.5' for conv filters: expected an integer",
    ),
    ("input conv(filters=0) flatten dense output", 1, 19, "0", r"expected a value >= 1"),
    (
        "input conv(padding=full) flatten dense output",
        1,
        19,
        "full",
        r"expected one of same, valid",
    ),
    ("input conv(kernel=3, kernel=5) flatten dense output", 1, 21, "kernel", r"given twice"),
    ("input conv flatten dropout(rate=1.5) dense output", 1, 32, "1.5", r"expected a value < 1"),
    (
        "input conv(epsilon=0.1) flatten dense output",
        1,
        11,
        "epsilon",
        r"unknown hyper-parameter 'epsilon' for conv",
    ),
    (
        "input conv [ ( conv , Empty ) ](merge=mul) flatten dense output",
        1,
        38,
        "mul",
        r"expected one of add, concat",
    ),
    ("input conv\nflatten dense( output", 2, 15, "output", r"expected a name"),
]


@pytest.mark.parametrize("phrase", VALID)
def test_parse_valid_phrase(phrase):
    architecture = parse(phrase)
    assert parse(architecture.to_phrase()) == architecture


def test_parse_every_original_phrase():
    for phrase in read_original_phrases():
        architecture = parse(phrase)
        assert architecture.to_phrase() == phrase


@pytest.mark.parametrize("phrase, line, column, token, pattern", INVALID)
def test_parse_rejects_with_position(phrase, line, column, token, pattern):
    with pytest.raises(PhraseSyntaxError, match=pattern) as caught:
        parse(phrase)
    error = caught.value
    assert (error.line, error.column) == (line, column)
    assert error.token == token


def test_error_shows_phrase_and_caret():
    with pytest.raises(PhraseSyntaxError) as caught:
        parse("input max_pooling conv flatten dense output")
    lines = str(caught.value).splitlines()
    assert lines[1].strip() == "input max_pooling conv flatten dense output"
    assert lines[2].index("^") == lines[1].index("max_pooling")


def test_parse_prints_nothing_to_stderr():
    code = "from cnngen.grammar import parse\ntry:\n    parse('input conv@ ] output')\nexcept Exception:\n    pass\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stderr == ""
    assert result.stdout == ""


def test_parse_keeps_structure():
    architecture = parse(
        "input conv [ ( max_pooling conv dropout , Empty ) ( conv , convbn bnconv ) ] flatten dense output"
    )
    merge = architecture.features[1]
    assert isinstance(merge, Merge)
    assert [node.kind for node in merge.bodies[0].left] == ["max_pooling", "conv", "dropout"]
    assert merge.bodies[0].right == ()
    assert [layer.kind for layer in merge.bodies[1].right] == ["convbn", "bnconv"]


def test_parse_leading_and_trailing_pooling_in_left():
    architecture = parse(
        "input conv [ ( avg_pooling conv max_pooling , Empty ) ] flatten dense output"
    )
    left = architecture.features[1].bodies[0].left
    assert [node.kind for node in left] == ["avg_pooling", "conv", "max_pooling"]


def test_parse_converts_values():
    architecture = parse(
        "input conv(filters=8, padding=valid) flatten dropout(rate=0) dense output"
    )
    assert architecture.features[0] == Layer("conv", {"filters": 8, "padding": "valid"})
    assert architecture.head[0].params == {"rate": 0.0}
    assert isinstance(architecture.head[0].params["rate"], float)


def test_parse_rejects_non_string():
    with pytest.raises(TypeError, match="phrase must be a str"):
        parse(None)


def test_generated_parser_matches_runtime_version():
    import importlib.metadata

    assert cnngen._antlr.ANTLR_VERSION == importlib.metadata.version("antlr4-python3-runtime")
    header = cnngen._antlr.__file__.replace("__init__.py", "CNNGenParser.py")
    with open(header) as handle:
        first_line = handle.readline()
    assert f"Generated by ANTLR {cnngen._antlr.ANTLR_VERSION}" in first_line
    assert "Do not edit" in first_line


@pytest.mark.skipif(
    shutil.which("java") is None, reason="regenerating the parser needs a Java runtime"
)
def test_committed_parser_equals_regenerated(tmp_path):
    """The committed parser is what the pinned ANTLR tool makes of grammar/CNNGen.g4."""
    root = Path(cnngen._antlr.__file__).parents[2]
    copy = tmp_path / "repo"
    (copy / "cnngen").mkdir(parents=True)
    shutil.copytree(root / "grammar", copy / "grammar")
    shutil.copytree(root / "scripts", copy / "scripts")
    env = {**os.environ, "VENV_BIN": str(Path(sys.executable).parent)}
    subprocess.run(
        ["bash", str(copy / "scripts" / "generate_parser.sh")],
        env=env,
        check=True,
        capture_output=True,
    )
    for generated in sorted((copy / "cnngen" / "_antlr").glob("*.py")):
        committed = root / "cnngen" / "_antlr" / generated.name
        assert generated.read_text() == committed.read_text(), (
            f"{generated.name} differs: regenerate the parser"
        )


@pytest.mark.parametrize(
    "depth, pattern", [(51, "nested more than 50 levels"), (3000, "nested too deeply to parse")]
)
def test_parse_rejects_deep_nesting(depth, pattern):
    phrase = "input conv " + "[ ( conv " * depth + ", Empty ) ] " * depth + "flatten dense output"
    with pytest.raises(PhraseSyntaxError, match=pattern):
        parse(phrase)


def test_parse_accepts_fifty_levels():
    phrase = "input conv " + "[ ( conv " * 50 + ", Empty ) ] " * 50 + "flatten dense output"
    assert parse(phrase).to_phrase() == phrase
