"""Tests of cnngen.inference with real Keras models and a real CodeCarbon tracker."""

import numpy as np
import pytest
from codecarbon import OfflineEmissionsTracker

from cnngen.energy import MeterSettings
from cnngen.inference import InferenceSettings, measure_inference

METER = MeterSettings(country_iso_code="BEL", measure_power_secs=0.5)


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(0)
    built = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    yield built
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((40, 8, 8, 1), dtype=np.float32)


def test_latency_and_energy(model, images):
    settings = InferenceSettings(
        batch_size=16, min_batches=10, warmup_batches=2, min_duration_s=0.5
    )
    cost = measure_inference(model, images, settings, METER)

    assert cost.error is None
    assert cost.batch_size == 16
    assert cost.num_batches >= 10
    assert cost.duration_s >= 0.5
    assert 0 < cost.latency_s < cost.duration_s
    assert cost.latency_per_image_s == pytest.approx(cost.latency_s / 16)
    assert cost.energy_kwh is not None
    assert cost.energy_kwh > 0
    assert cost.energy_per_image_kwh == pytest.approx(cost.energy_kwh / 16)


def test_batch_larger_than_images(model, images):
    settings = InferenceSettings(batch_size=100, min_batches=3, warmup_batches=1, min_duration_s=0)
    cost = measure_inference(model, images[:7], settings, METER)

    assert cost.batch_size == 100
    assert cost.num_batches == 3
    assert cost.latency_s > 0


def test_codecarbon_failure_gives_null_energy(model, images, monkeypatch):
    def fail(self):
        raise RuntimeError("RAPL unreadable")

    monkeypatch.setattr(OfflineEmissionsTracker, "_ensure_hardware_ready", fail)
    settings = InferenceSettings(batch_size=8, min_batches=3, warmup_batches=1, min_duration_s=0)
    cost = measure_inference(model, images, settings, METER)

    assert cost.latency_s > 0
    assert cost.energy_kwh is None
    assert cost.energy_per_image_kwh is None
    assert cost.error == "CodeCarbon failed to start: RuntimeError: RAPL unreadable"


def test_gpu_without_gpu_energy_is_null(model, images):
    # On this CPU machine CodeCarbon reads no GPU, as a GPU run without NVML does.
    settings = InferenceSettings(batch_size=8, min_batches=3, warmup_batches=1, min_duration_s=0)
    cost = measure_inference(model, images, settings, METER, device_kind="GPU")

    assert cost.latency_s > 0
    assert cost.energy_kwh is None
    assert cost.error == ("GPU energy zero during inference on a GPU; CodeCarbon did not read it")
