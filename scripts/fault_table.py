"""Run each fault that a CNNGen run must survive, observe what happens, and print a table.

Every fault is small: digits, one epoch, two to four architectures. Training faults run
``run_batch`` in this process with a real store and CodeCarbon tracker. The injected ones (out
of memory, CodeCarbon failures) replace one method while the faulty architecture trains. A
batch process and a CSV export are killed with SIGKILL in child processes of this script. Bad
input goes through ``cnngen run``. Each fault gives one Markdown row: exit status, training
status, error text, stored energy and leftovers (threads, CodeCarbon's lock file, temporary
files, tracebacks). tests/test_faults.py, test_interruption.py and test_bad_inputs.py check
the same behaviour.

Usage:
    python scripts/fault_table.py                            # print the table
    python scripts/fault_table.py --update docs/robustness.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gzip
import logging
import os
import platform
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import astuple, dataclass
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

PHRASE = "input conv flatten dense output"
START_MARK = "<!-- fault table: start -->"
END_MARK = "<!-- fault table: end -->"
MAX_CELL_CHARS = 200
HEADER = ("Fault", "Exit status", "Status column", "Error text", "Energy", "Leftovers")
TRAINING_FAULTS = {
    "exception": "exception inside fit (model for 28x28 images, digits are 8x8)",
    "nan": "NaN loss",
    "oom": "out of memory (ResourceExhaustedError raised by fit)",
    "start": "CodeCarbon start raises",
    "stop": "CodeCarbon stop raises",
}


@dataclass
class Observation:
    """The outcome of one fault, as the cells of its table row in the order of HEADER."""

    fault: str
    exit_status: str = "—"
    status: str = "—"
    error: str = "none"
    energy: str = "—"
    leftovers: str = "none"


# Training faults, in this process.


def training_config():
    from cnngen.training import TrainingConfig

    return TrainingConfig(
        epochs=1, measure_power_secs=0.5, idle_duration_s=0.5, inference_batches=0
    )


def phrase_builder(folder: Path, arch_id: str, input_shape, num_classes, seed: int = 0):
    """Solve the phrase, emit its Keras file, and return the file's build_model and phrase."""
    from cnngen.grammar import parse
    from cnngen.keras_source import load_build_model, write_source
    from cnngen.solver import solve

    resolved = solve(parse(PHRASE), tuple(input_shape), num_classes, seed=seed)
    path = write_source(resolved, folder / f"{arch_id}.py")
    return load_build_model(path), resolved.to_phrase()


def build_nan(input_shape, num_classes):
    import keras

    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Lambda(lambda t: t * float("nan")),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


def faulty_builder(name: str, folder: Path, data):
    """Return the build_model of the faulty architecture of a training fault."""
    if name == "nan":
        return build_nan
    if name == "exception":
        build, _ = phrase_builder(folder, "a1", (28, 28, 1), data.info.num_classes)
        return lambda input_shape, num_classes: build((28, 28, 1), num_classes)
    build, _ = phrase_builder(folder, "a1", data.info.input_shape, data.info.num_classes)
    return build


def injections(name: str, fault: dict) -> list[tuple[object, str, object]]:
    """Return (class, attribute, replacement) triples that raise while fault["active"]."""
    import keras
    import tensorflow as tf
    from codecarbon import OfflineEmissionsTracker

    def raising(original, error):
        original = getattr(original, "__wrapped__", original)

        def method(self, *args, **kwargs):
            if fault["active"]:
                raise error
            return original(self, *args, **kwargs)

        return method

    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    table = {
        "oom": (keras.Model, "fit", oom),
        "start": (OfflineEmissionsTracker, "start", RuntimeError("RAPL unreadable")),
        "stop": (OfflineEmissionsTracker, "stop", OSError("counter vanished")),
    }
    if name not in table:
        return []
    owner, attribute, error = table[name]
    return [(owner, attribute, raising(getattr(owner, attribute), error))]


