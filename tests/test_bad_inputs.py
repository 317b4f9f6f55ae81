"""Bad parameters, data set files and run directories given to `cnngen run`, as a user runs it.

Each case runs the command line in its own process, all cases in parallel, and expects exit
status 2 and nothing on stderr but CNNGen's error, without a traceback. The error starts with
"cnngen run: " and names the parameter or file and the fix. A message may go on over several
lines, one per invalid parameter or searched path. These errors come before any notebook
starts, so no run directory may be left behind.

Cases that CNNGen does not yet handle are strict xfails, so a fix shows up as XPASS.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fixtures_datasets import idx_bytes, write_bytes, write_fashion_mnist

CLI = [sys.executable, "-m", "cnngen.cli", "run"]
ERROR_PREFIX = "cnngen run: "


@dataclass(frozen=True)
class Case:
    """One `cnngen run` with bad input.

    Attributes:
        params: Text of the parameters file, or None to leave the file missing.
        expected: Regular expression searched in the error after "cnngen run: ", with "."
            matching newlines too. ``{dir}`` is replaced by the case's folder.
        args: Further command-line arguments.
        output: The --output path, relative to the case's folder.
        prepare: Called with the case's folder before the run, to write files there.
    """

    params: str | None
    expected: str
    args: tuple[str, ...] = ()
    output: str = "run"
    prepare: object = None


def make_read_only_folder(name):
    def prepare(folder: Path) -> None:
        (folder / name).mkdir(mode=0o555)

    return prepare


def make_file(name):
    def prepare(folder: Path) -> None:
        (folder / name).write_text("not a folder\n")

    return prepare


def invalid(problem: str) -> str:
    """Return the pattern of a validation error with one problem in the parameters file."""
    return r"^invalid parameters in {dir}/params\.yaml:\n  " + problem + r"[^\n]*$"


PARAMETER_CASES = [
    pytest.param(Case("", r"parameters file {dir}/params.yaml is empty; write one"), id="empty"),
    pytest.param(Case(None, r"parameters file {dir}/params.yaml not found; pass"), id="missing"),
    pytest.param(
        Case("dataset: [digits\n", r"{dir}/params.yaml is not valid YAML: line 2, column 1"),
        id="not-yaml",
    ),
    pytest.param(
        Case("- dataset\n- digits\n", r"{dir}/params.yaml contains a list, not a mapping"),
        id="not-a-mapping",
    ),
    pytest.param(
        Case("epochs: 1\nepochs: 2\n", r"line 2, column 1: parameter 'epochs' is given twice"),
        id="repeated-name",
    ),
    pytest.param(
        Case("dataset: digits\n", r"-p expects KEY=VALUE, got 'epochs'", args=("-p", "epochs")),
        id="override-without-value",
    ),
    pytest.param(
        Case("dataset: digits\n", r"invalid shard '5/4': expected INDEX/COUNT", ("--shard", "5/4")),
        id="shard-out-of-range",
    ),
    pytest.param(
        Case(
            "learning_rat: 0.01\n",
            invalid(r"unknown parameter 'learning_rat'; did you mean 'learning_rate'\?"),
        ),
        id="misspelled-parameter",
    ),
    pytest.param(
        Case("colour: red\n", invalid(r"unknown parameter 'colour'; the parameters are listed in")),
        id="unknown-parameter",
    ),
    pytest.param(
        Case("epochs: two\n", invalid(r"invalid epochs 'two' [^\n]*: expected an integer")),
        id="text-for-integer",
    ),
    pytest.param(
        Case("max_train: 1.5\n", invalid(r"invalid max_train 1.5 [^\n]*: expected an integer")),
        id="float-for-integer",
    ),
    pytest.param(
        Case(
            "learning_rate: fast\n",
            invalid(r"invalid learning_rate 'fast' [^\n]*expected a number"),
        ),
        id="text-for-float",
    ),
    pytest.param(
        Case(
            "country_iso_code: no\n",
            invalid(r"invalid country_iso_code False [^\n]*quote the value"),
        ),
        id="yaml-boolean-for-text",
    ),
    pytest.param(
        Case("epochs: 0\n", invalid(r"invalid epochs 0 [^\n]*expected a value in \[1, 100000\]")),
        id="out-of-range",
    ),
    pytest.param(
        Case(
            "dataset: mnist\n",
            invalid(r"invalid dataset 'mnist' [^\n]*expected one of digits, fashion"),
        ),
        id="unknown-dataset",
    ),
    pytest.param(
        Case(
            "dataset: digits\n",
            # The heading must not blame the file for a value that came from -p.
            r"\Ainvalid parameters(?![^\n]*params\.yaml)[^\n]*\n  invalid epochs '0' .*expected",
            ("-p", "epochs=0"),
        ),
        id="invalid-override",
    ),
    pytest.param(
        Case(
            "dataset: digits\n",
            r"^cannot create run directory {dir}/plain/run: Not a directory; choose another",
            output="plain/run",
            prepare=make_file("plain"),
        ),
        id="output-under-regular-file",
    ),
    pytest.param(
        Case(
            "dataset: digits\n",
            r"^cannot create run directory {dir}/plain: File exists; choose another --output",
            output="plain",
            prepare=make_file("plain"),
        ),
        id="output-is-regular-file",
    ),
    pytest.param(
        Case(
            "dataset: digits\n",
            r"^cannot create run directory {dir}/locked/run: Permission denied; choose another",
            output="locked/run",
            prepare=make_read_only_folder("locked"),
        ),
        id="output-in-read-only-folder",
        # Root may write into any folder whatever its mode, so the regular-file cases cover root.
        marks=pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits"),
    ),
]


def start_case(case: Case, folder: Path) -> subprocess.Popen:
    """Write the case's files into folder and start `cnngen run` on them."""
    folder.mkdir(parents=True)
    if case.params is not None:
        (folder / "params.yaml").write_text(case.params, encoding="utf-8")
    if case.prepare is not None:
        case.prepare(folder)
    # Data sets are searched in the home folder and in CNNGEN_DATA_DIR too, so keep both empty.
    environment = dict(os.environ, HOME=str(folder), KERAS_HOME=str(folder / "keras"))
    environment.pop("CNNGEN_DATA_DIR", None)
    command = [*CLI, str(folder / "params.yaml"), "--output", str(folder / case.output)]
    return subprocess.Popen(
        [*command, *case.args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=folder,
    )


def run_cases(params, root: Path) -> dict[str, tuple[Case, Path, subprocess.CompletedProcess]]:
    """Run every case in parallel, and return the case, its folder and its result by id."""
    started = {}
    for param in params:
        if any(mark.name == "skipif" and mark.args[0] for mark in param.marks):
            continue
        (case,) = param.values
        folder = (root / param.id).resolve()
        started[param.id] = (case, folder, start_case(case, folder))
    finished = {}
    for name, (case, folder, process) in started.items():
        stdout, stderr = process.communicate(timeout=600)
        result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        finished[name] = (case, folder, result)
    return finished


def error_message(result: subprocess.CompletedProcess) -> str:
    """Check the exit status and that stderr contains only CNNGen's error; return the message."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith(ERROR_PREFIX), result.stderr[-3000:]
    return result.stderr.removeprefix(ERROR_PREFIX).rstrip("\n")


# Damage to the first file that the Fashion-MNIST reader opens.


def truncate_images(folder: Path) -> None:
    path = folder / "train-images-idx3-ubyte.gz"
    content = idx_bytes(np.zeros((60, 28, 28), np.uint8))
    write_bytes(path, content[:-100])


def corrupt_images(folder: Path) -> None:
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"these bytes are not gzip")


def wrong_image_shape(folder: Path) -> None:
    write_bytes(folder / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((60, 32, 32), np.uint8)))


def fashion_mnist_files(damage):
    def prepare(folder: Path) -> None:
        write_fashion_mnist(folder / "data")
        damage(folder / "data")

    return prepare


def data_params(dataset: str) -> str:
    return (
        f"dataset: {dataset}\n"
        'phrases: ["input conv flatten dense output"]\n'
        "data_dir: data\n"
        "idle_duration_s: 0.5\n"
    )


def make_folder(name):
    def prepare(folder: Path) -> None:
        (folder / name).mkdir()

    return prepare


IMAGES = r"{dir}/data/train-images-idx3-ubyte.gz"
DATA_CASES = [
    pytest.param(
        Case(
            data_params("fashion_mnist"),
            rf"^{IMAGES} is corrupt or truncated: expected 47056 bytes .* found 46956 bytes; "
            r"delete it and reinstall dataset-fashion-mnist",
            prepare=fashion_mnist_files(truncate_images),
        ),
        id="truncated-data-file",
    ),
    pytest.param(
        Case(
            data_params("fashion_mnist"),
            rf"^{IMAGES} is corrupt or truncated: Not a gzipped file .*; delete it and reinstall",
            prepare=fashion_mnist_files(corrupt_images),
        ),
        id="corrupt-data-file",
    ),
    pytest.param(
        Case(
            data_params("fashion_mnist"),
            # The checksum fails before the image size is compared.
            rf"^{IMAGES} is corrupt or truncated: its content has SHA-256 \w+, expected \w+ for "
            r"the official file; delete it",
            prepare=fashion_mnist_files(wrong_image_shape),
        ),
        id="wrong-image-shape",
    ),
    pytest.param(
        Case(
            data_params("cifar10").replace("data_dir: data", "data_dir: absent"),
            r"^data_dir '{dir}/absent' is not an existing folder; pass the folder",
        ),
        id="missing-data-dir",
    ),
    pytest.param(
        Case(
            data_params("cifar10"),
            r"^cifar10 files not found\. Searched:\n  {dir}/data\n.*Download cifar-10-python",
            prepare=make_folder("data"),
        ),
        id="data-files-not-found",
    ),
]
CASES = PARAMETER_CASES + DATA_CASES


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return run_cases(CASES, tmp_path_factory.mktemp("cases"))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_clear_error(runs, request, case):
    case, folder, result = runs[request.node.callspec.id]
    message = error_message(result)

    expected = case.expected.replace("{dir}", re.escape(str(folder)))
    assert re.search(expected, message, re.DOTALL), message
    assert not (folder / case.output).is_dir()
