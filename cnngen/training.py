"""Compile, fit and evaluate one architecture with its energy and inference cost measured.

This module owns the training protocol, its per-epoch records, mixed precision, seeding, and
the classification of an outcome as ok, failed or diverged. Its settings are a
:class:`cnngen.training_config.TrainingConfig`, importable from here too. The protocol
compiles with Adam, sparse categorical cross-entropy and accuracy, fits on the training split
with the validation split, evaluates on the test and training splits, and then measures the
inference cost (``cnngen.inference``). The module leaves the CodeCarbon set-up to
``cnngen.energy``, the device to ``cnngen.devices``, the batch loop to ``cnngen.batch``, saving
to a results store, and building models to the caller, so it imports neither the grammar nor
the solver. TensorFlow and Keras are imported inside the functions that train.

Seeds: ``keras.utils.set_random_seed`` receives the seed given to :func:`train_architecture`
(in a batch, the architecture's own seed) or else ``TrainingConfig.seed``, before the model is
built. It seeds Python, NumPy and TensorFlow, so weights, dropout and the shuffling of ``fit``
follow from it. Identical results on one machine also need ``deterministic=True``, which turns
on TensorFlow's op determinism for the rest of the process.

Mixed precision: with ``mixed_precision=True`` the model is built under Keras's
``"mixed_float16"`` policy, which computes in float16 and keeps the weights in float32. The
output layers are then rebuilt with a float32 policy (``keras.models.clone_model``), so the
softmax and the loss stay in float32. Keras wraps the optimizer in a ``LossScaleOptimizer``.
The previous global policy is restored after each training.

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
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cnngen import devices
from cnngen.energy import EnergyMeter, EnergyReading, MeterSettings
from cnngen.errors import TrainingError
from cnngen.inference import InferenceCost, measure_inference
from cnngen.training_config import TrainingConfig, check_number

__all__ = [
    "EpochRecord",
    "TrainingConfig",
    "TrainingResult",
    "failed_result",
    "float32_outputs",
    "train_architecture",
    "train_item",
]

logger = logging.getLogger(__name__)


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
    ``device`` is "GPU" or "CPU". ``gpu_energy_flag`` is "zero" or "missing" when a GPU
    training has no GPU energy reading (see :func:`cnngen.devices.gpu_energy_flag`), and the
    reading's GPU energy and power are then None. ``inference`` is None when the training
    failed or the measurement is turned off.
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
    training_seed: int | None = None
    device: str | None = None
    mixed_precision: bool | None = None
    gpu_energy_flag: str | None = None
    inference: InferenceCost | None = None


def train_architecture(
    build_model: Callable[[tuple, int], Any],
    data,
    config: TrainingConfig,
    *,
    arch_id: str,
    seed: int | None = None,
    meter_factory: Callable[[MeterSettings], EnergyMeter] = EnergyMeter,
) -> TrainingResult:
    """Build, train and evaluate one model, measuring its training energy and inference cost.

    Args:
        build_model: Called as ``build_model(input_shape, num_classes)``; returns an
            uncompiled Keras model.
        data: Splits with x_train, y_train, x_val, y_val, x_test, y_test and
            ``info.input_shape``, ``info.num_classes`` (a ``cnngen.datasets.DatasetSplits``).
        config: Training and measurement settings.
        arch_id: Identifier copied into the result.
        seed: Seed of the weights, dropout and shuffling; None uses ``config.seed``.
        meter_factory: Creates the energy meters from the CodeCarbon settings.

    Returns:
        The result. Exceptions from building, fitting or evaluating are not raised: they give
        a ``failed`` result with the exception text. An exception while measuring inference
        leaves the status unchanged and is kept in ``result.inference.error``.

    Raises:
        ParameterError: If seed is not None or an integer >= 0.
    """
    import keras

    seed = config.seed if seed is None else seed
    check_number("seed", seed, int, minimum=0)
    device = devices.training_device()
    result = TrainingResult(
        arch_id=arch_id,
        status="ok",
        epochs=config.epochs,
        started_at=_now(),
        training_seed=seed,
        device=device.kind,
        mixed_precision=config.mixed_precision,
    )
    meter_settings = config.meter_settings(device.gpu_ids)
    previous_policy = keras.mixed_precision.global_policy()
    try:
        _seed(seed, config.deterministic)
        model = _build(build_model, data, config)
        result.num_layers = len(model.layers)
        result.params = int(model.count_params())
        _fit(model, data, config, meter_factory(meter_settings), result)
        _evaluate(model, data, result)
        result.status = _classify(result, data.y_test, config.chance_margin)
        result.inference = _measure_inference(model, data, config, meter_settings, result)
    except Exception as error:
        result.status = "failed"
        result.error = describe_error(error)
        logger.warning("training of %s failed: %s", arch_id, result.error)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        keras.backend.clear_session()
    result.finished_at = _now()
    return result


def train_item(item, data, config: TrainingConfig, build_model_for) -> TrainingResult:
    """Train one item of a batch: build its model with ``build_model_for`` and train it.

    Args:
        item: An object with ``arch_id`` and optionally ``seed``; None or NaN uses
            ``config.seed``.
        data: The splits, as for :func:`train_architecture`.
        config: Training and measurement settings.
        build_model_for: Returns the item's ``build_model(input_shape, num_classes)``. An
            exception it raises gives the item a ``failed`` result.

    Raises:
        TrainingError: If the item's seed is not an integer.
    """
    try:
        build_model = build_model_for(item)
    except Exception as error:
        return failed_result(item.arch_id, config, error)
    return train_architecture(
        build_model, data, config, arch_id=item.arch_id, seed=_item_seed(item)
    )


def _item_seed(item) -> int | None:
    """Return the item's seed as an int, or None when it has none (missing or NaN)."""
    seed = getattr(item, "seed", None)
    if seed is None or (isinstance(seed, float) and math.isnan(seed)):
        return None
    if int(seed) != seed:
        raise TrainingError(f"invalid seed {seed!r} of {item.arch_id}: expected an integer")
    return int(seed)


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def describe_error(error: BaseException) -> str:
    """Return the exception's class and message as plain text for the store and the CSV.

    Keras formats some messages with terminal colour codes and blank lines; they are removed.
    """
    text = _ANSI_ESCAPE.sub("", str(error))
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: " + "\n".join(lines)


