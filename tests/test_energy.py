"""Tests of cnngen.energy with a real CodeCarbon tracker; faults are injected with monkeypatch."""

import threading
import time

import codecarbon
import codecarbon.lock
import pytest
from codecarbon import OfflineEmissionsTracker

from cnngen.energy import EnergyMeter, MeterSettings, validate_country_iso_code
from cnngen.errors import MeasurementError


def tracker_timers() -> list[threading.Thread]:
    """Return the live timer threads, which is how CodeCarbon schedules its measurements."""
    return [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()]


def busy_for(duration_s: float) -> int:
    """Keep one core busy for about duration_s seconds."""
    count = 0
    end = time.perf_counter() + duration_s
    while time.perf_counter() < end:
        count += 1
    return count


@pytest.fixture
def settings() -> MeterSettings:
    return MeterSettings(country_iso_code="BEL", measure_power_secs=0.5)


@pytest.mark.parametrize("code", ["BEL", "FRA", "USA", "DEU"])
def test_country_code_valid(code):
    assert validate_country_iso_code(code) == code


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("bel", "invalid country_iso_code 'bel'"),
        ("BE", "invalid country_iso_code 'BE'"),
        ("BELG", "invalid country_iso_code 'BELG'"),
        (" BEL", "invalid country_iso_code ' BEL'"),
        (56, "invalid country_iso_code 56"),
        (None, "invalid country_iso_code None"),
        ("XYZ", "unknown country_iso_code 'XYZ'"),
    ],
)
def test_country_code_invalid(code, message):
    with pytest.raises(MeasurementError, match=message):
        MeterSettings(country_iso_code=code)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("measure_power_secs", 0, "invalid measure_power_secs 0"),
        ("measure_power_secs", -1.0, "invalid measure_power_secs -1.0"),
        ("measure_power_secs", "1", "invalid measure_power_secs '1'"),
        ("measure_power_secs", True, "invalid measure_power_secs True"),
        ("tracking_mode", "node", "invalid tracking_mode 'node'"),
        ("gpu_ids", [0], "invalid gpu_ids \\[0\\]"),
        ("gpu_ids", (-1,), "invalid gpu_ids \\(-1,\\)"),
        ("gpu_ids", (True,), "invalid gpu_ids \\(True,\\)"),
    ],
)
def test_settings_invalid(field, value, message):
    with pytest.raises(MeasurementError, match=message):
        MeterSettings(country_iso_code="BEL", **{field: value})


def test_meter_passes_gpu_ids(monkeypatch):
    settings = MeterSettings(country_iso_code="BEL", measure_power_secs=0.5, gpu_ids=(0,))
    with EnergyMeter(settings) as meter:
        configured = meter.tracker.get_detected_hardware()["gpu_ids"]
        busy_for(0.2)

    assert configured == [0]
    assert meter.reading.error is None


def test_meter_reads_energy(settings):
    with EnergyMeter(settings) as meter:
        busy_for(1.0)
    reading = meter.reading

    assert reading.error is None
    assert reading.duration_s >= 1.0
    assert reading.energy_kwh is not None
    assert reading.energy_kwh > 0
    for part in (reading.cpu_energy_kwh, reading.gpu_energy_kwh, reading.ram_energy_kwh):
        assert part is not None
        assert part >= 0
    assert reading.emissions_kg > 0
    assert reading.emissions_rate_kg_per_s == pytest.approx(
        reading.emissions_kg / reading.duration_s
    )
    assert tracker_timers() == []


def test_meter_epoch_energy_within_total(settings):
    epoch_energies = []
    with EnergyMeter(settings) as meter:
        for _ in range(3):
            meter.start_epoch()
            busy_for(0.4)
            epoch_energies.append(meter.stop_epoch())

    assert all(energy is not None and energy > 0 for energy in epoch_energies)
    # Epoch tasks are differences of the tracker's cumulative energy, so they fit in the total.
    assert sum(epoch_energies) <= meter.reading.energy_kwh * (1 + 1e-9)
    assert meter.reading.duration_s >= 1.2


def test_meter_started_twice(settings):
    with EnergyMeter(settings) as meter:
        with pytest.raises(MeasurementError, match="already started; create a new one"):
            meter.start()


def test_meter_epoch_without_start_returns_none(settings):
    meter = EnergyMeter(settings)
    meter.start_epoch()
    assert meter.stop_epoch() is None


@pytest.mark.parametrize(
    ("method", "stage"),
    [
        ("_initialize_scheduler_state", "start"),
        ("_ensure_hardware_ready", "start"),
        ("_measure_power_and_energy", "start"),
    ],
)
def test_meter_start_failure_recorded(settings, monkeypatch, method, stage):
    def fail(self, *args, **kwargs):
        raise RuntimeError("sensor unreadable")

    monkeypatch.setattr(OfflineEmissionsTracker, method, fail)
    with EnergyMeter(settings) as meter:
        meter.start_epoch()
        busy_for(0.2)
        assert meter.stop_epoch() is None
    reading = meter.reading

    assert reading.energy_kwh is None
    assert reading.emissions_kg is None
    assert reading.cpu_energy_kwh is None
    assert reading.error == f"CodeCarbon failed to {stage}: RuntimeError: sensor unreadable"
    assert reading.duration_s >= 0.2
    assert tracker_timers() == []


def test_meter_stop_failure_recorded(settings, monkeypatch):
    meter = EnergyMeter(settings)
    meter.start()
    busy_for(0.2)

    def fail(self):
        raise OSError("counter vanished")

    monkeypatch.setattr(OfflineEmissionsTracker, "_prepare_emissions_data", fail)
    reading = meter.stop()

    assert reading.energy_kwh is None
    assert reading.error == "CodeCarbon failed to stop: OSError: counter vanished"
    assert tracker_timers() == []


def test_meter_epoch_failure_keeps_total(settings, monkeypatch):
    def fail(self, task_name=None):
        raise RuntimeError("task table corrupt")

    monkeypatch.setattr(OfflineEmissionsTracker, "stop_task", fail)
    with EnergyMeter(settings) as meter:
        meter.start_epoch()
        busy_for(0.2)
        assert meter.stop_epoch() is None

    assert meter.reading.error is None
    assert meter.reading.energy_kwh > 0


def test_meter_ignores_codecarbon_lock_file(settings, monkeypatch, tmp_path):
    # With allow_multiple_runs=False, CodeCarbon would measure nothing while this file exists.
    lock_path = tmp_path / ".codecarbon.lock"
    lock_path.write_text("held by another CodeCarbon process")
    monkeypatch.setattr(codecarbon.lock, "LOCKFILE", str(lock_path))
    with EnergyMeter(settings) as meter:
        busy_for(0.2)

    assert meter.reading.energy_kwh > 0
    assert lock_path.read_text() == "held by another CodeCarbon process"


def test_meter_creates_no_lock_file(settings, monkeypatch, tmp_path):
    lock_path = tmp_path / ".codecarbon.lock"
    monkeypatch.setattr(codecarbon.lock, "LOCKFILE", str(lock_path))
    with EnergyMeter(settings):
        busy_for(0.2)

    assert not lock_path.exists()


def test_meter_writes_no_files(settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with EnergyMeter(settings):
        busy_for(0.2)

    assert list(tmp_path.iterdir()) == []


def test_meter_writes_csv_when_asked(tmp_path):
    settings = MeterSettings(country_iso_code="BEL", output_dir=str(tmp_path))
    with EnergyMeter(settings):
        busy_for(0.2)

    assert (tmp_path / "emissions.csv").exists()
