"""The SQLite results store of a run: schema, resume, exports.

One database file (``results.sqlite``) per run directory contains four tables:

* ``run``: key/value metadata of the run, values as JSON (parameters, the measurement
  disclosure, the data set split summary).
* ``architectures``: one row per architecture (phrase, seed, data set, parameter count, FLOPs,
  layer count, paths of the emitted code and picture).
* ``trainings``: one row per trained architecture with its status (ok, failed, diverged),
  metrics, energy reading, inference cost and a copy of the run's measurement disclosure, so
  that every row records how its energy was measured.
* ``epochs``: per-epoch losses, accuracies, duration and energy.

The columns and the schema upgrades are defined in ``cnngen.store_schema``.

The database uses WAL journaling, and each finished training is written in one transaction,
so a crash loses at most the training in progress and a rerun skips what is done. While a
:class:`ResultsStore` is open for writing it holds an exclusive ``fcntl.flock`` on
``results.sqlite.lock``: a second process (or a second writer in the same process) gets a
:class:`~cnngen.errors.StoreError` at once instead of interleaving its rows. The lock file stays
after closing, because deleting it would let two processes lock different files. Readers open
the store with ``read_only=True``, take no lock and can read while a batch runs.

The module leaves training to ``cnngen.training``, joining the stores of several shards to
``cnngen.merge``, and analysis to the predictors and notebooks.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnngen.errors import StoreError
from cnngen.store_files import acquire_lock, write_csv_atomically
from cnngen.store_schema import (  # noqa: F401 (EVALUATED_STATUSES is re-exported)
    ARCHITECTURE_COLUMNS,
    BOOLEAN_COLUMNS,
    CSV_COLUMNS,
    EVALUATED_STATUSES,
    INTEGER_COLUMNS,
    REAL_COLUMNS,
    SCHEMA_VERSION,
    STATUSES,
    TABLES,
    create_schema,
    epoch_row,
    select_trainings,
    table_columns,
    training_row,
    upgrade_schema,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchitectureRecord:
    """One architecture as the store keeps it; None where a value is not known."""

    arch_id: str
    phrase: str
    seed: int | None = None
    dataset: str | None = None
    params: int | None = None
    flops: int | None = None
    num_layers: int | None = None
    code_path: str | None = None
    image_path: str | None = None


class ResultsStore:
    """The results database of one run directory.

    Args:
        path: The database file, normally ``<run directory>/results.sqlite``. Its folder
            must exist.
        read_only: Open without the writer lock and reject writes, for analysis while a
            batch runs.

    Raises:
        StoreError: If the folder or (in read-only mode) the file is missing, the file is not
            a CNNGen results store, or another writer holds the lock.
    """

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._lock_file = None
        self._conn = None
        if not self.path.parent.is_dir():
            raise StoreError(
                f"run directory {str(self.path.parent)!r} does not exist; create it before "
                "opening the results store"
            )
        if read_only and not self.path.exists():
            raise StoreError(f"results store {str(self.path)!r} not found")
        if not read_only:
            self._lock_file = acquire_lock(self.path.with_name(self.path.name + ".lock"))
        try:
            self._conn = self._connect()
            self._disclosure = self.run_metadata().get("disclosure")
        except BaseException:
            self._release_lock()
            raise

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.close()

    def close(self) -> None:
        """Close the database and release the writer lock."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._release_lock()

    def record_run_metadata(self, key: str, value: Any) -> None:
        """Store one JSON-serialisable value of run metadata under key, replacing an older one."""
        self._check_writable()
        try:
            text = json.dumps(value, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise StoreError(
                f"run metadata {key!r} is not JSON-serialisable ({error}); convert it to plain "
                "numbers, strings, lists and dicts"
            ) from None
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO run (key, value) VALUES (?, ?)", (key, text))

    def run_metadata(self) -> dict[str, Any]:
        """Return the run metadata as a dictionary of decoded JSON values."""
        rows = self._conn.execute("SELECT key, value FROM run").fetchall()
        return {key: json.loads(value) for key, value in rows}

    def record_disclosure(self, disclosure) -> None:
        """Store the run's measurement disclosure, whose fields later trainings rows copy.

        Args:
            disclosure: A :class:`cnngen.energy.MeasurementDisclosure` or its ``to_dict()``.
        """
        fields = disclosure if isinstance(disclosure, dict) else disclosure.to_dict()
        self.record_run_metadata("disclosure", fields)
        self._disclosure = fields

    @property
    def disclosure(self) -> dict[str, Any] | None:
        """The stored measurement disclosure, or None before :meth:`record_disclosure`."""
        return self._disclosure

    def add_architecture(self, record) -> None:
        """Insert an architecture, or fill in values missing from its stored row.

        Args:
            record: An :class:`ArchitectureRecord`, or any object with ``arch_id`` and
                ``phrase`` attributes and optionally the other fields of that class. The code
                and image paths may be strings or path objects, stored as strings.

        Raises:
            StoreError: If arch_id or phrase is empty, or the id is stored with another phrase.
        """
        self._check_writable()
        row = {name: getattr(record, name, None) for name, _ in ARCHITECTURE_COLUMNS}
        for name in ("code_path", "image_path"):
            if isinstance(row[name], os.PathLike):
                row[name] = os.fspath(row[name])
        for name in ("arch_id", "phrase"):
            if not isinstance(row[name], str) or not row[name].strip():
                raise StoreError(f"invalid architecture {name} {row[name]!r}: expected text")
        stored = self._conn.execute(
            "SELECT phrase FROM architectures WHERE arch_id = ?", (row["arch_id"],)
        ).fetchone()
        if stored is not None and stored[0] != row["phrase"]:
            raise StoreError(
                f"architecture {row['arch_id']!r} is stored with phrase {stored[0]!r}, not "
                f"{row['phrase']!r}; an id must name one architecture, so use a new id"
            )
        updates = ", ".join(
            f"{name} = COALESCE(excluded.{name}, {name})" for name, _ in ARCHITECTURE_COLUMNS[2:]
        )
        with self._conn:
            self._conn.execute(
                f"INSERT INTO architectures ({', '.join(row)}) VALUES ({_marks(row)}) "
                f"ON CONFLICT (arch_id) DO UPDATE SET {updates}",
                tuple(row.values()),
            )

    def record_training(self, result) -> None:
        """Write a finished training and its epochs in one transaction, replacing older rows.

        Args:
            result: A :class:`cnngen.training.TrainingResult` whose architecture was added.

        Raises:
            StoreError: If the architecture is unknown or the status is not one of STATUSES.
        """
        self._check_writable()
        row = training_row(result, self._disclosure or {})
        if row["status"] not in STATUSES:
            raise StoreError(f"invalid training status {row['status']!r}: expected {STATUSES}")
        known = self._conn.execute(
            "SELECT 1 FROM architectures WHERE arch_id = ?", (row["arch_id"],)
        ).fetchone()
        if known is None:
            raise StoreError(
                f"architecture {row['arch_id']!r} is not in the store; call add_architecture first"
            )
        epochs = [epoch_row(result.arch_id, epoch) for epoch in result.epoch_rows]
        with self._conn:
            self._conn.execute("DELETE FROM epochs WHERE arch_id = ?", (row["arch_id"],))
            self._conn.execute(
                f"INSERT OR REPLACE INTO trainings ({', '.join(row)}) VALUES ({_marks(row)})",
                tuple(row.values()),
            )
            if epochs:
                self._conn.executemany(
                    f"INSERT INTO epochs ({', '.join(epochs[0])}) VALUES ({_marks(epochs[0])})",
                    [tuple(epoch.values()) for epoch in epochs],
                )
            self._conn.execute(
                "UPDATE architectures SET num_layers = COALESCE(?, num_layers), "
                "params = COALESCE(params, ?) WHERE arch_id = ?",
                (result.num_layers, result.params, row["arch_id"]),
            )

    def finished_ids(self, statuses: tuple[str, ...] = STATUSES) -> set[str]:
        """Return the ids of architectures with a stored training of one of the statuses."""
        marks = ", ".join("?" for _ in statuses)
        rows = self._conn.execute(
            f"SELECT arch_id FROM trainings WHERE status IN ({marks})", tuple(statuses)
        )
        return {arch_id for (arch_id,) in rows}

    def trainings_frame(self, statuses: tuple[str, ...] | None = None):
        """Return one row per training, joined with its architecture, in CSV_COLUMNS order.

        Args:
            statuses: Keep only trainings with one of these statuses; None keeps all.

        Raises:
            StoreError: If a status is not one of STATUSES.
        """
        import pandas as pd

        frame = pd.read_sql_query(
            "SELECT * FROM trainings JOIN architectures USING (arch_id) "
            "ORDER BY finished_at, arch_id",
            self._conn,
        )
        # A read-only store of an older schema lacks the newer columns; they read as missing.
        frame = frame.reindex(columns=list(dict.fromkeys([*frame.columns, *CSV_COLUMNS])))
        # Nullable dtypes keep integers integral and booleans boolean next to missing values,
        # and a REAL column with only NULLs still reads as float (NaN) rather than object.
        for name in REAL_COLUMNS:
            frame[name] = frame[name].astype("float64")
        for name in BOOLEAN_COLUMNS:
            frame[name] = frame[name].astype("boolean")
        for name in INTEGER_COLUMNS:
            frame[name] = frame[name].astype("Int64")
        frame = frame[CSV_COLUMNS]
        if statuses is not None:
            frame, _ = select_trainings(frame, statuses)
        return frame

    def status_counts(self) -> dict[str, int]:
        """Return the number of stored trainings per status, zero included, in STATUSES order."""
        rows = dict(self._conn.execute("SELECT status, count(*) FROM trainings GROUP BY status"))
        return {status: int(rows.get(status, 0)) for status in STATUSES}

    def read_rows(self, table: str) -> list[dict[str, Any]]:
        """Return every row of a table as a dictionary, in rowid order (run values as JSON text).

        Raises:
            StoreError: If the table is not one of the store's tables.
        """
        _check_table(table)
        cursor = self._conn.execute(f"SELECT * FROM {table} ORDER BY rowid")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def insert_rows(self, rows_by_table: dict[str, list[dict[str, Any]]]) -> None:
        """Insert raw rows into an empty store in one transaction, as a merge does.

        The rows are written as given, without the checks of :meth:`record_training`; columns
        this schema lacks are dropped. Either every row is written or none.

        Raises:
            StoreError: If the store already has rows, a table is unknown, or SQLite rejects a
                row (for example a training whose architecture is missing).
        """
        self._check_writable()
        for table in rows_by_table:
            _check_table(table)
        if any(self._conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() for table in TABLES):
            raise StoreError(
                f"results store {str(self.path)!r} is not empty; merge into a new file"
            )
        try:
            with self._conn:
                for table in ("run", "architectures", "trainings", "epochs"):
                    self._insert_raw(table, rows_by_table.get(table, []))
        except sqlite3.DatabaseError as error:
            raise StoreError(f"could not write into {str(self.path)!r}: {error}") from None

    def _insert_raw(self, table: str, rows: list[dict[str, Any]]) -> None:
        columns = table_columns(self._conn, table)
        for row in rows:
            kept = {name: value for name, value in row.items() if name in columns}
            self._conn.execute(
                f"INSERT INTO {table} ({', '.join(kept)}) VALUES ({_marks(kept)})",
                tuple(kept.values()),
            )

    def epochs_frame(self):
        """Return the per-epoch rows of every training, ordered by architecture and epoch."""
        import pandas as pd

        return pd.read_sql_query("SELECT * FROM epochs ORDER BY arch_id, epoch", self._conn)

    def export_csv(self, path: str | os.PathLike) -> Path:
        """Write :meth:`trainings_frame` as CSV with a header, replacing path atomically.

        The CSV goes to a temporary file in the same folder, which is renamed over path only
        when complete, so a reader never sees a half-written file.

        Returns:
            The path written.

        Raises:
            StoreError: If the file cannot be written.
        """
        target = Path(path)
        frame = self.trainings_frame()
        write_csv_atomically(frame, target)
        logger.info("exported %d trainings to %s", len(frame), target)
        return target

    def integrity_check(self) -> list[str]:
        """Run SQLite's integrity and foreign-key checks; return the problems, empty if none."""
        problems = [row[0] for row in self._conn.execute("PRAGMA integrity_check")]
        problems = [] if problems == ["ok"] else problems
        for table, rowid, parent, _ in self._conn.execute("PRAGMA foreign_key_check"):
            problems.append(f"row {rowid} of {table} refers to a missing row of {parent}")
        return problems

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.read_only:
                conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            else:
                conn = sqlite3.connect(self.path)
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._check_schema(conn)
        except sqlite3.DatabaseError as error:
            raise StoreError(
                f"could not open results store {str(self.path)!r}: {error}; check that the "
                "path names a results.sqlite written by CNNGen"
            ) from None
        return conn

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if version == 0 and tables == 0 and not self.read_only:
            create_schema(conn)
        elif 0 < version < SCHEMA_VERSION and not self.read_only:
            logger.info(
                "upgrading %s from schema version %d to %d", self.path, version, SCHEMA_VERSION
            )
            upgrade_schema(conn)
        elif version == 0:
            raise StoreError(f"{str(self.path)!r} is an SQLite file but not a CNNGen results store")
        elif version > SCHEMA_VERSION:
            raise StoreError(
                f"results store {str(self.path)!r} has schema version {version}, newer than "
                f"{SCHEMA_VERSION}; open it with the CNNGen version that wrote it"
            )

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(
                f"results store {str(self.path)!r} is open read-only; open it without "
                "read_only=True to write"
            )

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _marks(row: dict) -> str:
    return ", ".join("?" for _ in row)


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise StoreError(f"unknown table {table!r}: expected one of {', '.join(TABLES)}")
