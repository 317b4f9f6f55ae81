"""The record of how a run's energy was measured: sensors, hardware, versions and idle power.

This module owns :class:`MeasurementDisclosure`, collected once per run from a started
CodeCarbon tracker's hardware objects, and the idle power of the machine. It records which
sensors or estimates CodeCarbon really used for the CPU, GPU and RAM, which GPU the training
runs on (model, NVML index, driver), and the framework versions. It leaves the tracker set-up
to ``cnngen.energy``, device detection to ``cnngen.devices``, and saving to ``cnngen.store``.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from dataclasses import dataclass
from typing import Any

from cnngen import devices
from cnngen.energy import EnergyMeter, EnergyReading, MeterSettings
from cnngen.errors import MeasurementError

logger = logging.getLogger(__name__)

_JOULES_PER_KWH = 3.6e6

# CPU modes of codecarbon.external.hardware.CPU in CodeCarbon 3.3.2, with the label stored in
# results and whether the energy is an estimate rather than a counter reading.
_CPU_SOURCES = {
    "intel_rapl": ("RAPL", False),
    "windows_emi": ("Windows Energy Meter Interface (RAPL)", False),
    "intel_power_gadget": ("Intel Power Gadget", False),
    "apple_powermetrics": ("powermetrics", False),
    "cpu_load": ("TDP estimate (load-scaled)", True),
    "constant": ("constant fallback (half of TDP)", True),
}


@dataclass(frozen=True)
class MeasurementDisclosure:
    """Record of how the energy of a run was measured, collected once per run.

    The sources are read from the hardware objects of a started CodeCarbon tracker.
    ``energy_is_estimate`` is True when any part of the total (CPU, GPU or RAM) comes from a
    model rather than a hardware counter. On x86 it is nearly always True, because CodeCarbon
    estimates RAM power from the memory size, so ``cpu_energy_is_estimate`` is the flag that
    separates RAPL machines from TDP estimates. ``idle_power_w`` is the machine's power with
    this process asleep; it is stored, never subtracted from readings.

    ``gpu_model`` and ``gpu_count`` describe every GPU CodeCarbon found on the machine,
    ``gpu_ids`` the NVML indices it measures (None when it found no GPU), and
    ``training_device`` and ``training_gpu_name`` the device Keras trains on.
    """

    codecarbon_version: str | None
    tracking_mode: str
    measure_power_secs: float
    country_iso_code: str
    carbon_intensity_g_per_kwh: float | None
    cpu_energy_source: str
    cpu_tdp_w: float | None
    cpu_energy_is_estimate: bool | None
    gpu_energy_source: str
    ram_energy_method: str
    energy_is_estimate: bool | None
    cpu_model: str | None
    cpu_count: int | None
    gpu_model: str | None
    gpu_count: int | None
    gpu_ids: list[int] | None
    gpu_driver_version: str | None
    training_device: str
    training_gpu_name: str | None
    ram_total_gb: float | None
    idle_power_w: float | None
    idle_duration_s: float
    python_version: str
    tensorflow_version: str | None
    keras_version: str | None
    cuda_version: str | None
    cudnn_version: str | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dictionary."""
        return dataclasses.asdict(self)


def measure_idle_power(settings: MeterSettings, duration_s: float = 5.0) -> float | None:
    """Measure the machine's power while this process sleeps.

    Args:
        settings: The run's CodeCarbon settings.
        duration_s: How long to measure, in seconds.

    Returns:
        The mean power in watts, or None when CodeCarbon failed (the failure is logged).

    Raises:
        MeasurementError: If duration_s is not positive.
    """
    reading, _ = _measure_idle(settings, duration_s)
    return _idle_power_w(reading)


def collect_disclosure(
    settings: MeterSettings, idle_duration_s: float = 5.0
) -> MeasurementDisclosure:
    """Measure idle power and record which sensors, versions and hardware a run uses.

    Args:
        settings: The run's CodeCarbon settings.
        idle_duration_s: Length of the idle measurement, in seconds.

    Returns:
        The disclosure. When CodeCarbon fails, the sources read "unavailable", the measured
        values are None and ``error`` contains the failure.

    Raises:
        MeasurementError: If idle_duration_s is not positive.
    """
    reading, hardware = _measure_idle(settings, idle_duration_s)
    device = devices.training_device()
    carbon_intensity = None
    if reading.energy_kwh and reading.emissions_kg is not None:
        carbon_intensity = reading.emissions_kg * 1000.0 / reading.energy_kwh
    return MeasurementDisclosure(
        codecarbon_version=_codecarbon_version(),
        tracking_mode=settings.tracking_mode,
        measure_power_secs=settings.measure_power_secs,
        country_iso_code=settings.country_iso_code,
        carbon_intensity_g_per_kwh=carbon_intensity,
        idle_power_w=_idle_power_w(reading),
        idle_duration_s=idle_duration_s,
        gpu_driver_version=device.driver_version or devices.nvml_driver_version(),
        training_device=device.kind,
        training_gpu_name=device.gpu_name,
        python_version=platform.python_version(),
        error=reading.error,
        **hardware,
        **_framework_versions(),
    )


