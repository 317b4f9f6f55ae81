"""Joining the results stores of a run's shards, or of any runs with one protocol, into one.

This module owns :func:`merge_stores` and its rules. It leaves reading and writing rows to
``cnngen.store`` and the shard split to ``cnngen.batch``.

Rules, checked for every input before the output is created:

* Architectures with the same ``arch_id`` must agree on every value both inputs know; the
  merged row keeps every known value.
* A training (and its epochs) may appear in several inputs only with identical values, as in a
  store merged earlier and one of its shards. Two different trainings of one ``arch_id``, such
  as a failed one in one shard and a finished one in another, are a conflict: merge only the
  stores whose training should be kept. One path given twice is rejected.
* Run metadata must agree between the inputs that have it. The training configuration is
  compared without ``verbose`` and ``idle_duration_s``, as when a run is resumed. The
  measurement disclosure and idle power describe each input's machine, so the merged store
  keeps the first input's at the top level and every input's under ``merged_from``, beside
  its path and shard. Each trainings row keeps the disclosure of the machine that trained it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from cnngen.batch import RESUMABLE_FIELDS, describe_changes
from cnngen.errors import StoreError
from cnngen.store import ResultsStore

logger = logging.getLogger(__name__)

# Run metadata that describes an input's machine or shard rather than the run's protocol.
_PER_INPUT_KEYS = ("disclosure", "idle_power_w", "shard", "merged_from")


def merge_stores(output_path: str | os.PathLike, inputs: list[str | os.PathLike] | tuple) -> Path:
    """Merge results stores into a new store: architectures, trainings, epochs, run metadata.

    Args:
        output_path: The new database file. It must not exist, and its folder must.
        inputs: One or more results stores, opened read-only.

    Returns:
        The output path.

    Raises:
        StoreError: If no input is given, an input is missing, repeated or not a results store,
            the output exists or is an input, or the inputs conflict (see the module
            docstring). A conflict's message names the arch_id or metadata key and both inputs.
    """
    output = Path(output_path)
    paths = _check_paths(output, inputs)
    contents = [_read_store(path) for path in paths]

    # Resolve everything before the output exists, so a conflict leaves no file behind.
    merged = {
        "run": _merge_metadata(contents),
        "architectures": _merge_architectures(contents),
    }
    merged["trainings"], merged["epochs"] = _merge_trainings(contents)

    with ResultsStore(output) as store:
        store.insert_rows(merged)
        problems = store.integrity_check()
    if problems:
        raise StoreError(f"merged store {str(output)!r} failed its integrity check: {problems}")
    logger.info(
        "merged %d stores into %s: %d architectures, %d trainings",
        len(paths),
        output,
        len(merged["architectures"]),
        len(merged["trainings"]),
    )
    return output


def _check_paths(output: Path, inputs) -> list[Path]:
    paths = [Path(path) for path in inputs]
    if not paths:
        raise StoreError("no results stores to merge; give at least one input path")
    resolved = [path.resolve() for path in paths]
    repeated = sorted({str(path) for path in paths if resolved.count(path.resolve()) > 1})
    if repeated:
        raise StoreError(f"results stores given more than once: {repeated}; give each once")
    if output.resolve() in resolved:
        raise StoreError(f"merge output {str(output)!r} is also an input; choose a new path")
    if output.exists():
        raise StoreError(
            f"merge output {str(output)!r} already exists; remove it or choose another path"
        )
    for path in paths:
        if not path.is_file():
            raise StoreError(f"results store {str(path)!r} not found")
    return paths


def _read_store(path: Path) -> dict[str, Any]:
    with ResultsStore(path, read_only=True) as store:
        content = {table: store.read_rows(table) for table in ("architectures", "trainings")}
        content["epochs"] = store.read_rows("epochs")
        content["run"] = store.run_metadata()
    content["path"] = str(path)
    return content


def _merge_metadata(contents: list[dict]) -> list[dict[str, str]]:
    """Return the merged run table rows, raising StoreError on a protocol conflict."""
    merged: dict[str, Any] = {}
    source: dict[str, str] = {}
    for content in contents:
        for key, value in content["run"].items():
            if key in ("shard", "merged_from"):
                continue
            if key not in merged:
                merged[key], source[key] = value, content["path"]
                continue
            if key in _PER_INPUT_KEYS:
                continue
            ignored = RESUMABLE_FIELDS if key == "training_config" else ()
            labels = (f"in {source[key]!r}", f"in {content['path']!r}")
            changes = describe_changes(key, merged[key], value, labels, ignored)
            if changes:
                raise StoreError(
                    f"run metadata {key!r} differs between the inputs ({'; '.join(changes)}); "
                    "merge only stores made with one protocol"
                )
    merged["merged_from"] = [_input_record(content) for content in contents]
    return [
        {"key": key, "value": json.dumps(value, sort_keys=True, allow_nan=False)}
        for key, value in merged.items()
    ]


def _input_record(content: dict) -> dict[str, Any]:
    run = content["run"]
    record = {"path": content["path"]}
    record.update({key: run.get(key) for key in ("shard", "disclosure", "idle_power_w")})
    if "merged_from" in run:
        record["merged_from"] = run["merged_from"]
    return record


def _merge_architectures(contents: list[dict]) -> list[dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    source: dict[str, str] = {}
    for content in contents:
        for row in content["architectures"]:
            arch_id = row["arch_id"]
            if arch_id not in merged:
                merged[arch_id], source[arch_id] = dict(row), content["path"]
                continue
            kept = merged[arch_id]
            for name, value in row.items():
                if value is None:
                    continue
                if kept.get(name) is None:
                    kept[name] = value
                elif kept[name] != value:
                    raise StoreError(
                        f"architecture {arch_id!r} has {name} {kept[name]!r} in "
                        f"{source[arch_id]!r} but {value!r} in {content['path']!r}; an id "
                        "must name one architecture, so these stores cannot be merged"
                    )
    return list(merged.values())


def _merge_trainings(contents: list[dict]) -> tuple[list[dict], list[dict]]:
    trainings: dict[str, dict[str, Any]] = {}
    source: dict[str, str] = {}
    epochs: list[dict] = []
    for content in contents:
        epochs_by_id: dict[str, list[dict]] = {}
        for row in content["epochs"]:
            epochs_by_id.setdefault(row["arch_id"], []).append(row)
        for row in content["trainings"]:
            arch_id = row["arch_id"]
            if arch_id in trainings:
                _check_same_training(trainings[arch_id], row, source[arch_id], content["path"])
                continue
            trainings[arch_id], source[arch_id] = row, content["path"]
            epochs.extend(epochs_by_id.get(arch_id, []))
    return list(trainings.values()), epochs


def _check_same_training(kept: dict, row: dict, kept_path: str, path: str) -> None:
    # Inputs of different schema versions are compared on the columns both have.
    differing = [name for name in kept.keys() & row.keys() if kept[name] != row[name]]
    if differing:
        name = "status" if "status" in differing else sorted(differing)[0]
        raise StoreError(
            f"architecture {kept['arch_id']!r} has two different trainings: {name} "
            f"{kept[name]!r} in {kept_path!r} but {row[name]!r} in {path!r}; merge only the "
            "store whose training you want to keep, or train it again in one store"
        )
