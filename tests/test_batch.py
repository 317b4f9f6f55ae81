"""Tests of cnngen.batch: resumable batches, shards and interruptions, with real trainings."""

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from codecarbon import OfflineEmissionsTracker
from fixtures_training import (
    FAST,
    NO_INFERENCE,
    build_raising,
    build_small,
    item,
    load_digits_splits,
)

from cnngen.batch import parse_shard, run_batch, shard_items, shard_store_name
from cnngen.errors import TrainingError
from cnngen.store import ResultsStore

TESTS_DIR = Path(__file__).parent


@pytest.fixture(scope="module")
def digits():
    return load_digits_splits()


@pytest.mark.slow
def test_codecarbon_stop_failure_recorded(digits, monkeypatch, tmp_path):
    def fail(self):
        raise OSError("counter vanished")

    monkeypatch.setattr(OfflineEmissionsTracker, "_prepare_emissions_data", fail)
    with ResultsStore(tmp_path / "results.sqlite") as store:
        run_batch(
            [item("a1")], digits, FAST, store, build_model_for=lambda _: build_small, progress=False
        )
        row = store.trainings_frame().iloc[0]

    assert row["status"] == "ok"
    assert np.isnan(row["energy_kwh"])
    assert "CodeCarbon failed to stop: OSError: counter vanished" in row["energy_error"]


@pytest.mark.slow
def test_batch_failure_continues(digits, tmp_path):
    builders = {"a1": build_small, "a2": build_raising, "a3": build_small}
    with ResultsStore(tmp_path / "results.sqlite") as store:
        results = run_batch(
            [item("a1"), item("a2"), item("a3")],
            digits,
            FAST,
            store,
            build_model_for=lambda it: builders[it.arch_id],
            progress=False,
        )
        frame = store.trainings_frame().set_index("arch_id")
        metadata = store.run_metadata()

    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert frame.loc["a2", "status"] == "failed"
    assert frame.loc["a2", "error"] == "ValueError: unknown layer 'conv9'"
    assert frame.loc["a3", "status"] == "ok"
    assert frame.loc["a1", "dataset"] == "digits"
    assert frame.loc["a1", "num_layers"] == 3
    assert metadata["training_config"]["epochs"] == 1
    assert metadata["dataset"] == {"dataset": "digits", "num_train": len(digits.y_train)}
    assert metadata["disclosure"]["country_iso_code"] == "BEL"
    assert metadata["idle_power_w"] > 0


@pytest.mark.slow
def test_batch_builder_raising_is_failed(digits, tmp_path):
    def no_builder(it):
        raise KeyError(it.arch_id)

    with ResultsStore(tmp_path / "results.sqlite") as store:
        results = run_batch(
            [item("a1")], digits, FAST, store, build_model_for=no_builder, progress=False
        )

    assert results[0].status == "failed"
    assert results[0].error == "KeyError: 'a1'"


@pytest.mark.slow
def test_batch_resume_skips_finished(digits, tmp_path):
    path = tmp_path / "results.sqlite"
    built = []

    def builder_for(it):
        built.append(it.arch_id)
        return build_raising if it.arch_id == "a2" else build_small

    with ResultsStore(path) as store:
        run_batch(
            [item("a1"), item("a2")],
            digits,
            FAST,
            store,
            build_model_for=builder_for,
            progress=False,
        )
    with ResultsStore(path) as store:
        resumed = run_batch(
            [item("a1"), item("a2"), item("a3")],
            digits,
            FAST,
            store,
            build_model_for=builder_for,
            progress=False,
        )
        retried = run_batch(
            [item("a1"), item("a2"), item("a3")],
            digits,
            FAST,
            store,
            build_model_for=builder_for,
            retry_failed=True,
            progress=False,
        )
        finished = store.finished_ids()

    assert [r.arch_id for r in resumed] == ["a3"]
    assert [r.arch_id for r in retried] == ["a2"]
    assert built == ["a1", "a2", "a3", "a2"]
    assert finished == {"a1", "a2", "a3"}


