"""The resumable batch loop: train many architectures, each recorded as soon as it ends.

This module owns :func:`run_batch`, which skips what a results store has finished, records the
run's configuration and measurement disclosure once, trains the rest one by one, and frees
Keras's state between them. It also owns shards: :func:`run_batch` with ``shard=(index,
count)`` trains one part of the architectures, so that several processes or machines can share
a run, each writing its own store (:func:`shard_store_name`), which ``cnngen.merge`` joins
afterwards. Training one architecture is left to ``cnngen.training``, the store to
``cnngen.store``.

A shard is chosen by position: with ``count`` shards numbered 1 to ``count``, shard ``index``
trains the items at positions ``index - 1``, ``index - 1 + count``, ... of the item list.
Every shard must therefore receive the same list in the same order, such as the registered
architectures of a run in id order. Appending architectures to that list later keeps the
earlier ones in their shards.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import re
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

from cnngen import devices
from cnngen.disclosure import collect_disclosure
from cnngen.errors import TrainingError
from cnngen.training import TrainingConfig, TrainingResult, train_item
from cnngen.workers import WorkerPool

logger = logging.getLogger(__name__)

STORE_FILE = "results.sqlite"
_SHARD_PATTERN = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def run_batch(
    items: Iterable,
    data,
    config: TrainingConfig,
    store,
    *,
    build_model_for: Callable[[Any], Callable[[tuple, int], Any]],
    retry_failed: bool = False,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    architectures_per_process: int = 0,
) -> list[TrainingResult]:
    """Train every item the store has not finished, recording each as soon as it ends.

    Before the first training the store receives the configuration, the data set summary, the
    shard and, when it has none yet, the measurement disclosure with the idle power
    (``config.idle_duration_s`` seconds of waiting). When the store already has a configuration,
    data set summary or shard, the current ones must match it, apart from ``verbose`` and
    ``idle_duration_s``, so that a resumed run does not mix protocols.

    Each item is trained with its own ``seed`` (the architecture's seed, derived from the run
    seed), or with ``config.seed`` when it has none. Between items, Keras's global state is
    cleared and Python's garbage collector runs. TensorFlow still keeps part of each fitted
    model's state for the life of the process, so a long batch should train in child processes
    (``architectures_per_process``, see ``cnngen.workers``), which also confines a crash to one
    architecture.

    Args:
        items: Objects with ``arch_id`` and ``phrase`` and optionally ``seed``, ``params``,
            ``flops``, ``dataset``, ``code_path``, ``image_path``.
        data: The splits, as for :func:`cnngen.training.train_architecture`.
        config: Training and measurement settings.
        store: An open, writable ``cnngen.store.ResultsStore``; for a shard, normally the file
            named by :func:`shard_store_name`.
        build_model_for: Returns the ``build_model(input_shape, num_classes)`` of an item.
            An exception it raises gives that item a ``failed`` result.
        retry_failed: Train again the items whose stored training failed.
        progress: Show a tqdm progress bar.
        shard: ``(index, count)`` to train only shard ``index`` of ``count`` (numbered from
            1, see the module docstring), or None for every item.
        architectures_per_process: Train in a child process replaced after this many
            trainings (``build_model_for`` must then be picklable), or 0 to train in this
            process.

    Returns:
        The results of the items trained by this call, in order.

    Raises:
        TrainingError: If the shard is invalid, or the store's configuration, data set summary
            or shard differs from these.
    """
    from tqdm.auto import tqdm

    items = list(items)
    if shard is not None:
        items = shard_items(items, *shard)
    skip_statuses = ("ok", "diverged") if retry_failed else ("ok", "diverged", "failed")
    finished = store.finished_ids(skip_statuses)
    pending = [item for item in items if item.arch_id not in finished]
    logger.info(
        "%d architectures to train, %d already finished", len(pending), len(items) - len(pending)
    )
    if not pending:
        return []
    if architectures_per_process:
        trainer = WorkerPool(data, config, build_model_for, architectures_per_process)
    else:
        trainer = _InProcess(data, config, build_model_for)
    _record_run_setup(store, data, config, shard)

    results = []
    with trainer:
        for item in tqdm(pending, desc="training", unit="arch", disable=not progress):
            store.add_architecture(_with_dataset(item, data))
            result = trainer.train(item)
            store.record_training(result)
            results.append(result)
            logger.info(
                "%s: %s, test accuracy %s", item.arch_id, result.status, result.test_accuracy
            )
    return results


def shard_items(items: list, index: int, count: int) -> list:
    """Return the items of shard ``index`` of ``count``, numbered from 1, by position.

    Raises:
        TrainingError: If count is not a positive integer or index is not in 1..count.
    """
    check_shard(index, count)
    return items[index - 1 :: count]


def check_shard(index, count) -> tuple[int, int]:
    """Return ``(index, count)`` when they name a shard, numbered from 1.

    Raises:
        TrainingError: If count is not a positive integer or index is not in 1..count.
    """
    valid = all(isinstance(value, int) and not isinstance(value, bool) for value in (index, count))
    if not valid or count < 1 or not 1 <= index <= count:
        raise TrainingError(
            f"invalid shard ({index!r}, {count!r}): expected (index, count) with integers "
            "1 <= index <= count, for example (1, 4) for the first of four shards"
        )
    return index, count


def parse_shard(text: str) -> tuple[int, int]:
    """Parse a shard written "I/N", such as "1/4", into ``(index, count)``.

    Raises:
        TrainingError: If the text is not "I/N" with 1 <= I <= N.
    """
    match = _SHARD_PATTERN.fullmatch(text) if isinstance(text, str) else None
    if match is None or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise TrainingError(
            f"invalid shard {text!r}: expected INDEX/COUNT with 1 <= INDEX <= COUNT, for "
            "example 1/4 for the first of four shards"
        )
    return int(match.group(1)), int(match.group(2))


def shard_store_name(shard: tuple[int, int] | None) -> str:
    """Return the results store file name of a shard, ``results.shard-I-of-N.sqlite``.

    Without a shard it is ``results.sqlite``. Distinct names let the shards of one run write
    into the same folder, since a store has a single writer.
    """
    if shard is None:
        return STORE_FILE
    index, count = check_shard(*shard)
    return f"results.shard-{index}-of-{count}.sqlite"


class _InProcess:
    """Trains items in this process, with the interface of a ``WorkerPool``."""

    def __init__(self, data, config: TrainingConfig, build_model_for) -> None:
        self._arguments = (data, config, build_model_for)

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def train(self, item) -> TrainingResult:
        result = train_item(item, *self._arguments)
        # train_architecture cleared Keras's session; collecting now frees the model's graph.
        gc.collect()
        return result


def _record_run_setup(store, data, config: TrainingConfig, shard) -> None:
    """Store the configuration, data summary and shard, or check them against a resumed run's."""
    _record_or_compare(store, "training_config", dataclasses.asdict(config), RESUMABLE_FIELDS)
    if hasattr(data, "summary"):
        _record_or_compare(store, "dataset", data.summary(), ())
    shard_record = None if shard is None else {"index": shard[0], "count": shard[1]}
    _record_or_compare(store, "shard", shard_record, ())
    if store.disclosure is None:
        settings = config.meter_settings(devices.training_device().gpu_ids)
        disclosure = collect_disclosure(settings, config.idle_duration_s)
        store.record_disclosure(disclosure)
        store.record_run_metadata("idle_power_w", disclosure.idle_power_w)


