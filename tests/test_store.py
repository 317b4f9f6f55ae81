"""Tests of cnngen.store on real SQLite files in tmp_path."""

import csv
import os
import sqlite3
import subprocess
import sys

import pandas as pd
import pytest
from fixtures_store import DISCLOSURE, add_trained, make_architecture, make_result

from cnngen.energy import EnergyReading
from cnngen.errors import StoreError
from cnngen.store import (
    CSV_COLUMNS,
    EVALUATED_STATUSES,
    SCHEMA_VERSION,
    ArchitectureRecord,
    ResultsStore,
    select_trainings,
)
from cnngen.store_schema import TABLES
from cnngen.training import EpochRecord, TrainingResult

REQUIRED_CSV_PREFIX = [
    "arch_id", "phrase", "dataset", "epochs", "status", "test_accuracy", "train_accuracy",
    "training_time_s", "params", "flops", "num_layers", "energy_kwh", "emissions_kg",
    "emissions_rate_kg_per_s",
]  # fmt: skip


@pytest.fixture
def store(tmp_path):
    with ResultsStore(tmp_path / "results.sqlite") as opened:
        yield opened


def test_round_trip(store):
    store.record_disclosure(DISCLOSURE)
    add_trained(store, "a1")
    frame = store.trainings_frame()
    row = frame.iloc[0]

    assert list(frame.columns) == CSV_COLUMNS
    assert len(frame) == 1
    assert row["arch_id"] == "a1"
    assert row["status"] == "ok"
    assert row["test_accuracy"] == pytest.approx(0.7)
    assert row["energy_kwh"] == pytest.approx(2e-5)
    assert row["params"] == 2970
    assert row["num_layers"] == 4
    assert row["flops"] == 12345
    assert row["seed"] == 7
    assert bool(row["energy_is_estimate"]) is True
    assert row["cpu_energy_source"] == "TDP estimate (load-scaled)"
    assert row["idle_power_w"] == pytest.approx(12.5)


def test_epoch_rows_round_trip(store):
    add_trained(store, "a1")
    epochs = store.epochs_frame()

    assert list(epochs["epoch"]) == [1, 2]
    assert list(epochs["energy_kwh"]) == pytest.approx([1.2e-5, 0.7e-5])
    assert list(epochs["val_accuracy"]) == pytest.approx([0.55, 0.68])


def test_rerecord_replaces_epochs(store):
    add_trained(store, "a1")
    store.record_training(make_result("a1", epoch_rows=[EpochRecord(1, 1, 0.5, 1, 0.5, 1, None)]))

    assert len(store.trainings_frame()) == 1
    assert list(store.epochs_frame()["epoch"]) == [1]


def test_missing_energy_is_null(store):
    reading = EnergyReading(duration_s=2.0, error="CodeCarbon failed to start: RuntimeError: x")
    add_trained(store, "a1", energy=reading)
    row = store.trainings_frame().iloc[0]

    assert pd.isna(row["energy_kwh"])
    assert pd.isna(row["emissions_kg"])
    assert pd.isna(row["cpu_energy_kwh"])
    assert row["energy_error"] == "CodeCarbon failed to start: RuntimeError: x"


def test_failed_training_round_trip(store):
    store.add_architecture(make_architecture("broken"))
    failed = TrainingResult(arch_id="broken", status="failed", epochs=2, error="ValueError: bad")
    store.record_training(failed)
    row = store.trainings_frame().iloc[0]

    assert row["status"] == "failed"
    assert row["error"] == "ValueError: bad"
    assert pd.isna(row["test_accuracy"])
    assert pd.isna(row["energy_kwh"])


def test_finished_ids_resume(tmp_path):
    path = tmp_path / "results.sqlite"
    with ResultsStore(path) as store:
        add_trained(store, "a1")
        add_trained(store, "a2", status="failed")
        add_trained(store, "a3", status="diverged")
        store.add_architecture(make_architecture("a4"))
    with ResultsStore(path) as reopened:
        assert reopened.finished_ids() == {"a1", "a2", "a3"}
        assert reopened.finished_ids(("ok", "diverged")) == {"a1", "a3"}