def test_batch_nothing_to_do(digits, tmp_path):
    with ResultsStore(tmp_path / "results.sqlite") as store:
        results = run_batch([], digits, FAST, store, build_model_for=lambda _: build_small)
        metadata = store.run_metadata()

    assert results == []
    assert metadata == {}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config_changes", "summary", "message"),
    [
        ({"epochs": 2}, None, "another training_config \\(epochs 1 stored, 2 now\\)"),
        ({"seed": 5}, None, "another training_config \\(seed 0 stored, 5 now\\)"),
        ({}, {"dataset": "digits", "num_train": 1}, "another dataset \\(num_train"),
    ],
)
def test_batch_resume_rejects_other_setup(digits, tmp_path, config_changes, summary, message):
    changed_data = SimpleNamespace(**vars(digits))
    if summary is not None:
        changed_data.summary = lambda: summary
    with ResultsStore(tmp_path / "results.sqlite") as store:
        run_batch([item("a1")], digits, FAST, store, build_model_for=lambda _: build_small)
        with pytest.raises(TrainingError, match=message):
            run_batch(
                [item("a2")],
                changed_data,
                dataclasses.replace(FAST, **config_changes),
                store,
                build_model_for=lambda _: build_small,
            )


@pytest.mark.slow
def test_batch_resume_allows_other_verbosity(digits, tmp_path):
    with ResultsStore(tmp_path / "results.sqlite") as store:
        run_batch([item("a1")], digits, FAST, store, build_model_for=lambda _: build_small)
        resumed = run_batch(
            [item("a2")],
            digits,
            dataclasses.replace(FAST, verbose=2, idle_duration_s=3.0),
            store,
            build_model_for=lambda _: build_small,
        )

    assert [result.status for result in resumed] == ["ok"]


def test_old_import_path_still_works():
    from cnngen.training import run_batch as old_run_batch

    assert old_run_batch is run_batch


@pytest.mark.parametrize(
    ("index", "count", "expected"),
    [
        (1, 1, ["a", "b", "c", "d", "e"]),
        (1, 2, ["a", "c", "e"]),
        (2, 2, ["b", "d"]),
        (3, 3, ["c"]),
        (4, 4, ["d"]),
        (6, 6, []),
    ],
)
def test_shard_items(index, count, expected):
    assert shard_items(["a", "b", "c", "d", "e"], index, count) == expected


def test_shards_cover_items_once():
    items = [f"a{i:04d}" for i in range(1, 24)]
    shards = [shard_items(items, index, 5) for index in range(1, 6)]

    assert sorted(sum(shards, [])) == items


@pytest.mark.parametrize(
    ("index", "count"), [(0, 4), (5, 4), (1, 0), (-1, 2), (1.0, 2), (True, 2), ("1", 2)]
)
def test_shard_invalid(index, count):
    with pytest.raises(TrainingError, match="invalid shard"):
        shard_items(["a"], index, count)


@pytest.mark.parametrize(("text", "shard"), [("1/4", (1, 4)), ("4/4", (4, 4)), (" 2 / 3 ", (2, 3))])
def test_parse_shard(text, shard):
    assert parse_shard(text) == shard


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "1-4", "1/4/2", "a/b", "", None])
def test_parse_shard_invalid(text):
    with pytest.raises(TrainingError, match=f"invalid shard {text!r}: expected INDEX/COUNT"):
        parse_shard(text)


@pytest.mark.parametrize(
    ("shard", "name"),
    [
        (None, "results.sqlite"),
        ((1, 4), "results.shard-1-of-4.sqlite"),
        ((3, 3), "results.shard-3-of-3.sqlite"),
    ],
)
def test_shard_store_name(shard, name):
    assert shard_store_name(shard) == name


