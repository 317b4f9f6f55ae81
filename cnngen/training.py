"""Compile, fit and evaluate one architecture with its energy measured, and run a batch of them.

This module owns the training protocol, its per-epoch records, the classification of an
outcome as ok, failed or diverged, and the resumable batch loop. The protocol compiles with
Adam, sparse categorical cross-entropy and accuracy, fits on the training split with the
validation split, and evaluates on the test and training splits. The module leaves the
CodeCarbon set-up to ``cnngen.energy``, saving to a results store (``cnngen.store``, passed in
as an object), and building models to the caller, so it imports neither the grammar nor the
solver. TensorFlow and Keras are imported inside the functions that train.

Outcome of a training:

* ``failed``: building, compiling, fitting or evaluating raised an exception. The result holds
  the exception text and a batch goes on with the next architecture.
* ``diverged``: a loss was NaN or infinite, or the test accuracy is at most the chance level
  plus ``TrainingConfig.chance_margin``. The chance level is the share of the most frequent
  class in the test labels, the accuracy of a model that always predicts that class.
* ``ok``: otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from cnngen.energy import EnergyMeter, EnergyReading, MeterSettings, collect_disclosure
from cnngen.errors import ParameterError, TrainingError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingConfig:
    """Training and measurement settings shared by every architecture of a run.

    Attributes:
        epochs: Maximum number of epochs.
        batch_size: Images per gradient step.
        learning_rate: Adam's learning rate.
        seed: Seed passed to ``keras.utils.set_random_seed`` before each model is built.
        country_iso_code: ISO 3166-1 alpha-3 code of the country whose electricity mix turns
            energy into emissions. The default "BEL" is the country of the original CNNGen
            measurements; set the country where the machine runs. Only emissions depend on it.
        measure_power_secs: CodeCarbon's power sampling interval, in seconds.
        tracking_mode: CodeCarbon tracking mode, "machine" or "process" (see cnngen.energy).
        idle_duration_s: Length of the once-per-run idle power measurement, in seconds.
        early_stopping: Stop when the validation loss has not improved for ``patience``
            epochs. The model of the last epoch run is evaluated, matching the energy spent.
        patience: Epochs without improvement before early stopping.
        deterministic: Call ``tf.config.experimental.enable_op_determinism()``, which stays on
            for the rest of the process and slows some operations.
        chance_margin: Test accuracy at or below chance plus this margin counts as diverged.
        verbose: Keras ``fit`` verbosity (0 silent, 1 progress bar, 2 one line per epoch).
    """

    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    country_iso_code: str = "BEL"
    measure_power_secs: float = 1.0
    tracking_mode: str = "machine"
    idle_duration_s: float = 5.0
    early_stopping: bool = False
    patience: int = 3
    deterministic: bool = False
    chance_margin: float = 0.01
    verbose: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            _check_number(name, getattr(self, name), int, minimum=1)
        _check_number("seed", self.seed, int, minimum=0)
        _check_number("patience", self.patience, int, minimum=0)
        _check_number("verbose", self.verbose, int, minimum=0)
        _check_number("learning_rate", self.learning_rate, float, minimum=0, exclusive=True)
        _check_number("idle_duration_s", self.idle_duration_s, float, minimum=0, exclusive=True)
        _check_number("chance_margin", self.chance_margin, float, minimum=0)
        self.meter_settings()  # validates the country, interval and tracking mode

    def meter_settings(self) -> MeterSettings:
        """Return the CodeCarbon settings of this configuration."""
        return MeterSettings(
            country_iso_code=self.country_iso_code,
            measure_power_secs=self.measure_power_secs,
            tracking_mode=self.tracking_mode,
        )


@dataclass(frozen=True)
class EpochRecord:
    """Metrics of one epoch. ``epoch`` counts from 1, and energy_kwh is None when unmeasured."""

    epoch: int
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    duration_s: float
    energy_kwh: float | None


@dataclass
class TrainingResult:
    """Outcome of training one architecture.

    ``training_time_s`` and ``energy`` cover ``model.fit`` only. ``train_accuracy`` and
    ``train_loss`` come from evaluating the final model on the training split, the validation
    values from the last epoch run. Metrics are None when the training failed before them.
    """

    arch_id: str
    status: str
    epochs: int
    error: str | None = None
    epochs_run: int = 0
    test_accuracy: float | None = None
    train_accuracy: float | None = None
    val_accuracy: float | None = None
    test_loss: float | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    training_time_s: float | None = None
    num_layers: int | None = None
    params: int | None = None
    energy: EnergyReading | None = None
    epoch_rows: list[EpochRecord] = field(default_factory=list)
    started_at: str | None = None
    finished_at: str | None = None


def train_architecture(
    build_model: Callable[[tuple, int], Any],
    data,
    config: TrainingConfig,
    *,
    arch_id: str,
    meter_factory: Callable[[MeterSettings], EnergyMeter] = EnergyMeter,
) -> TrainingResult:
    """Build, train and evaluate one model with the energy of its training measured.

    Args:
        build_model: Called as ``build_model(input_shape, num_classes)``; returns an
            uncompiled Keras model.
        data: Splits with x_train, y_train, x_val, y_val, x_test, y_test and
            ``info.input_shape``, ``info.num_classes`` (a ``cnngen.datasets.DatasetSplits``).
        config: Training and measurement settings.
        arch_id: Identifier copied into the result.
        meter_factory: Creates the energy meter from the CodeCarbon settings.

    Returns:
        The result. Exceptions from building, fitting or evaluating are not raised: they give
        a ``failed`` result with the exception text.
    """
    import keras

    result = TrainingResult(arch_id=arch_id, status="ok", epochs=config.epochs)
    result.started_at = _now()
    try:
        _seed(config)
        model = build_model(tuple(data.info.input_shape), data.info.num_classes)
        result.num_layers = len(model.layers)
        result.params = int(model.count_params())
        _fit(model, data, config, meter_factory(config.meter_settings()), result)
        _evaluate(model, data, result)
        result.status = _classify(result, data.y_test, config.chance_margin)
    except Exception as error:
        result.status = "failed"
        result.error = f"{type(error).__name__}: {error}"
        logger.warning("training of %s failed: %s", arch_id, result.error)
    finally:
        keras.backend.clear_session()
    result.finished_at = _now()
    return result


def failed_result(arch_id: str, config: TrainingConfig, error: Exception) -> TrainingResult:
    """Return a ``failed`` result for an architecture whose training could not begin."""
    now = _now()
    return TrainingResult(
        arch_id=arch_id,
        status="failed",
        epochs=config.epochs,
        error=f"{type(error).__name__}: {error}",
        started_at=now,
        finished_at=now,
    )


def run_batch(
    items: Iterable,
    data,
    config: TrainingConfig,
    store,
    *,
    build_model_for: Callable[[Any], Callable[[tuple, int], Any]],
    retry_failed: bool = False,
    progress: bool = True,
) -> list[TrainingResult]:
    """Train every item the store has not finished, recording each as soon as it ends.

    Before the first training the store receives the configuration, the data set summary and,
    when it has none yet, the measurement disclosure with the idle power
    (``config.idle_duration_s`` seconds of waiting). When the store already has a configuration
    or data set summary, the current ones must match it, apart from ``verbose`` and
    ``idle_duration_s``, so that a resumed run does not mix protocols.

    Args:
        items: Objects with ``arch_id`` and ``phrase`` and optionally ``seed``, ``params``,
            ``flops``, ``dataset``, ``code_path``, ``image_path``.
        data: The splits, as for :func:`train_architecture`.
        config: Training and measurement settings.
        store: An open, writable ``cnngen.store.ResultsStore``.
        build_model_for: Returns the ``build_model(input_shape, num_classes)`` of an item.
            An exception it raises gives that item a ``failed`` result.
        retry_failed: Train again the items whose stored training failed.
        progress: Show a tqdm progress bar.

    Returns:
        The results of the items trained by this call, in order.

    Raises:
        TrainingError: If the store's configuration or data set summary differs from these.
    """
    from tqdm.auto import tqdm

    items = list(items)
    skip_statuses = ("ok", "diverged") if retry_failed else ("ok", "diverged", "failed")
    finished = store.finished_ids(skip_statuses)
    pending = [item for item in items if item.arch_id not in finished]
    logger.info(
        "%d architectures to train, %d already finished", len(pending), len(items) - len(pending)
    )
    if not pending:
        return []
    _record_run_setup(store, data, config)

    results = []
    for item in tqdm(pending, desc="training", unit="arch", disable=not progress):
        store.add_architecture(_with_dataset(item, data))
        try:
            build_model = build_model_for(item)
        except Exception as error:
            result = failed_result(item.arch_id, config, error)
        else:
            result = train_architecture(build_model, data, config, arch_id=item.arch_id)
        store.record_training(result)
        results.append(result)
        logger.info("%s: %s, test accuracy %s", item.arch_id, result.status, result.test_accuracy)
    return results


def _record_run_setup(store, data, config: TrainingConfig) -> None:
    """Store the configuration and data summary, or check them against a resumed run's."""
    _record_or_compare(store, "training_config", dataclasses.asdict(config), _RESUMABLE_FIELDS)
    if hasattr(data, "summary"):
        _record_or_compare(store, "dataset", data.summary(), ())
    if store.disclosure is None:
        disclosure = collect_disclosure(config.meter_settings(), config.idle_duration_s)
        store.record_disclosure(disclosure)
        store.record_run_metadata("idle_power_w", disclosure.idle_power_w)


