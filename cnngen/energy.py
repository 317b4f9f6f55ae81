"""Energy measurement of trainings with CodeCarbon.

This module owns the CodeCarbon set-up (an offline tracker with an explicit country, a short
sampling interval, the GPUs to measure and no output files unless requested) and the
:class:`EnergyMeter` that measures one interval with its per-epoch readings. It leaves the
record of which sensors a run used, and the idle power, to ``cnngen.disclosure``, when a
measurement starts and stops to ``cnngen.training``, and how readings are saved to
``cnngen.store``.

Tracking mode: the default is ``"machine"``. RAPL counters and NVML read the whole CPU package
and the whole GPU whatever the mode. In ``"machine"`` mode the CPU, GPU and RAM parts of a
reading therefore describe the same thing, and the machine-wide idle power measured by
:func:`cnngen.disclosure.collect_disclosure` can be subtracted from them. ``"process"`` scales
the CPU and RAM estimates by this process's CPU time and resident memory, which suits a shared
machine where no counters exist.

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

import logging
import re
import threading
import time
from dataclasses import dataclass

from cnngen.errors import MeasurementError

logger = logging.getLogger(__name__)

TRACKING_MODES = ("machine", "process")
_COUNTRY_CODE_PATTERN = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class MeterSettings:
    """CodeCarbon settings shared by every tracker of a run.

    Attributes:
        country_iso_code: ISO 3166-1 alpha-3 code of the country whose electricity mix
            converts energy to emissions, for example "BEL" or "FRA".
        measure_power_secs: Interval between CodeCarbon's power measurements, in seconds.
        tracking_mode: "machine" (default) or "process"; see the module docstring.
        output_dir: Folder for CodeCarbon's own emissions.csv, or None to write no file.
        gpu_ids: NVML indices of the GPUs to measure, or None to let CodeCarbon choose: the
            GPUs named by ``CUDA_VISIBLE_DEVICES`` when it is set, else every GPU.
    """

    country_iso_code: str
    measure_power_secs: float = 1.0
    tracking_mode: str = "machine"
    output_dir: str | None = None
    gpu_ids: tuple[int, ...] | None = None

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
        if self.gpu_ids is not None and not (
            isinstance(self.gpu_ids, tuple)
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in self.gpu_ids)
        ):
            raise MeasurementError(
                f"invalid gpu_ids {self.gpu_ids!r}: expected None or a tuple of NVML indices "
                "(integers >= 0), for example (0,)"
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
        settings: Country, sampling interval, tracking mode, GPUs and output folder.
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

    @property
    def tracker(self):
        """The running CodeCarbon tracker, or None before the start, after the stop or a failure."""
        return self._tracker

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


def _create_tracker(settings: MeterSettings):
    from codecarbon import OfflineEmissionsTracker
    from codecarbon.output_methods.base_output import OutputMethod

    # CodeCarbon logs at INFO level before it applies log_level, so set the level first.
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    options = {"output_methods": []}
    if settings.output_dir is not None:
        options = {"output_methods": [OutputMethod.CSV], "output_dir": settings.output_dir}
    if settings.gpu_ids is not None:
        options["gpu_ids"] = list(settings.gpu_ids)
    tracker = OfflineEmissionsTracker.__new__(OfflineEmissionsTracker)
    _undecorated(OfflineEmissionsTracker.__init__)(
        tracker,
        country_iso_code=settings.country_iso_code,
        measure_power_secs=settings.measure_power_secs,
        tracking_mode=settings.tracking_mode,
        log_level="error",
        allow_multiple_runs=True,
        **options,
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
