"""The tables and columns of a results store, the CSV column order, and schema upgrades.

This module owns the SQLite schema that ``cnngen.store`` reads and writes. It defines the
column lists of each table, how a training result maps to a row, and which columns are
integers, booleans or reals in a DataFrame. It also sets the order of the CSV export, the
statuses and which of them analyses keep, and creates and upgrades databases. It leaves
opening, locking, reading and writing to ``cnngen.store``.

Schema versions (``PRAGMA user_version``):

1. The first schema.
2. Adds the inference cost, the training seed, the device and mixed precision, the GPU energy
   flag, and the GPU ids, driver and training GPU name of the disclosure to ``trainings``.
   A writer upgrades a version 1 file by adding these columns, which are NULL in older rows.
3. Adds the software versions of the disclosure (Python, TensorFlow, Keras, CUDA, cuDNN) to
   ``trainings``, upgraded in the same way.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from cnngen.errors import StoreError

SCHEMA_VERSION = 3
STATUSES = ("ok", "failed", "diverged")

# Statuses that analyses and predictors use unless asked otherwise. A failed training has no
# metrics, and the loss or accuracy of a diverged one does not reflect its architecture.
EVALUATED_STATUSES = ("ok",)

ARCHITECTURE_COLUMNS = [
    ("arch_id", "TEXT PRIMARY KEY"),
    ("phrase", "TEXT NOT NULL"),
    ("seed", "INTEGER"),
    ("dataset", "TEXT"),
    ("params", "INTEGER"),
    ("flops", "INTEGER"),
    ("num_layers", "INTEGER"),
    ("code_path", "TEXT"),
    ("image_path", "TEXT"),
]
RESULT_COLUMNS = [
    ("status", "TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'diverged'))"),
    ("error", "TEXT"),
    ("epochs", "INTEGER"),
    ("epochs_run", "INTEGER"),
    ("test_accuracy", "REAL"),
    ("train_accuracy", "REAL"),
    ("val_accuracy", "REAL"),
    ("test_loss", "REAL"),
    ("train_loss", "REAL"),
    ("val_loss", "REAL"),
    ("training_time_s", "REAL"),
    ("started_at", "TEXT"),
    ("finished_at", "TEXT"),
    ("training_seed", "INTEGER"),
    ("device", "TEXT"),
    ("mixed_precision", "INTEGER"),
    ("gpu_energy_flag", "TEXT"),
]
ENERGY_COLUMNS = [
    ("energy_kwh", "REAL"),
    ("cpu_energy_kwh", "REAL"),
    ("gpu_energy_kwh", "REAL"),
    ("ram_energy_kwh", "REAL"),
    ("emissions_kg", "REAL"),
    ("emissions_rate_kg_per_s", "REAL"),
    ("cpu_power_w", "REAL"),
    ("gpu_power_w", "REAL"),
    ("ram_power_w", "REAL"),
]
# Column of trainings, attribute of cnngen.inference.InferenceCost.
INFERENCE_COLUMNS = [
    ("inference_batch_size", "INTEGER", "batch_size"),
    ("inference_batches", "INTEGER", "num_batches"),
    ("inference_latency_s", "REAL", "latency_s"),
    ("inference_latency_per_image_s", "REAL", "latency_per_image_s"),
    ("inference_energy_kwh", "REAL", "energy_kwh"),
    ("inference_energy_per_image_kwh", "REAL", "energy_per_image_kwh"),
    ("inference_duration_s", "REAL", "duration_s"),
    ("inference_error", "TEXT", "error"),
]
DISCLOSURE_COLUMNS = [
    ("energy_is_estimate", "INTEGER"),
    ("cpu_energy_source", "TEXT"),
    ("cpu_energy_is_estimate", "INTEGER"),
    ("cpu_tdp_w", "REAL"),
    ("gpu_energy_source", "TEXT"),
    ("ram_energy_method", "TEXT"),
    ("codecarbon_version", "TEXT"),
    ("measure_power_secs", "REAL"),
    ("tracking_mode", "TEXT"),
    ("country_iso_code", "TEXT"),
    ("carbon_intensity_g_per_kwh", "REAL"),
    ("idle_power_w", "REAL"),
    ("cpu_model", "TEXT"),
    ("cpu_count", "INTEGER"),
    ("gpu_model", "TEXT"),
    ("gpu_count", "INTEGER"),
    ("gpu_ids", "TEXT"),
    ("gpu_driver_version", "TEXT"),
    ("training_gpu_name", "TEXT"),
    ("python_version", "TEXT"),
    ("tensorflow_version", "TEXT"),
    ("keras_version", "TEXT"),
    ("cuda_version", "TEXT"),
    ("cudnn_version", "TEXT"),
]
TRAINING_COLUMNS = (
    [("arch_id", "TEXT PRIMARY KEY REFERENCES architectures (arch_id)")]
    + RESULT_COLUMNS
    + ENERGY_COLUMNS
    + [("energy_error", "TEXT")]
    + [(name, kind) for name, kind, _ in INFERENCE_COLUMNS]
    + DISCLOSURE_COLUMNS
)
EPOCH_COLUMNS = [
    ("arch_id", "TEXT NOT NULL REFERENCES trainings (arch_id)"),
    ("epoch", "INTEGER NOT NULL"),
    ("train_loss", "REAL"),
    ("train_accuracy", "REAL"),
    ("val_loss", "REAL"),
    ("val_accuracy", "REAL"),
    ("duration_s", "REAL"),
    ("energy_kwh", "REAL"),
]
TABLES = {
    "run": [("key", "TEXT PRIMARY KEY"), ("value", "TEXT NOT NULL")],
    "architectures": ARCHITECTURE_COLUMNS,
    "trainings": TRAINING_COLUMNS,
    "epochs": EPOCH_COLUMNS,
}
REAL_COLUMNS = [name for name, kind in TRAINING_COLUMNS if kind == "REAL"]
BOOLEAN_COLUMNS = ("energy_is_estimate", "cpu_energy_is_estimate", "mixed_precision")
INTEGER_COLUMNS = (
    "epochs", "epochs_run", "seed", "params", "flops", "num_layers", "cpu_count", "gpu_count",
    "training_seed", "inference_batch_size", "inference_batches",
)  # fmt: skip

# Column order of trainings_frame() and export_csv(): the columns most analyses need first,
# then the seeds and losses, the energy parts, the inference cost, the disclosure and the
# error texts.
CSV_COLUMNS = [
    "arch_id", "phrase", "dataset", "epochs", "status", "test_accuracy", "train_accuracy",
    "training_time_s", "params", "flops", "num_layers", "energy_kwh", "emissions_kg",
    "emissions_rate_kg_per_s", "energy_is_estimate", "cpu_energy_source",
    "seed", "training_seed", "epochs_run", "val_accuracy", "test_loss", "train_loss", "val_loss",
    "device", "mixed_precision",
    "cpu_energy_kwh", "gpu_energy_kwh", "ram_energy_kwh", "cpu_power_w", "gpu_power_w",
    "ram_power_w", "gpu_energy_flag",
    "inference_latency_s", "inference_latency_per_image_s", "inference_energy_kwh",
    "inference_energy_per_image_kwh", "inference_batch_size", "inference_batches",
    "inference_duration_s",
    "cpu_energy_is_estimate", "cpu_tdp_w", "gpu_energy_source",
    "ram_energy_method", "codecarbon_version", "measure_power_secs", "tracking_mode",
    "country_iso_code", "carbon_intensity_g_per_kwh", "idle_power_w", "cpu_model", "cpu_count",
    "gpu_model", "gpu_count", "gpu_ids", "gpu_driver_version", "training_gpu_name",
    "python_version", "tensorflow_version", "keras_version", "cuda_version", "cudnn_version",
    "energy_error", "inference_error", "error", "started_at", "finished_at",
    "code_path", "image_path",
]  # fmt: skip


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables of an empty database and set its schema version."""
    tables = dict(TABLES, epochs=EPOCH_COLUMNS + [("PRIMARY KEY", "(arch_id, epoch)")])
    with conn:
        for table, columns in tables.items():
            body = ", ".join(f"{name} {kind}" for name, kind in columns)
            conn.execute(f"CREATE TABLE {table} ({body})")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def upgrade_schema(conn: sqlite3.Connection) -> None:
    """Add the columns of the current schema that an older database lacks, in one transaction.

    Every column added since version 1 is nullable, so ``ALTER TABLE ... ADD COLUMN`` suffices
    and older rows read NULL in the new columns.
    """
    with conn:
        for table, columns in TABLES.items():
            present = table_columns(conn, table)
            for name, kind in columns:
                if name not in present:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """Return the column names of a table, in order."""
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def training_row(result, disclosure: dict[str, Any]) -> dict[str, Any]:
    """Return the trainings row of a TrainingResult, with the run's disclosure copied in."""
    row = {"arch_id": result.arch_id}
    row.update({name: getattr(result, name) for name, _ in RESULT_COLUMNS})
    energy = result.energy
    row.update({name: getattr(energy, name, None) for name, _ in ENERGY_COLUMNS})
    row["energy_error"] = getattr(energy, "error", None)
    inference = getattr(result, "inference", None)
    row.update({name: getattr(inference, field, None) for name, _, field in INFERENCE_COLUMNS})
    row.update({name: disclosure.get(name) for name, _ in DISCLOSURE_COLUMNS})
    if row["gpu_ids"] is not None:
        row["gpu_ids"] = json.dumps(row["gpu_ids"])
    return row


def epoch_row(arch_id: str, epoch) -> dict[str, Any]:
    """Return the epochs row of an EpochRecord."""
    row = {"arch_id": arch_id}
    row.update({name: getattr(epoch, name) for name, _ in EPOCH_COLUMNS[1:]})
    return row


def select_trainings(frame, statuses: tuple[str, ...] = EVALUATED_STATUSES):
    """Keep the trainings with one of the statuses, and count every status.

    Analyses call it to leave out failed and diverged trainings by default while reporting
    how many there were.

    Args:
        frame: A table with a ``status`` column, such as :meth:`ResultsStore.trainings_frame`.
        statuses: Statuses to keep; the default keeps ``ok`` only.

    Returns:
        ``(kept, counts)``: the kept rows with a fresh index, and the number of rows of each
        status in STATUSES before filtering.

    Raises:
        StoreError: If a status is not one of STATUSES.
    """
    statuses = tuple(statuses)
    unknown = [status for status in statuses if status not in STATUSES]
    if unknown:
        raise StoreError(f"invalid statuses {unknown}: expected some of {STATUSES}")
    counts = {status: int((frame["status"] == status).sum()) for status in STATUSES}
    kept = frame[frame["status"].isin(statuses)].reset_index(drop=True)
    return kept, counts
