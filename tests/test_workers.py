"""Tests of cnngen.workers: trainings in replaced child processes, with real Keras trainings."""

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_training import (
    FAST,
    NO_INFERENCE,
    item,
    load_digits_splits,
    small_for,
    small_unless_doomed_for,
)

from cnngen.batch import run_batch
from cnngen.errors import ParameterError, TrainingError
from cnngen.store import ResultsStore
from cnngen.workers import WorkerPool, describe_exit

TESTS_DIR = Path(__file__).parent


@pytest.fixture(scope="module")
def digits():
    return load_digits_splits()


@pytest.mark.slow
def test_pool_replaces_child_and_reproduces_results(digits):
    config = dataclasses.replace(NO_INFERENCE, deterministic=True)
    with WorkerPool(digits, config, small_for, architectures_per_process=2) as pool:
        results = [pool.train(item(arch_id, seed=7)) for arch_id in ("a1", "a2", "a3")]
        started = pool.processes_started
    assert started == 2
    assert [result.status for result in results] == ["ok"] * 3
    # a1 and a2 ran in one child, a3 in a fresh one: with the same seed and deterministic ops,
    # a new process reproduces the first one's training exactly.
    assert results[2].train_loss == results[0].train_loss
    assert results[2].test_accuracy == results[0].test_accuracy
    assert len(results[2].epoch_rows) == 1


@pytest.mark.slow
def test_dead_child_fails_only_its_architecture(digits):
    items = [item("a1"), item("doomed"), item("a2")]
    with WorkerPool(digits, NO_INFERENCE, small_unless_doomed_for, 10) as pool:
        results = [pool.train(each) for each in items]
        started = pool.processes_started
    assert [result.status for result in results] == ["ok", "failed", "ok"]
    assert "WorkerDiedError" in results[1].error
    assert "doomed" in results[1].error
    assert "SIGKILL" in results[1].error
    assert results[1].energy is None
    assert started == 2


@pytest.mark.slow
def test_error_raised_in_child_reaches_the_caller(digits):
    with WorkerPool(digits, NO_INFERENCE, small_for, 3) as pool:
        with pytest.raises(TrainingError, match=r"invalid seed 1\.5 of a1"):
            pool.train(item("a1", seed=1.5))


@pytest.mark.slow
def test_run_batch_in_children_records_every_training(digits, tmp_path):
    items = [item("a1"), item("a2"), item("a3")]
    with ResultsStore(tmp_path / "results.sqlite") as store:
        results = run_batch(
            items,
            digits,
            FAST,
            store,
            build_model_for=small_for,
            progress=False,
            architectures_per_process=2,
        )
        frame = store.trainings_frame()
        epochs = store.epochs_frame()
    assert [result.arch_id for result in results] == ["a1", "a2", "a3"]
    assert list(frame["status"]) == ["ok", "ok", "ok"]
    assert frame["energy_kwh"].gt(0).all()
    assert frame["inference_latency_s"].gt(0).all()
    assert len(epochs) == 3


def test_lambda_builder_is_rejected_before_any_child_starts(digits, tmp_path):
    with ResultsStore(tmp_path / "results.sqlite") as store:
        with pytest.raises(ParameterError, match="cannot be sent to a training process"):
            run_batch(
                [item("a1")],
                digits,
                FAST,
                store,
                build_model_for=lambda _: None,
                progress=False,
                architectures_per_process=2,
            )
        assert store.run_metadata() == {}


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "3"])
def test_invalid_architectures_per_process(digits, value):
    with pytest.raises(ParameterError, match="architectures_per_process"):
        WorkerPool(digits, FAST, small_for, value)


@pytest.mark.parametrize(
    ("exitcode", "expected"),
    [
        (-9, "was killed by SIGKILL (the kernel's out-of-memory killer"),
        (-11, "was killed by SIGSEGV"),
        (1, "exited with code 1"),
        (-200, "was killed by signal 200"),
    ],
)
def test_describe_exit(exitcode, expected):
    assert describe_exit(exitcode).startswith(expected)


ORPHAN_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
from fixtures_training import FAST, NO_INFERENCE, item, load_digits_splits, small_for
from cnngen.workers import WorkerPool

if __name__ == "__main__":
    pool = WorkerPool(load_digits_splits(), FAST, small_for, 5)
    pool.train(item("a1"))
    print(pool._process.pid, flush=True)
    os._exit(0)
"""


@pytest.mark.slow
def test_child_exits_when_its_parent_is_gone(tmp_path):
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN_SCRIPT.format(tests=str(TESTS_DIR)))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=True
    )
    child_pid = int(done.stdout.split()[-1])
    deadline = time.monotonic() + 20
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(child_pid)


def _alive(pid: int) -> bool:
    """Return whether a process with this id exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_dataframe_rows_are_sent_to_the_child(digits):
    import pandas as pd

    rows = pd.DataFrame({"arch_id": ["a1"], "phrase": ["input conv flatten dense output"]})
    with WorkerPool(digits, NO_INFERENCE, small_for, 2) as pool:
        (result,) = [pool.train(row) for row in rows.itertuples(index=False)]
    assert result.status == "ok"
