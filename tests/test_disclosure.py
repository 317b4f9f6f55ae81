"""Tests of cnngen.disclosure with a real CodeCarbon tracker; faults injected with monkeypatch."""

import codecarbon
import pytest
from codecarbon import OfflineEmissionsTracker

from cnngen.disclosure import collect_disclosure, measure_idle_power
from cnngen.energy import MeterSettings
from cnngen.errors import MeasurementError

KNOWN_CPU_SOURCES = (
    "RAPL",
    "Windows Energy Meter Interface (RAPL)",
    "Intel Power Gadget",
    "powermetrics",
    "Raspberry Pi PMIC",
    "TDP estimate (load-scaled)",
    "TDP estimate (load-scaled), generic TDP",
    "constant fallback (half of TDP)",
    "constant fallback (half of TDP), generic TDP",
)


@pytest.fixture
def settings() -> MeterSettings:
    return MeterSettings(country_iso_code="BEL", measure_power_secs=0.5)


def test_idle_power_positive(settings):
    idle_power_w = measure_idle_power(settings, duration_s=1.0)

    assert idle_power_w is not None
    assert idle_power_w > 0


@pytest.mark.parametrize("duration_s", [0, -2.0, "5"])
def test_idle_power_invalid_duration(settings, duration_s):
    with pytest.raises(MeasurementError, match="invalid idle duration"):
        measure_idle_power(settings, duration_s=duration_s)


def test_disclosure_fields(settings):
    import keras
    import tensorflow as tf

    disclosure = collect_disclosure(settings, idle_duration_s=1.0)

    assert disclosure.error is None
    assert disclosure.codecarbon_version == codecarbon.__version__
    assert disclosure.cpu_energy_source in KNOWN_CPU_SOURCES
    assert disclosure.gpu_energy_source in ("NVML", "AMD SMI", "powermetrics", "none")
    assert disclosure.ram_energy_method != "unavailable"
    assert isinstance(disclosure.energy_is_estimate, bool)
    assert isinstance(disclosure.cpu_energy_is_estimate, bool)
    assert disclosure.carbon_intensity_g_per_kwh > 0
    assert disclosure.idle_power_w > 0
    assert disclosure.country_iso_code == "BEL"
    assert disclosure.measure_power_secs == 0.5
    assert disclosure.tracking_mode == "machine"
    assert disclosure.cpu_count >= 1
    assert disclosure.tensorflow_version == tf.__version__
    assert disclosure.keras_version == keras.__version__
    assert disclosure.cuda_version == tf.sysconfig.get_build_info().get("cuda_version")
    assert disclosure.training_device == (
        "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    )
    assert disclosure.to_dict()["cpu_energy_source"] == disclosure.cpu_energy_source


def test_disclosure_when_codecarbon_fails(settings, monkeypatch):
    def fail(self):
        raise RuntimeError("no hardware")

    monkeypatch.setattr(OfflineEmissionsTracker, "_ensure_hardware_ready", fail)
    disclosure = collect_disclosure(settings, idle_duration_s=0.1)

    assert disclosure.error == "CodeCarbon failed to start: RuntimeError: no hardware"
    assert disclosure.cpu_energy_source == "unavailable"
    assert disclosure.energy_is_estimate is None
    assert disclosure.idle_power_w is None
    assert disclosure.carbon_intensity_g_per_kwh is None
    assert disclosure.gpu_ids is None


def test_disclosure_on_cpu_has_no_gpu(settings):
    disclosure = collect_disclosure(settings, idle_duration_s=0.5)

    if disclosure.training_device == "GPU":
        pytest.skip("this machine has a GPU; benchmarks/cuda_smoke.py checks GPU disclosures")
    assert disclosure.gpu_energy_source == "none"
    assert disclosure.gpu_ids is None
    assert disclosure.training_gpu_name is None