def test_disclosure_survives_reopen(tmp_path):
    path = tmp_path / "results.sqlite"
    with ResultsStore(path) as store:
        store.record_disclosure(DISCLOSURE)
    with ResultsStore(path) as reopened:
        add_trained(reopened, "a1")
        row = reopened.trainings_frame().iloc[0]

        assert reopened.disclosure == DISCLOSURE
        assert row["codecarbon_version"] == "3.3.2"
        assert row["python_version"] == "3.11.7"
        assert row["keras_version"] == "3.15.1"


def test_run_metadata_round_trip(store):
    store.record_run_metadata("parameters", {"epochs": 2, "dataset": "digits"})
    store.record_run_metadata("parameters", {"epochs": 3})

    assert store.run_metadata() == {"parameters": {"epochs": 3}}


@pytest.mark.parametrize("value", [object(), {"x": float("nan")}, {1, 2}])
def test_run_metadata_rejects_non_json(store, value):
    with pytest.raises(StoreError, match="run metadata 'bad' is not JSON-serialisable"):
        store.record_run_metadata("bad", value)


def test_add_architecture_fills_missing_values(store):
    store.add_architecture(ArchitectureRecord("a1", "input conv dense output"))
    store.add_architecture(ArchitectureRecord("a1", "input conv dense output", flops=99))
    store.record_training(make_result("a1"))
    row = store.trainings_frame().iloc[0]

    assert row["flops"] == 99
    assert row["params"] == 2970


def test_add_architecture_accepts_paths(store, tmp_path):
    store.add_architecture(
        make_architecture("a1", code_path=tmp_path / "a1.py", image_path=tmp_path / "a1.png")
    )
    store.record_training(make_result("a1"))
    row = store.trainings_frame().iloc[0]

    assert row["code_path"] == str(tmp_path / "a1.py")
    assert row["image_path"] == str(tmp_path / "a1.png")


def test_add_architecture_phrase_conflict(store):
    store.add_architecture(ArchitectureRecord("a1", "input conv dense output"))
    with pytest.raises(StoreError, match="'a1' is stored with phrase 'input conv dense output'"):
        store.add_architecture(ArchitectureRecord("a1", "input convbn dense output"))


@pytest.mark.parametrize(
    ("arch_id", "phrase", "message"),
    [
        ("", "input conv dense output", "invalid architecture arch_id ''"),
        (None, "input conv dense output", "invalid architecture arch_id None"),
        ("a1", "  ", "invalid architecture phrase '  '"),
    ],
)
def test_add_architecture_invalid(store, arch_id, phrase, message):
    with pytest.raises(StoreError, match=message):
        store.add_architecture(ArchitectureRecord(arch_id, phrase))


def test_record_training_unknown_architecture(store):
    with pytest.raises(StoreError, match="'ghost' is not in the store; call add_architecture"):
        store.record_training(make_result("ghost"))


def test_record_training_invalid_status(store):
    store.add_architecture(make_architecture("a1"))
    with pytest.raises(StoreError, match="invalid training status 'done'"):
        store.record_training(make_result("a1", status="done"))


def test_wal_and_schema_version(store):
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


def test_integrity_check_clean(store):
    add_trained(store, "a1")

    assert store.integrity_check() == []


def test_newer_schema_rejected(tmp_path):
    path = tmp_path / "results.sqlite"
    ResultsStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        ResultsStore(path)


def test_foreign_sqlite_rejected(tmp_path):
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()

    with pytest.raises(StoreError, match="is an SQLite file but not a CNNGen results store"):
        ResultsStore(path)


def test_garbage_file_rejected(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"this is not a database, just text" * 100)

    with pytest.raises(StoreError, match="could not open results store"):
        ResultsStore(path)


