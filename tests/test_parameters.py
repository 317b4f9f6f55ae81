"""Tests of the run parameters: declared table, conversions, rejections and YAML files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cnngen.errors import ParameterError
from cnngen.parameters import (
    PARAMETERS,
    changed_fixed_parameters,
    dataset_options,
    default_parameters,
    load_parameters,
    training_config,
    validate_parameters,
    write_parameters,
)

PARAMETERS_DIR = Path(__file__).resolve().parent.parent / "parameters"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("learning_rate", 0.01, 0.01),
        ("learning_rate", 1, 1.0),
        ("learning_rate", "1e-3", 0.001),  # YAML 1.1 reads 1e-3 as a string
        ("learning_rate", " 2.5E-4 ", 0.00025),
        ("epochs", 3, 3),
        ("epochs", "3", 3),
        ("seed", 2**32 - 1, 2**32 - 1),
        ("max_train", None, None),
        ("max_train", "None", None),
        ("max_train", "null", None),
        ("max_train", 500, 500),
        ("early_stopping", True, True),
        ("early_stopping", "false", False),
        ("early_stopping", "True", True),
        ("dataset", "fashion_mnist", "fashion_mnist"),
        ("country_iso_code", "NOR", "NOR"),
        ("phrases", [], []),
        ("phrases", ["input conv flatten dense output"], ["input conv flatten dense output"]),
        ("phrases", '["input conv flatten dense output"]', ["input conv flatten dense output"]),
        ("phrases", "[]", []),
        ("phrases", ("input conv flatten dense output",), ["input conv flatten dense output"]),
        ("data_dir", "/data/cifar", "/data/cifar"),
        ("test_fraction", 0.5, 0.5),
        ("sampling", "original_effective", "original_effective"),
        ("tracking_mode", "process", "process"),
    ],
)
def test_valid_value_is_converted(name, value, expected):
    params = validate_parameters({name: value})
    assert params[name] == expected
    assert type(params[name]) is type(expected)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epoch": 3}, r"unknown parameter 'epoch'; did you mean 'epochs'\?"),
        ({"learnig_rate": 0.1}, r"did you mean 'learning_rate'"),
        ({"colour": "red"}, r"unknown parameter 'colour'; the parameters are listed in docs"),
        ({"epochs": 0}, r"invalid epochs 0 .*expected a value in \[1, 100000\]"),
        ({"epochs": 2.0}, r"invalid epochs 2\.0 .*expected an integer"),
        ({"epochs": "2.5"}, r"invalid epochs '2\.5' .*expected an integer"),
        ({"epochs": True}, r"invalid epochs True .*expected an integer"),
        ({"epochs": None}, r"invalid epochs None .*it has no value"),
        ({"seed": -1}, r"invalid seed -1 .*\[0, 4294967295\]"),
        ({"seed": 2**32}, r"invalid seed 4294967296"),
        ({"learning_rate": 0}, r"invalid learning_rate 0 .*expected a value in \(0, inf\)"),
        ({"learning_rate": "fast"}, r"invalid learning_rate 'fast' .*expected a number"),
        ({"learning_rate": math.nan}, r"invalid learning_rate nan .*finite"),
        ({"learning_rate": "inf"}, r"invalid learning_rate 'inf' .*finite"),
        ({"test_fraction": 1.0}, r"invalid test_fraction 1\.0 .*\(0, 1\)"),
        ({"validation_fraction": 0}, r"invalid validation_fraction 0 .*\(0, 1\)"),
        ({"max_test": 0}, r"invalid max_test 0 .*\[1, 1000000000\]"),
        ({"early_stopping": "yes"}, r"invalid early_stopping 'yes' .*expected true or false"),
        ({"early_stopping": 1}, r"invalid early_stopping 1 .*expected true or false"),
        ({"country_iso_code": False}, r"invalid country_iso_code False .*YAML 1\.1 .*quote"),
        ({"dataset": True}, r"invalid dataset True .*booleans"),
        ({"country_iso_code": "be"}, r"invalid country_iso_code 'be' .*three upper-case"),
        ({"country_iso_code": "ZZZ"}, r"invalid country_iso_code 'ZZZ' .*no electricity mix"),
        ({"dataset": "mnist"}, r"invalid dataset 'mnist' .*expected one of digits"),
        ({"dataset": "fashion-mnist"}, r"did you mean 'fashion_mnist'\?"),
        ({"dataset": 10}, r"invalid dataset 10 .*expected a non-empty string"),
        ({"output_dir": ""}, r"invalid output_dir '' .*non-empty string"),
        ({"sampling": "orginal"}, r"did you mean 'original_effective'\?"),
        ({"tracking_mode": "gpu"}, r"invalid tracking_mode 'gpu' .*machine, process"),
        ({"phrases": "input conv output"}, r"invalid phrases 'input conv output' .*list"),
        ({"phrases": "[unclosed"}, r"invalid phrases '\[unclosed' .*list"),
        ({"phrases": [1, 2]}, r"invalid phrases \[1, 2\] .*every item"),
        ({"phrases": [""]}, r"every item to be a non-empty string"),
        ({"measure_power_secs": -1}, r"invalid measure_power_secs -1"),
    ],
)
def test_invalid_value_is_rejected(values, message):
    with pytest.raises(ParameterError, match=message):
        validate_parameters(values)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ParameterError) as caught:
        validate_parameters({"epoch": 1, "seed": -1, "dataset": "svhn"})
    message = str(caught.value)
    assert "'epoch'" in message
    assert "invalid seed -1" in message
    assert "invalid dataset 'svhn'" in message


def test_non_mapping_is_rejected():
    with pytest.raises(ParameterError, match=r"must be a mapping of names to values, got list"):
        validate_parameters(["epochs", 1])


def test_defaults_are_filled_in_declared_order():
    params = validate_parameters({"epochs": 5})
    assert list(params) == list(PARAMETERS)
    assert params["epochs"] == 5
    assert params["dataset"] == PARAMETERS["dataset"].default


def test_partial_validation_keeps_only_given_names():
    params = validate_parameters({"seed": 3, "dataset": "digits"}, fill_defaults=False)
    assert params == {"seed": 3, "dataset": "digits"}


def test_every_default_is_valid():
    assert validate_parameters(default_parameters()) == default_parameters()


def test_default_list_is_a_copy():
    first = default_parameters()
    first["phrases"].append("input conv flatten dense output")
    assert default_parameters()["phrases"] == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"parameters file .*bad\.yaml is empty"),
        ("# only a comment\n", r"is empty"),
        ("- epochs\n- seed\n", r"contains a list, not a mapping"),
        ("epochs: [1\n", r"is not valid YAML: line 2"),
        ("epochs: 1\nepochs: 2\n", r"parameter 'epochs' is given twice"),
        ("epochs: 1\nepoch: 2\n", r"bad\.yaml:\n  unknown parameter 'epoch'"),
        ("country_iso_code: NO\n", r"invalid country_iso_code False"),
        ("learning_rate: 1e-3x\n", r"invalid learning_rate '1e-3x'"),
    ],
)
def test_bad_file_is_rejected(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ParameterError, match=message):
        load_parameters(path)


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(ParameterError, match=r"parameters file .*absent\.yaml not found"):
        load_parameters(tmp_path / "absent.yaml")


def test_file_values_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 2\nlearning_rate: 1e-3\nmax_train: null\n", encoding="utf-8")
    params = load_parameters(path, overrides={"epochs": "4"})
    assert params["epochs"] == 4
    assert params["learning_rate"] == 0.001
    assert params["max_train"] is None


def test_written_parameters_read_back_equal(tmp_path):
    params = validate_parameters({"phrases": ["input conv flatten dense output"], "seed": 7})
    path = write_parameters(params, tmp_path / "parameters.yaml")
    assert load_parameters(path) == params


@pytest.mark.parametrize("path", sorted(PARAMETERS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_parameter_file_is_valid(path):
    params = load_parameters(path)
    assert params["dataset"] in PARAMETERS["dataset"].choices


def test_paper_files_follow_the_paper_protocol():
    for name in ("paper.yaml", "paper_cifar100.yaml", "paper_fashion_mnist.yaml"):
        params = load_parameters(PARAMETERS_DIR / name)
        assert params["num_architectures"] == 1300, name
        assert params["epochs"] == 36, name
        assert params["batch_size"] == 64, name
        assert params["test_fraction"] == 0.2, name
        assert params["validation_fraction"] == 0.2, name


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, []),
        ({"num_architectures": 40}, []),
        ({"retry_failed": True, "output_dir": "elsewhere", "data_dir": "/data"}, []),
        ({"epochs": 9}, ["epochs"]),
        ({"seed": 1, "dataset": "cifar10"}, ["dataset", "seed"]),
    ],
)
def test_changed_fixed_parameters(change, expected):
    previous = default_parameters()
    assert changed_fixed_parameters(previous, dict(previous, **change)) == expected


def test_training_config_and_dataset_options():
    params = validate_parameters({"epochs": 3, "max_train": 100, "country_iso_code": "FRA"})
    config = training_config(params)
    assert config.epochs == 3
    assert config.inference_batches == params["inference_batches"]
    assert config.mixed_precision is False
    assert config.country_iso_code == "FRA"
    assert config.seed == params["seed"]
    options = dataset_options(params)
    assert options["name"] == "digits"
    assert options["max_train"] == 100


def test_non_utf8_file_is_rejected(tmp_path):
    from cnngen.parameters import read_parameters_file

    path = tmp_path / "latin1.yaml"
    path.write_bytes("dataset: digits\n# café\n".encode("latin-1"))
    with pytest.raises(ParameterError, match=r"latin1.yaml is not UTF-8 text .*save it as UTF-8"):
        read_parameters_file(path)