def run_faulty_batch(name: str, folder: Path, data):
    """Run a batch whose first architecture meets the fault, and return rows and leftovers."""
    import codecarbon.lock
    from tqdm._monitor import TMonitor

    from cnngen.batch import run_batch
    from cnngen.store import ResultsStore

    fault = {"active": False}
    healthy, phrase = phrase_builder(folder, "a2", data.info.input_shape, data.info.num_classes)
    builders = {"a1": faulty_builder(name, folder, data), "a2": healthy}
    items = [SimpleNamespace(arch_id=arch_id, phrase=phrase, seed=0) for arch_id in builders]

    def builder_for(item):
        fault["active"] = item.arch_id == "a1"
        return builders[item.arch_id]

    threads = set(threading.enumerate())
    lock_file = folder / ".codecarbon.lock"
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(codecarbon.lock, "LOCKFILE", str(lock_file)))
        for owner, attribute, replacement in injections(name, fault):
            stack.enter_context(mock.patch.object(owner, attribute, replacement))
        with ResultsStore(folder / "results.sqlite") as store:
            config = training_config()
            run_batch(items, data, config, store, build_model_for=builder_for, progress=False)
            rows = store.trainings_frame().set_index("arch_id")
            problems = store.integrity_check()

    # tqdm's monitor thread outlives progress bars on purpose; any other new thread is a leak.
    new_threads = [
        t.name for t in threading.enumerate() if t not in threads and not isinstance(t, TMonitor)
    ]
    leftovers = [f"threads {new_threads}"] if new_threads else []
    leftovers += ["CodeCarbon lock file"] if lock_file.exists() else []
    leftovers += [f"integrity: {problems}"] if problems else []
    return rows, ", ".join(leftovers) or "none"


def observe_training_fault(name: str, root: Path, data) -> Observation:
    """Train a faulty and a healthy architecture with one fault and describe the outcome."""
    folder = root / name
    folder.mkdir()
    rows, leftovers = run_faulty_batch(name, folder, data)
    return Observation(
        fault=TRAINING_FAULTS[name],
        exit_status=f"batch goes on: next architecture {rows.loc['a2', 'status']}",
        status=rows.loc["a1", "status"],
        error=_first_line(rows.loc["a1", "error"]),
        energy=_energy(rows.loc["a1"]),
        leftovers=leftovers,
    )


def _energy(row) -> str:
    import pandas as pd

    if pd.isna(row["energy_kwh"]):
        return f"NULL ({_first_line(row['energy_error'])})"
    return f"measured, {row['energy_kwh']:.2e} kWh"


def _first_line(text) -> str:
    if not isinstance(text, str):
        return "none"
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return next((line for line in text.splitlines() if line.strip()), "")


# A batch process and a CSV export killed with SIGKILL. Each runs this script in a child mode.


def train_four(folder: Path) -> None:
    """Train four architectures into folder's store, saying which one is built next."""
    from cnngen.batch import run_batch
    from cnngen.datasets import load_dataset
    from cnngen.store import ResultsStore

    data = load_dataset("digits", max_train=300)
    builders, items = {}, []
    for seed in range(1, 5):
        arch_id = f"a{seed}"
        shape, num_classes = data.info.input_shape, data.info.num_classes
        builders[arch_id], phrase = phrase_builder(folder, arch_id, shape, num_classes, seed)
        items.append(SimpleNamespace(arch_id=arch_id, phrase=phrase, seed=seed))

    def builder_for(item):
        print("building", item.arch_id, flush=True)
        return builders[item.arch_id]

    with ResultsStore(folder / "results.sqlite") as store:
        config = training_config()
        run_batch(items, data, config, store, build_model_for=builder_for, progress=False)


def export_stalled(folder: Path) -> None:
    """Export folder's store to results.csv with a CSV writer that stops halfway and waits."""
    import pandas as pd

    from cnngen.store import ResultsStore

    def write_half_then_wait(frame, stream, **kwargs):
        stream.write("arch_id,phrase\n")
        stream.flush()
        print("writing", flush=True)
        time.sleep(600)

    with ResultsStore(folder / "results.sqlite") as store:
        with mock.patch.object(pd.DataFrame, "to_csv", write_half_then_wait):
            store.export_csv(folder / "results.csv")


