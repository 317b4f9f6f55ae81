"""Tests of the cnngen command line, run as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "cnngen.cli"]


def run_cli(*args):
    return subprocess.run([*CLI, *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    "phrase",
    [
        "input conv max_pooling flatten dense output",
        "input conv [ ( conv max_pooling , conv ) ( conv , convbn ) ] global_avg_pooling dense output",
    ],
)
def test_check_valid(phrase):
    result = run_cli("check", phrase)
    assert result.returncode == 0
    assert result.stdout.strip() == phrase


@pytest.mark.parametrize(
    "phrase, pattern",
    [
        ("input max_pooling conv flatten dense output", "column 6: unexpected 'max_pooling'"),
        ("input conv@ flatten dense output", "column 10: invalid character '@'"),
        ("input conv output", "column 11: no classification head"),
    ],
)
def test_check_invalid_one_line(phrase, pattern):
    result = run_cli("check", phrase)
    assert result.returncode == 2
    assert pattern in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_check_accepts_separate_words():
    result = run_cli("check", "input", "conv", "flatten", "dense", "output")
    assert result.stdout.strip() == "input conv flatten dense output"


def test_sample_is_reproducible():
    first = run_cli("sample", "--count", "5", "--seed", "3", "--dataset", "cifar10")
    second = run_cli("sample", "--count", "5", "--seed", "3", "--dataset", "cifar10")
    assert first.returncode == 0
    assert first.stdout == second.stdout
    assert len(first.stdout.splitlines()) == 5
    for phrase in first.stdout.splitlines():
        assert run_cli("check", phrase).stdout.strip() == phrase


@pytest.mark.parametrize(
    "dataset, shape",
    [
        ("digits", [8, 8, 1]),
        ("fashion_mnist", [28, 28, 1]),
        ("cifar10", [32, 32, 3]),
        ("cifar100", [32, 32, 3]),
    ],
)
def test_describe_json(dataset, shape):
    result = run_cli("describe", "input conv flatten dense output", "--dataset", dataset, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {"params", "flops", "num_layers"} <= set(document)
    assert document["per_layer"][0]["output_shape"] == shape


def test_describe_five_blocks_on_digits():
    phrase = "input " + "conv max_pooling " * 5 + "flatten dense output"
    result = run_cli("describe", phrase, "--dataset", "digits", "--json")
    assert result.returncode == 0
    assert min(layer["output_shape"][0] for layer in json.loads(result.stdout)["per_layer"]) >= 1


def test_describe_unknown_dataset():
    result = run_cli("describe", "input conv flatten dense output", "--dataset", "mnist")
    assert result.returncode == 2
    assert "unknown data set 'mnist'" in result.stderr


def test_describe_invalid_pin_one_line():
    result = run_cli(
        "describe",
        "input conv(kernel=9, padding=valid) flatten dense output",
        "--dataset",
        "digits",
    )
    assert result.returncode == 2
    assert "kernel 9 is larger than its 8x8 input" in result.stderr


def test_emit_writes_file(tmp_path):
    target = tmp_path / "arch.py"
    result = run_cli(
        "emit", "input conv flatten dense output", "--dataset", "digits", "-o", str(target)
    )
    assert result.returncode == 0, result.stderr
    assert "def build_model(input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES)" in target.read_text()


def test_light_commands_import_no_framework():
    code = (
        "import sys\nfrom cnngen.cli import main\n"
        "main(['check', 'input conv flatten dense output'])\n"
        "main(['sample', '--count', '2', '--dataset', 'digits'])\n"
        "main(['describe', 'input conv flatten dense output', '--dataset', 'cifar10', '--json'])\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'torch', 'codecarbon')]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "HEAVY []" in result.stdout


def test_run_prints_every_invalid_parameter(tmp_path):
    params = tmp_path / "typo.yaml"
    params.write_text("dataset: digits\nepoch: 3\nseed: -1\n")
    result = run_cli("run", str(params), "--output", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "unknown parameter 'epoch'; did you mean 'epochs'?" in result.stderr
    assert "seed" in result.stderr.split("epoch", 1)[1]
    assert "Traceback" not in result.stderr


def test_emit_into_folder_is_one_line(tmp_path):
    result = run_cli(
        "emit", "input conv flatten dense output", "--dataset", "digits", "-o", str(tmp_path)
    )
    assert result.returncode == 2
    assert f"cannot use {tmp_path}" in result.stderr
    assert "Traceback" not in result.stderr


def test_negative_seed_is_rejected():
    result = run_cli("sample", "--count", "1", "--seed", "-1", "--dataset", "digits")
    assert result.returncode == 2
    assert "must be a non-negative integer" in result.stderr


# Fitting a predictor on the reference dataset and scoring new architectures with it.

REFERENCE = str(Path(__file__).resolve().parent.parent / "data" / "reference")


@pytest.fixture(scope="module")
def energy_tree_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "dt_energy.joblib"
    result = run_cli(
        "fit", REFERENCE, "--predictor", "DT", "--target", "energy_kwh", "-o", str(path)
    )
    assert result.returncode == 0, result.stderr
    assert "DT fitted on 336 trainings to predict energy_kwh" in result.stdout
    return path


def test_score_reproduces_fitted_energy(energy_tree_file, tmp_path):
    """A fully grown tree scores the reference phrases with their measured energy."""
    import pandas as pd

    results = pd.read_parquet(f"{REFERENCE}/results.parquet")
    ok = results[results["status"] == "ok"].head(25)
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("# reference phrases\n\n" + "\n".join(ok["phrase"]) + "\n")
    output = tmp_path / "scores.csv"
    result = run_cli(
        "score", str(energy_tree_file), "--phrases", str(phrases), "--dataset",
        "fashion_mnist", "--epochs", "2", "-o", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    scores = pd.read_csv(output)
    assert list(scores.columns) == ["phrase", "dt_energy"]
    assert scores["phrase"].tolist() == ok["phrase"].tolist()
    close = abs(scores["dt_energy"].to_numpy() - ok["energy_kwh"].to_numpy()) <= (
        1e-9 + 1e-6 * ok["energy_kwh"].to_numpy()
    )
    assert close.mean() >= 0.9, scores.assign(measured=ok["energy_kwh"].to_numpy())


def test_score_samples_without_tensorflow(energy_tree_file, tmp_path):
    output = tmp_path / "sampled.csv"
    code = (
        "import sys\nfrom cnngen.cli import main\n"
        f"status = main(['score', {str(energy_tree_file)!r}, '--sample', '40', '--dataset', "
        f"'fashion_mnist', '--epochs', '3', '--seed', '5', '-o', {str(output)!r}])\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'torch')]\n"
        "print('STATUS', status, 'HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "STATUS 0 HEAVY []" in result.stdout, result.stdout + result.stderr
    import pandas as pd

    scores = pd.read_csv(output)
    assert len(scores) == 40
    assert (scores["dt_energy"] > 0).all()
    again = run_cli(
        "score", str(energy_tree_file), "--sample", "40", "--dataset", "fashion_mnist",
        "--epochs", "3", "--seed", "5",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1:] == output.read_text().splitlines()[1:]
    assert "40 architectures" in again.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["fit", REFERENCE, "--predictor", "Neural", "--target", "energy_kwh", "-o", "x.joblib"],
         "predictor 'Neural' needs PyTorch"),
        (["fit", REFERENCE, "--predictor", "RF", "--target", "energy", "-o", "x.joblib"],
         "energy"),
        (["fit", REFERENCE, "--predictor", "XGB", "--target", "energy_kwh", "-o", "x.joblib"],
         "unknown predictor 'XGB'"),
        (["fit", "no/such/run", "--target", "energy_kwh", "-o", "x.joblib"], "no/such/run"),
        (["score", "missing.joblib", "--sample", "3", "--dataset", "digits", "--epochs", "2"],
         "missing.joblib"),
    ],
    ids=["torch predictor", "bad target", "unknown predictor", "missing results", "no file"],
)  # fmt: skip
def test_fit_and_score_errors_are_one_line(arguments, message, tmp_path):
    result = subprocess.run([*CLI, *arguments], capture_output=True, text=True, cwd=tmp_path)
    assert not (tmp_path / "x.joblib").exists()
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("# nothing here\n\n", [], "contains no phrase"),
        ("input conv flatten dense\n", [], "invalid phrase"),
        ("input conv flatten dense output\n", ["--epochs", "0"], "invalid epochs 0"),
        ("input conv flatten dense output\n", ["--dataset", "mnist"], "unknown data set 'mnist'"),
    ],
    ids=["empty file", "bad phrase", "zero epochs", "unknown data set"],
)
def test_score_bad_input_is_one_line(energy_tree_file, tmp_path, content, extra, message):
    phrases = tmp_path / "phrases.txt"
    phrases.write_text(content)
    options = {"--dataset": "fashion_mnist", "--epochs": "2"}
    options.update(dict(zip(extra[::2], extra[1::2], strict=True)))
    flat = [item for pair in options.items() for item in pair]
    result = run_cli("score", str(energy_tree_file), "--phrases", str(phrases), *flat)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_score_needs_one_source_of_architectures(energy_tree_file):
    result = run_cli(
        "score", str(energy_tree_file), "--dataset", "digits", "--epochs", "2",
    )  # fmt: skip
    assert result.returncode == 2
    assert "--sample" in result.stderr
    assert "--phrases" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--target", "energy_kwh", "-o", "results.sqlite"], "must end in .joblib"),
        (["--target", "energy_kwh", "-o", "missing/rf.joblib"], "folder 'missing' not found"),
        (["--target", "accuracy", "-o", "rf.joblib"], "invalid target 'accuracy': expected one of"),
        (["--target", "energy_kwh", "--seed", "-1", "-o", "rf.joblib"], "non-negative integer"),
    ],
    ids=["not joblib", "missing folder", "bad target", "negative seed"],
)
def test_fit_checks_its_arguments(arguments, message, tmp_path):
    result = subprocess.run(
        [*CLI, "fit", REFERENCE, *arguments], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_score_protects_predictor_files(energy_tree_file, tmp_path):
    import shutil

    named_phrase = tmp_path / "phrase.joblib"
    shutil.copy(energy_tree_file, named_phrase)
    common = ["--sample", "2", "--dataset", "fashion_mnist", "--epochs", "2"]
    over = run_cli("score", str(energy_tree_file), *common, "-o", str(energy_tree_file))
    assert over.returncode == 2
    assert "would overwrite a predictor file" in over.stderr
    clash = run_cli("score", str(named_phrase), *common)
    assert clash.returncode == 2
    assert "rename the file" in clash.stderr
    folder = run_cli("score", str(tmp_path), *common)
    assert folder.returncode == 2
    assert "is a folder, not a predictor file" in folder.stderr


def test_score_phrase_errors_name_the_line(energy_tree_file, tmp_path):
    phrases = tmp_path / "phrases.txt"
    phrases.write_text(
        "\ufeff# three phrases\ninput conv flatten dense output\n\n"
        "input conv(kernal=3) flatten dense output\n",
        encoding="utf-8",
    )
    result = run_cli(
        "score", str(energy_tree_file), "--phrases", str(phrases), "--dataset", "digits",
        "--epochs", "2",
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{phrases}, line 4: invalid phrase at column" in result.stderr
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    result = run_cli(
        "score", str(energy_tree_file), "--phrases", str(binary), "--dataset", "digits",
        "--epochs", "2",
    )  # fmt: skip
    assert result.returncode == 2
    assert "is not UTF-8 text" in result.stderr


def test_score_warns_outside_the_fit(energy_tree_file):
    result = run_cli(
        "score", str(energy_tree_file), "--sample", "3", "--dataset", "cifar10", "--epochs", "20",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "fitted on trainings on fashion_mnist" in result.stderr
    assert "fitted on trainings of 2 epochs" in result.stderr
    assert len(result.stdout.splitlines()) == 4


def test_score_sample_must_be_an_integer(energy_tree_file):
    result = run_cli(
        "score", str(energy_tree_file), "--sample", "abc", "--dataset", "digits", "--epochs", "2"
    )
    assert result.returncode == 2
    assert "expected a non-negative integer, got 'abc'" in result.stderr
