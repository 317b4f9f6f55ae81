"""Runs that are killed or collide: what a run directory keeps, and what a rerun does.

tests/test_batch.py kills a process running ``run_batch`` and resumes it. The tests here go
through ``cnngen run`` instead, where the training runs in a Jupyter kernel under papermill:
the kernel is killed with SIGKILL while it trains, as the kernel's out-of-memory killer would,
and the same command is run again. Two ``cnngen run`` processes on one run directory show the
run directory's lock. A CSV export killed halfway shows that the previous export survives.

The runs are tiny: digits, one or two epochs, a few hundred images, no inference measurement.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import psutil
import pytest
from fixtures_store import add_trained

from cnngen.store import ResultsStore

CLI = [sys.executable, "-m", "cnngen.cli", "run"]
TINY_RUN = """\
dataset: digits
seed: 3
num_architectures: {num_architectures}
epochs: {epochs}
max_train: 200
max_test: 100
inference_batches: 0
measure_power_secs: 0.5
idle_duration_s: {idle_duration_s}
"""


def write_params(folder: Path, num_architectures: int, epochs: int, idle_duration_s: float):
    path = folder / "params.yaml"
    text = TINY_RUN.format(
        num_architectures=num_architectures, epochs=epochs, idle_duration_s=idle_duration_s
    )
    path.write_text(text, encoding="utf-8")
    return path


def start_run(params: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, str(params), "--output", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def query(db: Path, sql: str) -> list[tuple]:
    """Run a query on a read-only connection. An absent or half-created store gives no rows."""
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def training_rows(db: Path) -> dict[str, tuple]:
    return {row[0]: row for row in query(db, "SELECT * FROM trainings ORDER BY arch_id")}


def epoch_rows(db: Path) -> list[tuple]:
    return query(db, "SELECT * FROM epochs ORDER BY arch_id, epoch")


def run_metadata_keys(db: Path) -> set[str]:
    return {key for (key,) in query(db, "SELECT key FROM run")}


def wait_for(condition, process: subprocess.Popen, timeout_s: float = 600.0) -> None:
    """Poll condition every 0.1 s, and fail when the process ends or the time is up first."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"cnngen run ended (status {process.returncode}) too early: {stderr}")
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(0.1)


def kernel_of(process: subprocess.Popen) -> psutil.Process:
    """Return the Jupyter kernel that papermill started for the run."""
    kernels = [
        child
        for child in psutil.Process(process.pid).children(recursive=True)
        if "ipykernel" in " ".join(child.cmdline())
    ]
    assert len(kernels) == 1, kernels
    return kernels[0]