# Configuration fields that change neither the trainings nor their measurement, so a resumed
# run may use other values.
_RESUMABLE_FIELDS = ("verbose", "idle_duration_s")


def _record_or_compare(store, key: str, value: dict, ignored: tuple[str, ...]) -> None:
    stored = store.run_metadata().get(key)
    if stored is None:
        store.record_run_metadata(key, value)
        return
    current = json.loads(json.dumps(value))
    changed = [
        f"{name} {stored.get(name)!r} stored, {current.get(name)!r} now"
        for name in sorted(set(stored) | set(current))
        if name not in ignored and stored.get(name) != current.get(name)
    ]
    if changed:
        raise TrainingError(
            f"the run directory's results were made with another {key} ({'; '.join(changed)}); "
            "resume with the stored values or start a new run directory"
        )


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


def _seed(config: TrainingConfig) -> None:
    import keras

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _fit(model, data, config: TrainingConfig, meter: EnergyMeter, result: TrainingResult) -> None:
    """Compile and fit the model inside the energy meter, filling the result's training fields."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    recorder = _epoch_recorder_class()(meter, result.epoch_rows)
    callbacks = [recorder]
    if config.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience)
        )

    # The meter brackets fit only; its stop runs even when fit raises.
    try:
        meter.start()
        model.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            epochs=config.epochs,
            batch_size=config.batch_size,
            callbacks=callbacks,
            verbose=config.verbose,
        )
    finally:
        result.energy = meter.stop()
        result.training_time_s = result.energy.duration_s
        result.epochs_run = len(result.epoch_rows)
    if result.epoch_rows:
        result.val_loss = result.epoch_rows[-1].val_loss
        result.val_accuracy = result.epoch_rows[-1].val_accuracy


def _evaluate(model, data, result: TrainingResult) -> None:
    test = model.evaluate(data.x_test, data.y_test, verbose=0, return_dict=True)
    train = model.evaluate(data.x_train, data.y_train, verbose=0, return_dict=True)
    result.test_loss, result.test_accuracy = float(test["loss"]), float(test["accuracy"])
    result.train_loss, result.train_accuracy = float(train["loss"]), float(train["accuracy"])


def _classify(result: TrainingResult, y_test, chance_margin: float) -> str:
    import numpy as np

    losses = [result.test_loss, result.train_loss]
    losses += [row.train_loss for row in result.epoch_rows]
    losses += [row.val_loss for row in result.epoch_rows]
    if any(loss is not None and not math.isfinite(loss) for loss in losses):
        return "diverged"
    chance = np.bincount(np.asarray(y_test).astype(int)).max() / len(y_test)
    if result.test_accuracy <= chance + chance_margin:
        return "diverged"
    return "ok"


@functools.cache
def _epoch_recorder_class():
    """Return the Keras callback class that records epochs, defined on first use.

    It implements no batch hooks, so Keras keeps running its training steps without a
    per-batch return to Python. A NaN loss stops training at the end of its epoch.
    """
    import keras

    class EpochRecorder(keras.callbacks.Callback):
        def __init__(self, meter: EnergyMeter, rows: list[EpochRecord]):
            super().__init__()
            self.meter = meter
            self.rows = rows
            self.epoch_start_s = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start_s = time.perf_counter()
            self.meter.start_epoch()

        def on_epoch_end(self, epoch, logs=None):
            energy_kwh = self.meter.stop_epoch()
            logs = logs or {}
            row = EpochRecord(
                epoch=epoch + 1,
                train_loss=_float_or_none(logs.get("loss")),
                train_accuracy=_float_or_none(logs.get("accuracy")),
                val_loss=_float_or_none(logs.get("val_loss")),
                val_accuracy=_float_or_none(logs.get("val_accuracy")),
                duration_s=time.perf_counter() - self.epoch_start_s,
                energy_kwh=energy_kwh,
            )
            self.rows.append(row)
            if row.train_loss is not None and not math.isfinite(row.train_loss):
                self.model.stop_training = True

    return EpochRecorder


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)


def _check_number(name: str, value, kind: type, *, minimum: float, exclusive: bool = False) -> None:
    accepted = (int,) if kind is int else (int, float)
    valid = isinstance(value, accepted) and not isinstance(value, bool)
    if valid:
        valid = value > minimum if exclusive else value >= minimum
    if not valid:
        bound = f"> {minimum}" if exclusive else f">= {minimum}"
        raise ParameterError(
            f"invalid training parameter {name}={value!r}: expected {kind.__name__} {bound}"
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