def _measure_idle(settings: MeterSettings, duration_s: float) -> tuple[EnergyReading, dict]:
    if isinstance(duration_s, bool) or not (isinstance(duration_s, int | float) and duration_s > 0):
        raise MeasurementError(
            f"invalid idle duration {duration_s!r}: expected a positive number of seconds"
        )
    meter = EnergyMeter(settings)
    with meter:
        hardware = _describe_hardware(meter.tracker)
        time.sleep(duration_s)
    return meter.reading, hardware


def _idle_power_w(reading: EnergyReading) -> float | None:
    if reading.energy_kwh is None or reading.duration_s <= 0:
        return None
    return reading.energy_kwh * _JOULES_PER_KWH / reading.duration_s


def _describe_hardware(tracker) -> dict[str, Any]:
    """Read the energy sources from a started tracker's hardware objects."""
    unknown = {
        "cpu_energy_source": "unavailable",
        "cpu_tdp_w": None,
        "cpu_energy_is_estimate": None,
        "gpu_energy_source": "unavailable",
        "ram_energy_method": "unavailable",
        "energy_is_estimate": None,
        "cpu_model": None,
        "cpu_count": None,
        "gpu_model": None,
        "gpu_count": None,
        "gpu_ids": None,
        "ram_total_gb": None,
    }
    if tracker is None:
        return unknown
    try:
        return _read_hardware(tracker)
    except Exception as error:
        # The hardware objects are CodeCarbon internals, which a new version may change.
        logger.warning("could not read CodeCarbon's hardware objects: %s", error)
        return unknown


def _read_hardware(tracker) -> dict[str, Any]:
    parts = [_describe_part(part) for part in tracker._hardware]
    found = {kind: (label, estimate, tdp) for kind, label, estimate, tdp in parts}
    cpu_label, cpu_estimate, cpu_tdp = found.get("cpu", ("none", None, None))
    gpu_label, gpu_estimate, _ = found.get("gpu", ("none", False, None))
    ram_label, ram_estimate, _ = found.get("ram", ("none", None, None))
    detected = tracker.get_detected_hardware()
    return {
        "cpu_energy_source": cpu_label,
        "cpu_tdp_w": cpu_tdp,
        "cpu_energy_is_estimate": cpu_estimate,
        "gpu_energy_source": gpu_label,
        "ram_energy_method": ram_label,
        "energy_is_estimate": bool(cpu_estimate or gpu_estimate or ram_estimate),
        "cpu_model": detected.get("cpu_model"),
        "cpu_count": detected.get("cpu_count"),
        "gpu_model": detected.get("gpu_model") or None,
        "gpu_count": detected.get("gpu_count"),
        "gpu_ids": _measured_gpu_ids(tracker),
        "ram_total_gb": detected.get("ram_total_size"),
    }


def _measured_gpu_ids(tracker) -> list[int] | None:
    """Return the NVML indices CodeCarbon's GPU object measures, or None without a GPU."""
    for part in tracker._hardware:
        if type(part).__name__ == "GPU":
            return [int(index) for index in part._get_gpu_ids()]
    return None


def _describe_part(part) -> tuple[str, str, bool, float | None]:
    """Return (kind, source label, is estimate, TDP in W) of one CodeCarbon hardware object."""
    name = type(part).__name__
    if name == "CPU":
        label, estimate = _CPU_SOURCES.get(part._mode, (f"CodeCarbon mode {part._mode}", True))
        if part._mode in ("cpu_load", "constant") and part._is_generic_tdp:
            label += ", generic TDP"
        tdp = float(part._tdp) if estimate and part._tdp is not None else None
        return "cpu", label, estimate, tdp
    if name == "GPU":
        from codecarbon.core import gpu

        return "gpu", "NVML" if gpu.is_nvidia_system() else "AMD SMI", False, None
    if name == "RAM":
        if part._force_ram_power is not None:
            return "ram", f"user-set constant ({part._force_ram_power} W)", True, None
        return "ram", f"estimate from {part._tracking_mode} memory size", True, None
    if name == "Raspberry":
        kind = "ram" if part.chip_part == "RAM" else "cpu"
        return kind, "Raspberry Pi PMIC", False, None
    if name == "AppleSiliconChip":
        kind = "gpu" if part.chip_part == "GPU" else "cpu"
        return kind, "powermetrics", False, None
    return name.lower(), f"unknown CodeCarbon hardware {name}", True, None


def _framework_versions() -> dict[str, str | None]:
    versions = dict.fromkeys(
        ("tensorflow_version", "keras_version", "cuda_version", "cudnn_version")
    )
    try:
        import keras
        import tensorflow as tf
    except ImportError:
        return versions
    build = tf.sysconfig.get_build_info()
    versions["tensorflow_version"] = tf.__version__
    versions["keras_version"] = keras.__version__
    versions["cuda_version"] = build.get("cuda_version")
    versions["cudnn_version"] = build.get("cudnn_version")
    return versions


def _codecarbon_version() -> str | None:
    try:
        import codecarbon
    except ImportError:
        return None
    return codecarbon.__version__
