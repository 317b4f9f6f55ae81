"""The inference cost of a trained model: latency and energy of one batch of predictions.

This module owns the measurement of inference after training. It runs warm-up batches first,
so that tracing and memory allocation stay out of the figures. Then it repeats timed batches
inside one CodeCarbon interval (an :class:`cnngen.energy.EnergyMeter`), until both a minimum
number of batches and a minimum duration are reached. Latency is the median wall time of one
``model.predict_on_batch`` call, which includes copying the batch to the device and the
predictions back. Energy is the interval's energy divided by the number of batches, so it is a
mean, and it includes the machine's idle power in ``"machine"`` tracking mode. The module
leaves training to ``cnngen.training`` and saving to ``cnngen.store``.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from cnngen.devices import gpu_energy_flag
from cnngen.energy import EnergyMeter, MeterSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceSettings:
    """Settings of the inference measurement after each training.

    Attributes:
        batch_size: Images per inference batch; a run uses its training batch size.
        min_batches: Minimum number of timed batches; 0 turns the measurement off.
        warmup_batches: Untimed batches run first.
        min_duration_s: Minimum length of the measured loop in seconds, so that CodeCarbon
            takes at least one power sample at its ``measure_power_secs`` interval.
    """

    batch_size: int
    min_batches: int = 30
    warmup_batches: int = 3
    min_duration_s: float = 2.0


@dataclass(frozen=True)
class InferenceCost:
    """Latency and energy of one inference batch; None where a value could not be measured.

    Attributes:
        batch_size: Images per batch.
        num_batches: Timed batches in the measured loop.
        latency_s: Median wall time of one batch, in seconds.
        latency_per_image_s: ``latency_s`` divided by the batch size.
        energy_kwh: Mean energy of one batch: the loop's energy divided by ``num_batches``.
        energy_per_image_kwh: ``energy_kwh`` divided by the batch size.
        duration_s: Length of the measured loop, in seconds.
        error: Why a value is missing, or None.
    """

    batch_size: int
    num_batches: int = 0
    latency_s: float | None = None
    latency_per_image_s: float | None = None
    energy_kwh: float | None = None
    energy_per_image_kwh: float | None = None
    duration_s: float | None = None
    error: str | None = None


def measure_inference(
    model,
    images,
    settings: InferenceSettings,
    meter_settings: MeterSettings,
    *,
    device_kind: str = "CPU",
    meter_factory: Callable[[MeterSettings], EnergyMeter] = EnergyMeter,
) -> InferenceCost:
    """Measure the latency and energy of one batch of predictions of a trained model.

    Args:
        model: A built Keras model.
        images: Images to predict, such as the test split; the batch is the first
            ``settings.batch_size`` of them, repeated when there are fewer.
        settings: Batch size, number of batches, warm-up and minimum duration.
        meter_settings: CodeCarbon settings of the run.
        device_kind: "GPU" or "CPU". On a GPU, a GPU energy of zero or None makes the energy
            None, because the CPU part alone would understate it.
        meter_factory: Creates the energy meter.

    Returns:
        The cost. Energy is None when CodeCarbon failed, with the reason in ``error``.
        Exceptions from the model itself are raised.
    """
    import numpy as np

    positions = np.arange(settings.batch_size) % len(images)
    batch = np.take(np.asarray(images), positions, axis=0)
    for _ in range(settings.warmup_batches):
        model.predict_on_batch(batch)

    # Time each batch inside one CodeCarbon interval.
    latencies_s = []
    meter = meter_factory(meter_settings)
    meter.start()
    try:
        loop_start = time.perf_counter()
        while len(latencies_s) < settings.min_batches or (
            time.perf_counter() - loop_start < settings.min_duration_s
        ):
            start = time.perf_counter()
            model.predict_on_batch(batch)
            latencies_s.append(time.perf_counter() - start)
        duration_s = time.perf_counter() - loop_start
    finally:
        reading = meter.stop()

    latency_s = statistics.median(latencies_s)
    energy_kwh, error = _energy_per_batch(reading, len(latencies_s), device_kind)
    return InferenceCost(
        batch_size=settings.batch_size,
        num_batches=len(latencies_s),
        latency_s=latency_s,
        latency_per_image_s=latency_s / settings.batch_size,
        energy_kwh=energy_kwh,
        energy_per_image_kwh=None if energy_kwh is None else energy_kwh / settings.batch_size,
        duration_s=duration_s,
        error=error,
    )


def _energy_per_batch(reading, num_batches: int, device_kind: str):
    """Return (energy of one batch in kWh or None, reason when None)."""
    if reading.energy_kwh is None:
        return None, reading.error or "CodeCarbon returned no measurement"
    flag = gpu_energy_flag(device_kind, reading.gpu_energy_kwh)
    if flag is not None:
        return None, f"GPU energy {flag} during inference on a GPU; CodeCarbon did not read it"
    return reading.energy_kwh / num_batches, None
