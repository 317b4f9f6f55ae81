"""Energy measurement of trainings with CodeCarbon, and the disclosure of how it was measured.

This module owns the CodeCarbon set-up (an offline tracker with an explicit country, a short
sampling interval and no output files unless requested), the per-training :class:`EnergyMeter`
with its per-epoch readings, the idle power of the machine, and the
:class:`MeasurementDisclosure` that records which sensors or estimates CodeCarbon really used.
It leaves to ``cnngen.training`` when a measurement starts and stops, and to ``cnngen.store``
how readings are saved.

Tracking mode: the default is ``"machine"``. RAPL counters and NVML read the whole CPU package
and the whole GPU whatever the mode. In ``"machine"`` mode the CPU, GPU and RAM parts of a
reading therefore describe the same thing, and the machine-wide idle power measured by
:func:`collect_disclosure` can be subtracted from them. ``"process"`` scales the CPU and RAM
estimates by this process's CPU time and resident memory, which suits a shared machine where no
counters exist.

CodeCarbon 3.3.2 behaviour this module relies on (read from its source):

* ``start``, ``stop`` and the tracker constructor are wrapped in a decorator that logs and
  swallows every exception. The meter calls the undecorated functions so that a failure is
  seen and its text recorded, and it cancels the tracker's timer threads itself.
* With ``allow_multiple_runs=False`` the constructor creates ``/tmp/.codecarbon.lock``: a
  second tracker anywhere on the machine then silently measures nothing, and the lock also
  replaces the process's SIGINT handler. Meters pass ``allow_multiple_runs=True``, so no lock
  file is created or honoured. The results store has its own lock against two runs writing one
  directory.
* ``start_task``/``stop_task`` reset the tracker's start time, so the tracker's own duration
  and emission rate are wrong after an epoch task. The meter measures the duration itself.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from cnngen.errors import MeasurementError

logger = logging.getLogger(__name__)

TRACKING_MODES = ("machine", "process")
_COUNTRY_CODE_PATTERN = re.compile(r"[A-Z]{3}")
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
class MeterSettings:
    """CodeCarbon settings shared by every tracker of a run.

    Attributes:
        country_iso_code: ISO 3166-1 alpha-3 code of the country whose electricity mix
            converts energy to emissions, for example "BEL" or "FRA".
        measure_power_secs: Interval between CodeCarbon's power measurements, in seconds.
        tracking_mode: "machine" (default) or "process"; see the module docstring.
        output_dir: Folder for CodeCarbon's own emissions.csv, or None to write no file.
    """

    country_iso_code: str
    measure_power_secs: float = 1.0
    tracking_mode: str = "machine"
    output_dir: str | None = None

    def __post_init__(self) -> None:
        validate_country_iso_code(self.country_iso_code)
        if isinstance(self.measure_power_secs, bool) or not (
            isinstance(self.measure_power_secs, int | float) and self.measure_power_secs > 0
        ):
            raise MeasurementError(
                f"invalid measure_power_secs {self.measure_power_secs!r}: expected a positive "
                "number of seconds, for example 1.0"
            )
        if self.tracking_mode not in TRACKING_MODES:
            raise MeasurementError(
                f"invalid tracking_mode {self.tracking_mode!r}: expected one of {TRACKING_MODES}"
            )


@dataclass(frozen=True)
class EnergyReading:
    """Energy, emissions and mean power of one measured interval.

    Every field except ``duration_s`` and ``error`` is None when CodeCarbon failed, because a
    missing measurement must not read as zero energy. Power values are CodeCarbon's means over
    its samples.
    """

    duration_s: float
    energy_kwh: float | None = None
    cpu_energy_kwh: float | None = None
    gpu_energy_kwh: float | None = None
    ram_energy_kwh: float | None = None
    emissions_kg: float | None = None
    emissions_rate_kg_per_s: float | None = None
    cpu_power_w: float | None = None
    gpu_power_w: float | None = None
    ram_power_w: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class MeasurementDisclosure:
    """Record of how the energy of a run was measured, collected once per run.

    The sources are read from the hardware objects of a started CodeCarbon tracker.
    ``energy_is_estimate`` is True when any part of the total (CPU, GPU or RAM) comes from a
    model rather than a hardware counter. On x86 it is nearly always True, because CodeCarbon
    estimates RAM power from the memory size, so ``cpu_energy_is_estimate`` is the flag that
    separates RAPL machines from TDP estimates. ``idle_power_w`` is the machine's power with
    this process asleep; it is stored, never subtracted from readings.
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