def error_message(result) -> list[str]:
    """Return the lines of CNNGen's error, which follows any kernel and TensorFlow output."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("cnngen run: ")]
    assert starts, result.stderr[-3000:]
    return lines[starts[-1] :]


def notebook_log(path: Path) -> str:
    """Return the text of every stream output of an executed notebook."""
    notebook = nbformat.read(path, as_version=4)
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "stream"
    )


def notebook_errors(path: Path) -> list[str]:
    notebook = nbformat.read(path, as_version=4)
    return [
        f"{output.ename}: {output.evalue}"
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]


def stop(process: subprocess.Popen) -> None:
    """Kill a run left over by a failed test, with its kernel."""
    if process.poll() is None:
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()
        process.communicate()


# A run whose kernel is killed while it trains, then run again.

NUM_ARCHITECTURES = 3


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("killed")
    params = write_params(folder, NUM_ARCHITECTURES, epochs=2, idle_duration_s=0.5)
    run_dir = folder / "run"
    db = run_dir / "results.sqlite"

    # Kill the kernel as soon as the first training is stored, so that others are pending.
    first = start_run(params, run_dir)
    try:
        wait_for(lambda: len(training_rows(db)) >= 1, first)
        kernel_of(first).send_signal(signal.SIGKILL)
        stdout, stderr = first.communicate(timeout=120)
    finally:
        stop(first)
    killed = subprocess.CompletedProcess(first.args, first.returncode, stdout, stderr)
    before, epochs_before = training_rows(db), epoch_rows(db)

    rerun = subprocess.run(
        [*CLI, str(params), "--output", str(run_dir)], capture_output=True, text=True, timeout=900
    )
    return SimpleNamespace(
        run_dir=run_dir,
        db=db,
        killed=killed,
        rerun=rerun,
        before=before,
        epochs_before=epochs_before,
        after=training_rows(db),
        epochs_after=epoch_rows(db),
    )


@pytest.mark.slow
def test_killed_kernel_reported_clearly(killed_run):
    executed = (killed_run.run_dir / "notebooks" / "02_train_architectures.ipynb").resolve()

    assert killed_run.killed.returncode == 2
    assert error_message(killed_run.killed) == [
        "cnngen run: notebook 02_train_architectures.ipynb could not be executed: "
        "DeadKernelError: Kernel died",
        f"The executed notebook, if any, is {executed}",
    ]


@pytest.mark.slow
def test_rerun_keeps_finished_rows(killed_run):
    before, after = killed_run.before, killed_run.after

    assert 1 <= len(before) < NUM_ARCHITECTURES
    for arch_id, row in before.items():
        assert after[arch_id] == row, arch_id
    finished_epochs = [row for row in killed_run.epochs_after if row[0] in before]
    assert finished_epochs == killed_run.epochs_before


@pytest.mark.slow
def test_rerun_trains_only_unfinished(killed_run):
    log = notebook_log(killed_run.run_dir / "notebooks" / "02_train_architectures.ipynb")
    trained = set(re.findall(r"cnngen\.batch: (a\d{4}): ", log))
    num_before = len(killed_run.before)

    assert killed_run.rerun.returncode == 0, killed_run.rerun.stderr[-3000:]
    assert sorted(killed_run.after) == [f"a{i:04d}" for i in range(1, NUM_ARCHITECTURES + 1)]
    assert trained == set(killed_run.after) - set(killed_run.before)
    assert f"{NUM_ARCHITECTURES - num_before} architectures to train, {num_before} already" in log


@pytest.mark.slow
def test_database_intact_after_kill(killed_run):
    epochs_run = dict(query(killed_run.db, "SELECT arch_id, epochs_run FROM trainings"))
    epochs_stored = dict(
        query(killed_run.db, "SELECT arch_id, count(*) FROM epochs GROUP BY arch_id")
    )

    assert query(killed_run.db, "PRAGMA integrity_check") == [("ok",)]
    with ResultsStore(killed_run.db, read_only=True) as store:
        assert store.integrity_check() == []
    assert epochs_stored == epochs_run


@pytest.mark.slow
def test_rerun_exports_every_training(killed_run):
    with open(killed_run.run_dir / "results.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))

    assert sorted(row["arch_id"] for row in rows) == sorted(killed_run.after)
    assert all(row["status"] in ("ok", "diverged") for row in rows)


# Two runs on one run directory: the second starts while the first trains, with another
# value of a parameter that a rerun may change, and must neither run nor write anything.


@pytest.fixture(scope="module")
def colliding_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colliding")
    params = write_params(folder, 2, epochs=1, idle_duration_s=0.5)
    run_dir = folder / "run"
    db = run_dir / "results.sqlite"

    first = start_run(params, run_dir)
    try:
        # The batch stores its configuration before the first training.
        wait_for(lambda: "training_config" in run_metadata_keys(db), first)
        second = subprocess.run(
            [*CLI, str(params), "--output", str(run_dir), "-p", "idle_duration_s=1.5"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        first_was_running = first.poll() is None
        stdout, stderr = first.communicate(timeout=900)
    finally:
        stop(first)
    return SimpleNamespace(
        run_dir=run_dir,
        db=db,
        first=subprocess.CompletedProcess(first.args, first.returncode, stdout, stderr),
        first_pid=first.pid,
        second=second,
        first_was_running=first_was_running,
    )


@pytest.mark.slow
def test_second_run_rejected(colliding_runs):
    run_dir = re.escape(str(colliding_runs.run_dir))

    assert colliding_runs.second.returncode == 2
    assert colliding_runs.first_was_running
    assert re.fullmatch(
        rf"cnngen run: run directory {run_dir} is in use by another `cnngen run` \(process "
        rf"{colliding_runs.first_pid}\); wait for it to finish or choose another --output",
        colliding_runs.second.stderr.strip(),
    )


@pytest.mark.slow
def test_first_run_finishes_intact(colliding_runs):
    with open(colliding_runs.run_dir / "results.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))

    assert colliding_runs.first.returncode == 0, colliding_runs.first.stderr[-3000:]
    assert [row["arch_id"] for row in rows] == ["a0001", "a0002"]
    assert all(row["status"] in ("ok", "diverged") for row in rows)
    assert query(colliding_runs.db, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.slow
def test_rejected_run_writes_nothing(colliding_runs):
    parameters = (colliding_runs.run_dir / "parameters.yaml").read_text(encoding="utf-8")
    executed = sorted((colliding_runs.run_dir / "notebooks").glob("*.ipynb"))

    assert "idle_duration_s: 0.5\n" in parameters
    assert len(executed) == 4
    for path in executed:
        assert notebook_errors(path) == [], path.name


# A CSV export killed while it writes.

STALLED_EXPORT = textwrap.dedent(
    """
    import sys, time
    import pandas as pd
    from cnngen.store import ResultsStore

    def write_half_then_wait(frame, stream, **kwargs):
        stream.write("arch_id,phrase\\n")
        stream.flush()
        print("writing", flush=True)
        time.sleep(600)

    pd.DataFrame.to_csv = write_half_then_wait
    with ResultsStore(sys.argv[1]) as store:
        store.export_csv(sys.argv[2])
    """
)


@pytest.fixture
def killed_export(tmp_path):
    db, target = tmp_path / "results.sqlite", tmp_path / "results.csv"
    with ResultsStore(db) as store:
        add_trained(store, "a1")
        store.export_csv(target)
        add_trained(store, "a2")
    previous = target.read_bytes()

    process = subprocess.Popen(
        [sys.executable, "-c", STALLED_EXPORT, str(db), str(target)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "writing"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    return SimpleNamespace(db=db, target=target, previous=previous, process=process)


def test_killed_export_keeps_previous_csv(killed_export):
    assert killed_export.process.returncode == -signal.SIGKILL
    assert killed_export.target.read_bytes() == killed_export.previous

    with ResultsStore(killed_export.db) as store:
        store.export_csv(killed_export.target)
    with open(killed_export.target, newline="", encoding="utf-8") as stream:
        assert [row["arch_id"] for row in csv.DictReader(stream)] == ["a1", "a2"]


def test_killed_export_leaves_no_temporary_file(killed_export):
    with ResultsStore(killed_export.db) as store:
        store.export_csv(killed_export.target)

    assert sorted(path.name for path in killed_export.target.parent.glob("*csv*")) == [
        "results.csv"
    ]