@pytest.mark.slow
def test_batch_uses_item_seeds(digits, tmp_path):
    items = [item("a1"), item("a2"), item("a3")]
    items[0].seed, items[1].seed, items[2].seed = 5, float("nan"), None
    with ResultsStore(tmp_path / "results.sqlite") as store:
        results = run_batch(
            items,
            digits,
            NO_INFERENCE,
            store,
            build_model_for=lambda _: build_small,
            progress=False,
        )
        frame = store.trainings_frame().set_index("arch_id")

    assert [result.training_seed for result in results] == [5, 0, 0]
    assert frame.loc["a1", "training_seed"] == 5
    assert frame.loc["a1", "seed"] == 5


@pytest.mark.slow
def test_batch_shard_trains_its_part(digits, tmp_path):
    items = [item(f"a{i}") for i in range(1, 5)]
    with ResultsStore(tmp_path / shard_store_name((2, 2))) as store:
        results = run_batch(
            items,
            digits,
            NO_INFERENCE,
            store,
            build_model_for=lambda _: build_small,
            progress=False,
            shard=(2, 2),
        )
        metadata = store.run_metadata()
        with pytest.raises(TrainingError, match="another shard"):
            run_batch(
                items, digits, NO_INFERENCE, store, build_model_for=lambda _: build_small,
                progress=False, shard=(1, 2),
            )  # fmt: skip

    assert [result.arch_id for result in results] == ["a2", "a4"]
    assert metadata["shard"] == {"index": 2, "count": 2}


@pytest.mark.slow
def test_batch_resumes_config_without_new_fields(digits, tmp_path):
    # The removed fields keep their defaults here, as in a run of an older CNNGen version.
    config = dataclasses.replace(NO_INFERENCE, inference_warmup_batches=3, inference_duration_s=2.0)
    with ResultsStore(tmp_path / "results.sqlite") as store:
        run_batch([item("a1")], digits, config, store, build_model_for=lambda _: build_small)
        older = store.run_metadata()["training_config"]
        for name in ("mixed_precision", "inference_warmup_batches", "inference_duration_s"):
            del older[name]
        store.record_run_metadata("training_config", older)
        resumed = run_batch(
            [item("a2")], digits, config, store, build_model_for=lambda _: build_small
        )

    assert [result.status for result in resumed] == ["ok"]


INTERRUPTED_BATCH_SCRIPT = """
import dataclasses, sys
from types import SimpleNamespace
sys.path.insert(0, {tests_dir!r})
from fixtures_training import FAST, build_small, item, load_digits_splits
from cnngen.batch import run_batch
from cnngen.store import ResultsStore

built = []
def builder_for(it):
    built.append(it.arch_id)
    print("building", it.arch_id, flush=True)
    return build_small

config = dataclasses.replace(FAST, inference_batches=2, inference_duration_s=0)
items = [item(f"a{{i}}") for i in range(1, {count} + 1)]
with ResultsStore({path!r}) as store:
    results = run_batch(items, load_digits_splits(), config, store, build_model_for=builder_for,
                        progress=False)
print("trained", " ".join(result.arch_id for result in results), flush=True)
"""


def finished_rows(path) -> dict:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT * FROM trainings ORDER BY arch_id").fetchall()
    finally:
        conn.close()
    return {row[0]: row for row in rows}


@pytest.mark.slow
def test_batch_killed_then_resumed(tmp_path):
    path = tmp_path / "results.sqlite"
    script = INTERRUPTED_BATCH_SCRIPT.format(tests_dir=str(TESTS_DIR), path=str(path), count=4)
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    # Kill while the third architecture trains, two having been written.
    try:
        for line in process.stdout:
            if line.strip() == "building a3":
                break
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    before = finished_rows(path)

    resumed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    after = finished_rows(path)
    with ResultsStore(path, read_only=True) as store:
        problems = store.integrity_check()

    assert process.returncode == -signal.SIGKILL
    assert sorted(before) == ["a1", "a2"]
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "trained a3 a4" in resumed.stdout
    assert "building a1" not in resumed.stdout
    assert "building a2" not in resumed.stdout
    assert sorted(after) == ["a1", "a2", "a3", "a4"]
    assert after["a1"] == before["a1"]
    assert after["a2"] == before["a2"]
    assert problems == []