def validate_country_iso_code(code: object) -> str:
    """Check that a country code is an alpha-3 code known to CodeCarbon's energy-mix data.

    Args:
        code: The value to check.

    Returns:
        The code, unchanged.

    Raises:
        MeasurementError: If the code is not three upper-case letters or CodeCarbon has no
            electricity mix for it (CodeCarbon would silently use the world average).
    """
    if not isinstance(code, str) or not _COUNTRY_CODE_PATTERN.fullmatch(code):
        raise MeasurementError(
            f"invalid country_iso_code {code!r}: expected an ISO 3166-1 alpha-3 code of three "
            'upper-case letters, for example "BEL", "FRA" or "USA"'
        )
    from codecarbon.input import DataSource

    if code not in DataSource().get_global_energy_mix_data():
        raise MeasurementError(
            f"unknown country_iso_code {code!r}: CodeCarbon has no electricity mix for it; "
            "use the alpha-3 code of the country where the machine runs"
        )
    return code


class EnergyMeter:
    """CodeCarbon tracker around one training, which never stops the training on a failure.

    Use it as a context manager, or call :meth:`start` and then :meth:`stop` in a ``finally``
    block. When CodeCarbon fails to start or stop, the reading has None energy and the error
    text, the tracker's threads are cancelled, and no exception reaches the caller.

    Args:
        settings: Country, sampling interval, tracking mode and output folder.
    """

    def __init__(self, settings: MeterSettings):
        self.settings = settings
        self.reading: EnergyReading | None = None
        self._tracker = None
        self._timers: tuple = ()
        self._error: str | None = None
        self._start_s: float | None = None
        self._epoch_task: str | None = None

    def __enter__(self) -> EnergyMeter:
        self.start()
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.stop()

    def start(self) -> None:
        """Start measuring. A CodeCarbon failure is recorded and logged, not raised.

        Raises:
            MeasurementError: If this meter was already started; use one meter per interval.
        """
        if self._start_s is not None:
            raise MeasurementError("this EnergyMeter was already started; create a new one")
        try:
            self._tracker = _create_tracker(self.settings)
            self._timers = (self._tracker._scheduler, self._tracker._scheduler_monitor_power)
            _undecorated(type(self._tracker).start)(self._tracker)
            if self._tracker._start_time is None:
                raise RuntimeError("the tracker did not record a start time")
            # The first start in a process spends about 2 s detecting hardware, which is not
            # part of the measured interval, so the duration starts when the tracker's does.
            self._start_s = self._tracker._start_time
        except Exception as error:
            self._start_s = time.perf_counter()
            self._record_failure("start", error)

    def stop(self) -> EnergyReading:
        """Stop measuring and return the reading, which is also kept in :attr:`reading`."""
        duration_s = time.perf_counter() - self._start_s if self._start_s is not None else 0.0
        data = None
        try:
            if self._tracker is not None and self._error is None:
                _undecorated(type(self._tracker).stop)(self._tracker)
                data = self._tracker.final_emissions_data
        except Exception as error:
            self._record_failure("stop", error)
        finally:
            self._release_tracker()
        self.reading = _reading_from(data, duration_s, self._error)
        return self.reading

    def start_epoch(self) -> None:
        """Open a CodeCarbon task for one epoch, unless the tracker is not running."""
        if self._tracker is None or self._error is not None:
            return
        try:
            self._epoch_task = f"epoch-{time.perf_counter_ns()}"
            self._tracker.start_task(self._epoch_task)
        except Exception as error:
            self._epoch_task = None
            logger.warning("CodeCarbon failed to start an epoch task: %s", error)

    def stop_epoch(self) -> float | None:
        """Close the epoch task and return its energy in kWh, or None when unavailable."""
        if self._epoch_task is None or self._tracker is None:
            return None
        task, self._epoch_task = self._epoch_task, None
        try:
            data = self._tracker.stop_task(task)
        except Exception as error:
            logger.warning("CodeCarbon failed to stop an epoch task: %s", error)
            self._abandon_task(task)
            return None
        return None if data is None else data.energy_consumed

    def _abandon_task(self, task: str) -> None:
        # CodeCarbon's stop() stops every active task again and reports every task, which
        # would fail the whole reading. Forgetting the task and resuming the paused sampling
        # keeps the total.
        try:
            self._tracker._tasks.pop(task, None)
            self._tracker._active_task = None
            self._tracker._resume_scheduler_if_paused_by_task()
        except Exception as error:
            logger.warning("could not abandon the CodeCarbon epoch task: %s", error)

    def _record_failure(self, stage: str, error: Exception) -> None:
        self._error = f"CodeCarbon failed to {stage}: {type(error).__name__}: {error}"
        logger.warning("%s; energy is recorded as missing", self._error)
        self._release_tracker()

    def _release_tracker(self) -> None:
        # PeriodicScheduler.stop can miss a timer that is firing at that moment, because the
        # firing timer schedules its successor; cancelling the current timer again ends it.
        for scheduler in self._timers:
            _cancel_scheduler(scheduler)
        self._timers = ()
        self._tracker = None


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
        hardware = _describe_hardware(meter._tracker)
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
        "ram_total_gb": detected.get("ram_total_size"),
    }


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
        from codecarbon import __version__
    except ImportError:
        return None
    return __version__