def test_missing_run_directory(tmp_path):
    with pytest.raises(StoreError, match="run directory .* does not exist"):
        ResultsStore(tmp_path / "absent" / "results.sqlite")


def test_export_csv_header(store, tmp_path):
    store.record_disclosure(DISCLOSURE)
    add_trained(store, "a1")
    add_trained(store, "a2", status="diverged")
    path = store.export_csv(tmp_path / "results.csv")

    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == CSV_COLUMNS
    assert rows[0][: len(REQUIRED_CSV_PREFIX)] == REQUIRED_CSV_PREFIX
    assert [row[0] for row in rows[1:]] == ["a1", "a2"]
    assert rows[1][CSV_COLUMNS.index("params")] == "2970"


def test_export_csv_atomic(store, tmp_path, monkeypatch):
    add_trained(store, "a1")
    target = tmp_path / "results.csv"
    target.write_text("previous export\n")

    def fail_midway(frame, stream, **kwargs):
        stream.write("arch_id,phr")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_midway)
    with pytest.raises(StoreError, match="could not write .*results.csv.*disk full"):
        store.export_csv(target)

    assert target.read_text() == "previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if "csv" in p.name) == ["results.csv"]


def test_export_csv_permissions_follow_umask(store, tmp_path):
    add_trained(store, "a1")
    previous = os.umask(0o022)
    try:
        path = store.export_csv(tmp_path / "results.csv")
    finally:
        os.umask(previous)

    assert path.stat().st_mode & 0o777 == 0o644


def test_second_writer_same_process(store):
    with pytest.raises(StoreError, match=f"in use by another writer \\(process {os.getpid()}\\)"):
        ResultsStore(store.path)


def test_second_writer_other_process(tmp_path):
    path = tmp_path / "results.sqlite"
    script = (
        "import sys\n"
        "from cnngen.errors import StoreError\n"
        "from cnngen.store import ResultsStore\n"
        "try:\n"
        f"    ResultsStore({str(path)!r}).close()\n"
        "except StoreError as error:\n"
        "    print(error)\n"
        "    sys.exit(3)\n"
    )
    with ResultsStore(path):
        blocked = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    free = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)

    assert blocked.returncode == 3
    assert f"in use by another writer (process {os.getpid()})" in blocked.stdout
    assert free.returncode == 0, free.stderr


def test_read_only_while_writer_holds_lock(store):
    add_trained(store, "a1")
    with ResultsStore(store.path, read_only=True) as reader:
        assert reader.finished_ids() == {"a1"}
        with pytest.raises(StoreError, match="is open read-only"):
            reader.add_architecture(make_architecture("a2"))


def test_read_only_missing_file(tmp_path):
    with pytest.raises(StoreError, match="results store .* not found"):
        ResultsStore(tmp_path / "results.sqlite", read_only=True)


def test_inference_and_device_round_trip(store):
    store.record_disclosure(dict(DISCLOSURE, gpu_ids=[0], gpu_driver_version="550.54"))
    add_trained(store, "a1")
    row = store.trainings_frame().iloc[0]

    assert row["inference_latency_s"] == pytest.approx(0.004)
    assert row["inference_latency_per_image_s"] == pytest.approx(0.004 / 64)
    assert row["inference_energy_kwh"] == pytest.approx(3e-9)
    assert row["inference_batch_size"] == 64
    assert row["inference_batches"] == 30
    assert pd.isna(row["inference_error"])
    assert row["training_seed"] == 7
    assert row["device"] == "CPU"
    assert bool(row["mixed_precision"]) is False
    assert pd.isna(row["gpu_energy_flag"])
    assert row["gpu_ids"] == "[0]"
    assert row["gpu_driver_version"] == "550.54"