def failed_result(arch_id: str, config: TrainingConfig, error: Exception) -> TrainingResult:
    """Return a ``failed`` result for an architecture whose training could not begin."""
    now = _now()
    return TrainingResult(
        arch_id=arch_id,
        status="failed",
        epochs=config.epochs,
        error=describe_error(error),
        started_at=now,
        finished_at=now,
    )


def _seed(seed: int, deterministic: bool) -> None:
    import keras

    keras.utils.set_random_seed(seed)
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _build(build_model, data, config: TrainingConfig):
    """Build the model, under the mixed precision policy with float32 outputs when asked."""
    import keras

    if not config.mixed_precision:
        return build_model(tuple(data.info.input_shape), data.info.num_classes)
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = build_model(tuple(data.info.input_shape), data.info.num_classes)
    return float32_outputs(model)


def float32_outputs(model):
    """Return the model with its output layers computing in float32.

    Under the "mixed_float16" policy a softmax computed in float16 can round small
    probabilities to 0, so Keras's mixed precision guide keeps the output layer in float32.
    The model is rebuilt with ``keras.models.clone_model``, so its weights are initialised
    again from the current seed. A model whose outputs are already float32 is returned as is.

    Raises:
        TrainingError: If the model cannot be cloned, as with subclassed models.
    """
    import keras

    outputs = getattr(model, "outputs", None)
    if outputs and all(tensor.dtype == "float32" for tensor in outputs):
        return model
    try:
        output_layers = [
            layer for layer in model.layers if any(layer.output is out for out in outputs)
        ]

        def clone_layer(layer):
            config = layer.get_config()
            if any(layer is output for output in output_layers):
                config["dtype"] = "float32"
            return layer.__class__.from_config(config)

        return keras.models.clone_model(model, clone_function=clone_layer)
    except Exception as error:
        raise TrainingError(
            f"mixed precision needs a Sequential or functional model whose output layer can be "
            f"rebuilt in float32, and rebuilding {model.name!r} failed ({type(error).__name__}: "
            f"{error}); train this model with mixed_precision=False"
        ) from error


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
        _flag_gpu_energy(result)
    if result.epoch_rows:
        result.val_loss = result.epoch_rows[-1].val_loss
        result.val_accuracy = result.epoch_rows[-1].val_accuracy


def _flag_gpu_energy(result: TrainingResult) -> None:
    """Flag a GPU training without GPU energy, and make a reported zero read as missing."""
    result.gpu_energy_flag = devices.gpu_energy_flag(result.device, result.energy.gpu_energy_kwh)
    if result.gpu_energy_flag is None:
        return
    logger.warning(
        "%s trained on a GPU, but its GPU energy is %s: CodeCarbon did not read the GPU, so "
        "energy_kwh covers the CPU and RAM only",
        result.arch_id,
        result.gpu_energy_flag,
    )
    result.energy = dataclasses.replace(result.energy, gpu_energy_kwh=None, gpu_power_w=None)


def _measure_inference(model, data, config, meter_settings, result) -> InferenceCost | None:
    """Measure the inference cost, keeping an exception's text instead of raising it."""
    settings = config.inference_settings()
    if settings.min_batches == 0:
        return None
    try:
        return measure_inference(
            model, data.x_test, settings, meter_settings, device_kind=result.device
        )
    except Exception as error:
        logger.warning("inference measurement of %s failed: %s", result.arch_id, error)
        return InferenceCost(
            batch_size=settings.batch_size, error=describe_error(error)
        )


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


def __getattr__(name: str):
    # run_batch moved to cnngen.batch; importing it from here keeps working. The import is
    # lazy because cnngen.batch imports this module.
    if name == "run_batch":
        from cnngen.batch import run_batch

        return run_batch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