# Configuration fields that change neither the trainings nor their measurement, so a resumed
# run, or a shard to merge with another, may use other values.
RESUMABLE_FIELDS = ("verbose", "idle_duration_s")

# A stored configuration without a field that was added later was made with its default.
_CONFIG_DEFAULTS = {field.name: field.default for field in dataclasses.fields(TrainingConfig)}


def _record_or_compare(store, key: str, value, ignored: tuple[str, ...]) -> None:
    metadata = store.run_metadata()
    if key not in metadata:
        store.record_run_metadata(key, value)
        return
    current = json.loads(json.dumps(value))
    changes = describe_changes(key, metadata[key], current, ("stored", "now"), ignored)
    if changes:
        raise TrainingError(
            f"the run directory's results were made with another {key} ({'; '.join(changes)}); "
            "resume with the stored values or start a new run directory"
        )


def describe_changes(
    key: str, first, second, labels: tuple[str, str], ignored: tuple[str, ...] = ()
) -> list[str]:
    """Describe how two values of run metadata differ, as "name FIRST label, SECOND label".

    Dictionaries are compared field by field, other values whole. A ``training_config``
    without a field added in a later version counts as having the field's default, so that
    older run directories can be resumed and merged.
    """
    if not isinstance(first, dict) or not isinstance(second, dict):
        pairs = [] if first == second else [("", first, second)]
    else:
        defaults = _CONFIG_DEFAULTS if key == "training_config" else {}
        pairs = [
            (f"{name} ", first.get(name, defaults.get(name)), second.get(name, defaults.get(name)))
            for name in sorted(set(first) | set(second))
            if name not in ignored
        ]
    return [
        f"{name}{before!r} {labels[0]}, {after!r} {labels[1]}"
        for name, before, after in pairs
        if before != after
    ]


def _with_dataset(item, data) -> SimpleNamespace:
    """Return the item's architecture fields, with the data set name when the item has none."""
    fields = {name: getattr(item, name, None) for name in _ITEM_FIELDS}
    if fields["dataset"] is None:
        fields["dataset"] = getattr(getattr(data, "info", None), "name", None)
    return SimpleNamespace(**fields)


_ITEM_FIELDS = (
    "arch_id",
    "phrase",
    "seed",
    "dataset",
    "params",
    "flops",
    "code_path",
    "image_path",
)