def _create_tracker(settings: MeterSettings):
    from codecarbon import OfflineEmissionsTracker
    from codecarbon.output_methods.base_output import OutputMethod

    # CodeCarbon logs at INFO level before it applies log_level, so set the level first.
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    output = {"output_methods": []}
    if settings.output_dir is not None:
        output = {"output_methods": [OutputMethod.CSV], "output_dir": settings.output_dir}
    tracker = OfflineEmissionsTracker.__new__(OfflineEmissionsTracker)
    _undecorated(OfflineEmissionsTracker.__init__)(
        tracker,
        country_iso_code=settings.country_iso_code,
        measure_power_secs=settings.measure_power_secs,
        tracking_mode=settings.tracking_mode,
        log_level="error",
        allow_multiple_runs=True,
        **output,
    )
    return tracker


def _undecorated(function):
    """Return the function under CodeCarbon's exception-swallowing decorator, if it has one."""
    return getattr(function, "__wrapped__", function)


def _cancel_scheduler(scheduler) -> None:
    if scheduler is None:
        return
    scheduler.stop()
    for _ in range(3):
        timer = scheduler._timer
        if timer is None:
            return
        timer.cancel()
        if timer is not threading.current_thread():
            timer.join(timeout=5.0)
        if scheduler._timer is timer:
            return


def _reading_from(data, duration_s: float, error: str | None) -> EnergyReading:
    if data is None:
        return EnergyReading(
            duration_s=duration_s, error=error or "CodeCarbon returned no measurement"
        )
    emissions_rate = data.emissions / duration_s if duration_s > 0 else None
    return EnergyReading(
        duration_s=duration_s,
        energy_kwh=data.energy_consumed,
        cpu_energy_kwh=data.cpu_energy,
        gpu_energy_kwh=data.gpu_energy,
        ram_energy_kwh=data.ram_energy,
        emissions_kg=data.emissions,
        emissions_rate_kg_per_s=emissions_rate,
        cpu_power_w=data.cpu_power,
        gpu_power_w=data.gpu_power,
        ram_power_w=data.ram_power,
        error=error,
    )