def test_unmeasured_inference_is_null(store):
    add_trained(store, "a1", inference=None)
    add_trained(store, "a2", gpu_energy_flag="zero", device="GPU")
    frame = store.trainings_frame().set_index("arch_id")

    assert pd.isna(frame.loc["a1", "inference_latency_s"])
    assert pd.isna(frame.loc["a1", "inference_energy_kwh"])
    assert frame.loc["a2", "gpu_energy_flag"] == "zero"


def test_status_counts_and_selection(store):
    add_trained(store, "a1")
    add_trained(store, "a2", status="diverged")
    add_trained(store, "a3", status="failed")
    add_trained(store, "a4")
    kept, counts = select_trainings(store.trainings_frame())

    assert store.status_counts() == {"ok": 2, "failed": 1, "diverged": 1}
    assert counts == {"ok": 2, "failed": 1, "diverged": 1}
    assert list(kept["arch_id"]) == ["a1", "a4"]
    assert list(store.trainings_frame(statuses=("diverged",))["arch_id"]) == ["a2"]
    assert EVALUATED_STATUSES == ("ok",)


def test_select_trainings_invalid_status(store):
    with pytest.raises(StoreError, match=r"invalid statuses \['done'\]"):
        store.trainings_frame(statuses=("ok", "done"))


def test_insert_rows_needs_empty_store(store):
    add_trained(store, "a1")
    rows = {table: store.read_rows(table) for table in ("architectures", "trainings")}

    with pytest.raises(StoreError, match="is not empty; merge into a new file"):
        store.insert_rows(rows)


def test_read_rows_unknown_table(store):
    with pytest.raises(StoreError, match="unknown table 'models'"):
        store.read_rows("models")


def create_version_1_store(path) -> None:
    """Write a store with the columns of schema version 1 and one training."""
    new_columns = {
        name
        for name, _ in TABLES["trainings"]
        if name.startswith("inference_")
        or name
        in (
            "training_seed", "device", "mixed_precision", "gpu_energy_flag", "gpu_ids",
            "gpu_driver_version", "training_gpu_name", "python_version", "tensorflow_version",
            "keras_version", "cuda_version", "cudnn_version",
        )
    }  # fmt: skip
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE run (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        columns = ", ".join(f"{name} {kind}" for name, kind in TABLES["architectures"])
        conn.execute(f"CREATE TABLE architectures ({columns})")
        kept = [(name, kind) for name, kind in TABLES["trainings"] if name not in new_columns]
        conn.execute(f"CREATE TABLE trainings ({', '.join(f'{n} {k}' for n, k in kept)})")
        columns = ", ".join(f"{name} {kind}" for name, kind in TABLES["epochs"])
        conn.execute(f"CREATE TABLE epochs ({columns}, PRIMARY KEY (arch_id, epoch))")
        conn.execute("INSERT INTO architectures (arch_id, phrase) VALUES ('old', 'input output')")
        conn.execute(
            "INSERT INTO trainings (arch_id, status, energy_kwh) VALUES ('old', 'ok', 1e-5)"
        )
        conn.execute("PRAGMA user_version = 1")
    conn.close()


def test_version_1_store_read_only(tmp_path):
    path = tmp_path / "results.sqlite"
    create_version_1_store(path)
    with ResultsStore(path, read_only=True) as store:
        frame = store.trainings_frame()

    assert list(frame.columns) == CSV_COLUMNS
    assert frame.loc[0, "energy_kwh"] == pytest.approx(1e-5)
    assert pd.isna(frame.loc[0, "inference_latency_s"])


def test_version_1_store_upgraded_by_writer(tmp_path):
    path = tmp_path / "results.sqlite"
    create_version_1_store(path)
    with ResultsStore(path) as store:
        add_trained(store, "a1")
        frame = store.trainings_frame().set_index("arch_id")
        problems = store.integrity_check()
    conn = sqlite3.connect(path)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()

    assert version == SCHEMA_VERSION
    assert problems == []
    assert pd.isna(frame.loc["old", "inference_latency_s"])
    assert frame.loc["a1", "inference_latency_s"] == pytest.approx(0.004)