def start_child(mode: str, folder: Path) -> subprocess.Popen:
    command = [sys.executable, __file__, f"--{mode}", str(folder)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_trainings(db: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {row[0]: row for row in conn.execute("SELECT * FROM trainings ORDER BY arch_id")}
    finally:
        conn.close()


def observe_killed_batch(root: Path) -> Observation:
    """Kill a batch process while its third architecture trains, rerun it, compare the rows."""
    folder = root / "killed-batch"
    folder.mkdir()
    process = start_child("train-four", folder)
    for line in process.stdout:
        if line.strip() == "building a3":
            break
    process.send_signal(signal.SIGKILL)
    process.communicate()
    before = _read_trainings(folder / "results.sqlite")

    rerun = start_child("train-four", folder)
    stdout, stderr = rerun.communicate()
    after = _read_trainings(folder / "results.sqlite")
    unchanged = all(after.get(arch_id) == row for arch_id, row in before.items())
    retrained = ", ".join(re.findall(r"building (a\d)", stdout))
    conn = sqlite3.connect(folder / "results.sqlite")
    (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
    conn.close()
    return Observation(
        fault="SIGKILL of a batch process during its third training, then a rerun",
        exit_status=f"{process.returncode}, rerun {rerun.returncode}",
        status=f"{len(before)} finished rows before the kill, kept unchanged: {unchanged}",
        error=f"rerun trained {retrained}; PRAGMA integrity_check: {integrity}",
        leftovers="none" if rerun.returncode == 0 else _first_line(stderr),
    )


def observe_killed_export(root: Path) -> Observation:
    """Kill a CSV export of the killed batch's store halfway and check the previous export."""
    from cnngen.store import ResultsStore

    folder = root / "killed-batch"
    with ResultsStore(folder / "results.sqlite") as store:
        previous = store.export_csv(folder / "results.csv").read_bytes()
    process = start_child("export-stalled", folder)
    process.stdout.readline()
    process.send_signal(signal.SIGKILL)
    process.communicate()
    intact = (folder / "results.csv").read_bytes() == previous
    temporary = [f"temporary file {path.name}" for path in folder.glob(".results.csv*")]
    return Observation(
        fault="SIGKILL during the CSV export",
        exit_status=str(process.returncode),
        error=f"previous results.csv intact: {intact}",
        leftovers=", ".join(temporary) or "none",
    )


# Bad input through `cnngen run`.


def _plain_file(folder: Path) -> None:
    (folder / "plain").write_text("a file, not a folder\n", encoding="utf-8")


def _truncated_fashion_mnist(folder: Path) -> None:
    data = folder / "data"
    data.mkdir()
    header = struct.pack(">IIII", 0x803, 60000, 28, 28)
    (data / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(1000)))
    for stem in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (data / f"{stem}.gz").write_bytes(gzip.compress(b"\0"))


# (fault, parameters file text, --output relative to the case folder, preparation)
CLI_CASES = [
    ("empty parameters file", "", "run", None),
    ("misspelled parameter (`learning_rat`)", "learning_rat: 0.01\n", "run", None),
    ("unknown data set (`dataset: mnist`)", "dataset: mnist\n", "run", None),
    ("output directory under a regular file", "dataset: digits\n", "plain/run", _plain_file),
    (
        "truncated data set file",
        'dataset: fashion_mnist\nphrases: ["input conv flatten dense output"]\n'
        "data_dir: data\nidle_duration_s: 0.5\n",
        "run",
        _truncated_fashion_mnist,
    ),
]


def run_command(output: str) -> list[str]:
    return [sys.executable, "-m", "cnngen.cli", "run", "params.yaml", "--output", output]


def observe_cli_cases(root: Path) -> list[Observation]:
    """Run every `cnngen run` case in parallel."""
    started = []
    for index, (fault, params, output, prepare) in enumerate(CLI_CASES, start=1):
        folder = root / f"cli-{index}"
        folder.mkdir()
        (folder / "params.yaml").write_text(params, encoding="utf-8")
        if prepare is not None:
            prepare(folder)
        process = subprocess.Popen(
            run_command(output), cwd=folder, stderr=subprocess.PIPE, text=True
        )
        started.append((fault, process))
    return [_cli_observation(fault, process) for fault, process in started]


def observe_second_run(root: Path) -> Observation:
    """Start a second `cnngen run` on a run directory while a first one has it locked."""
    from cnngen.pipeline import RUN_LOCK_FILE

    folder = root / "two-runs"
    folder.mkdir()
    (folder / "params.yaml").write_text(
        "dataset: digits\nnum_architectures: 2\nmax_train: 200\ninference_batches: 0\n"
        "idle_duration_s: 0.5\n",
        encoding="utf-8",
    )
    lock = folder / "run" / RUN_LOCK_FILE
    with open(folder / "first.log", "w", encoding="utf-8") as log:
        first = subprocess.Popen(run_command("run"), cwd=folder, stdout=log, stderr=log)
        while first.poll() is None and not (lock.exists() and lock.read_text() == str(first.pid)):
            time.sleep(0.1)
        second = subprocess.run(run_command("run"), cwd=folder, capture_output=True, text=True)
        first.wait()
    rows = _read_trainings(folder / "run" / "results.sqlite")
    observation = _cli_observation("second `cnngen run` on a run directory in use", second)
    observation.exit_status += f", first run {first.returncode}"
    observation.status = f"first run stored {len(rows)} of 2 trainings"
    return observation


def _cli_observation(fault: str, process) -> Observation:
    """Describe a finished `cnngen run`, given as a Popen or a CompletedProcess."""
    stderr = process.communicate()[1] if isinstance(process, subprocess.Popen) else process.stderr
    # CNNGen's error comes last, after any kernel and TensorFlow output, and may span lines.
    lines = stderr.strip().splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("cnngen run: ")]
    return Observation(
        fault=fault,
        exit_status=str(process.returncode),
        error=" / ".join(lines[starts[-1] :]) if starts else f"(stderr: {stderr[-200:]!r})",
        leftovers="traceback on stderr" if "Traceback" in stderr else "none",
    )


# The table.


def render_table(observations: list[Observation]) -> str:
    """Return the observations as a Markdown table, temporary paths shortened to <tmp>."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for observation in observations:
        lines.append("| " + " | ".join(_cell(cell) for cell in astuple(observation)) + " |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    text = re.sub(r"[^\s']*fault-table-\w+", "<tmp>", " ".join(str(text).split()))
    # A failed notebook's message quotes the cell's first line, which adds nothing here.
    text = re.sub(r" \(In \[\d+\]: '.*?'\)", "", text)
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - 1] + "…"
    return text.replace("|", "\\|")


def update_document(path: Path, text: str) -> None:
    """Replace the text between the fault table marks of a Markdown file."""
    document = path.read_text(encoding="utf-8")
    start, end = document.find(START_MARK), document.find(END_MARK)
    if start < 0 or end < start:
        sys.exit(f"{path} has no {START_MARK} ... {END_MARK} block; add one where the table goes")
    updated = document[: start + len(START_MARK)] + "\n" + text + "\n" + document[end:]
    path.write_text(updated, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", type=Path, help="Markdown file whose fault table to replace")
    parser.add_argument("--train-four", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--export-stalled", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if args.train_four or args.export_stalled:
        train_four(args.train_four) if args.train_four else export_stalled(args.export_stalled)
        return 0
    from cnngen.datasets import load_dataset

    with tempfile.TemporaryDirectory(prefix="fault-table-") as folder:
        root = Path(folder)
        data = load_dataset("digits", max_train=300)
        observations = [observe_training_fault(name, root, data) for name in TRAINING_FAULTS]
        observations.append(observe_killed_batch(root))
        observations.append(observe_killed_export(root))
        observations += observe_cli_cases(root)
        observations.append(observe_second_run(root))
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    text = (
        f"Generated by `python scripts/fault_table.py` on {datetime.date.today()} ({machine})."
        f"\n\n{render_table(observations)}"
    )
    if args.update is not None:
        update_document(args.update, text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
