"""Tests of cnngen.training: real Keras trainings on scikit-learn digits with a real tracker."""

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from codecarbon import OfflineEmissionsTracker
from fixtures_training import (
    FAST,
    build_constant,
    build_nan,
    build_raising,
    build_small,
    load_digits_splits,
)

from cnngen import devices
from cnngen.devices import TrainingDevice
from cnngen.errors import MeasurementError, ParameterError, TrainingError
from cnngen.inference import InferenceSettings
from cnngen.store import ResultsStore
from cnngen.training import TrainingConfig, float32_outputs, train_architecture

TESTS_DIR = Path(__file__).parent
FAKE_GPU = TrainingDevice(kind="GPU", gpu_name="Fake GPU", num_visible_gpus=1)


@pytest.fixture(scope="module")
def digits():
    return load_digits_splits()


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"epochs": 0}, ParameterError, "invalid training parameter epochs=0"),
        ({"epochs": 1.5}, ParameterError, "invalid training parameter epochs=1.5"),
        ({"batch_size": -4}, ParameterError, "invalid training parameter batch_size=-4"),
        ({"learning_rate": 0.0}, ParameterError, "invalid training parameter learning_rate=0.0"),
        ({"seed": -1}, ParameterError, "invalid training parameter seed=-1"),
        ({"patience": True}, ParameterError, "invalid training parameter patience=True"),
        ({"idle_duration_s": 0}, ParameterError, "invalid training parameter idle_duration_s=0"),
        ({"chance_margin": -0.1}, ParameterError, "invalid training parameter chance_margin"),
        ({"country_iso_code": "be"}, MeasurementError, "invalid country_iso_code 'be'"),
        ({"measure_power_secs": 0}, MeasurementError, "invalid measure_power_secs 0"),
        ({"tracking_mode": "gpu"}, MeasurementError, "invalid tracking_mode 'gpu'"),
        ({"mixed_precision": "yes"}, ParameterError, "mixed_precision='yes': expected True or"),
        ({"deterministic": 1}, ParameterError, "deterministic=1: expected True or False"),
        ({"inference_batches": -1}, ParameterError, "parameter inference_batches=-1"),
        ({"inference_warmup_batches": 0.5}, ParameterError, "inference_warmup_batches=0.5"),
        ({"inference_duration_s": -1.0}, ParameterError, "inference_duration_s=-1.0"),
    ],
)
def test_config_invalid(changes, error, message):
    with pytest.raises(error, match=message):
        TrainingConfig(**changes)


def test_config_defaults():
    config = TrainingConfig()

    assert (config.epochs, config.batch_size, config.learning_rate) == (1, 64, 1e-3)
    assert config.country_iso_code == "BEL"
    assert config.meter_settings().measure_power_secs == 1.0
    assert config.meter_settings().gpu_ids is None
    assert config.meter_settings(gpu_ids=(1,)).gpu_ids == (1,)
    assert config.mixed_precision is False
    assert config.inference_settings() == InferenceSettings(
        batch_size=64, min_batches=30, warmup_batches=3, min_duration_s=2.0
    )


@pytest.mark.slow
def test_train_one_epoch(digits):
    result = train_architecture(build_small, digits, FAST, arch_id="small")

    assert result.status == "ok", result.error
    assert result.error is None
    assert result.epochs_run == 1
    assert 0.0 <= result.test_accuracy <= 1.0
    assert 0.0 <= result.train_accuracy <= 1.0
    assert 0.0 <= result.val_accuracy <= 1.0
    assert math.isfinite(result.test_loss)
    assert result.num_layers == 3
    assert result.params == (3 * 3 * 1 * 8 + 8) + (6 * 6 * 8 * 10 + 10)
    assert result.training_time_s > 0
    assert result.started_at <= result.finished_at


@pytest.mark.slow
def test_train_measures_energy(digits):
    result = train_architecture(
        build_small, digits, dataclasses.replace(FAST, epochs=2), arch_id="small"
    )
    energy = result.energy

    assert energy.error is None
    assert energy.energy_kwh is not None
    assert energy.energy_kwh >= 0
    assert energy.emissions_kg >= 0
    assert energy.duration_s == result.training_time_s
    assert [row.epoch for row in result.epoch_rows] == [1, 2]
    for row in result.epoch_rows:
        assert row.energy_kwh is not None
        assert row.energy_kwh >= 0
        assert row.duration_s > 0
    assert sum(row.energy_kwh for row in result.epoch_rows) <= energy.energy_kwh * (1 + 1e-9)


@pytest.mark.slow
def test_train_clears_keras_session(digits):
    train_architecture(build_small, digits, FAST, arch_id="small")
    model = build_small((8, 8, 1), 10)

    # Layer names restart from "conv2d" only after keras.backend.clear_session().
    assert model.layers[0].name == "conv2d"


@pytest.mark.slow
def test_train_same_seed_same_metrics(digits):
    first = train_architecture(build_small, digits, FAST, arch_id="a")
    second = train_architecture(build_small, digits, FAST, arch_id="b")

    assert first.test_accuracy == second.test_accuracy
    assert first.test_loss == second.test_loss


def test_build_failure_is_failed(digits):
    result = train_architecture(build_raising, digits, FAST, arch_id="broken")

    assert result.status == "failed"
    assert result.error == "ValueError: unknown layer 'conv9'"
    assert result.energy is None
    assert result.test_accuracy is None


@pytest.mark.slow
def test_nan_loss_is_diverged(digits):
    config = dataclasses.replace(FAST, epochs=3)
    result = train_architecture(build_nan, digits, config, arch_id="nan")

    assert result.status == "diverged"
    assert result.epochs_run == 1
    assert math.isnan(result.epoch_rows[0].train_loss)
    assert result.energy.energy_kwh is not None


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights")
def test_chance_accuracy_is_diverged(digits):
    result = train_architecture(build_constant, digits, FAST, arch_id="constant")

    assert math.isfinite(result.test_loss)
    assert result.test_accuracy <= 0.11
    assert result.status == "diverged"


@pytest.mark.slow
def test_codecarbon_start_failure_keeps_training(digits, monkeypatch):
    def fail(self):
        raise RuntimeError("RAPL unreadable")

    monkeypatch.setattr(OfflineEmissionsTracker, "_ensure_hardware_ready", fail)
    result = train_architecture(build_small, digits, FAST, arch_id="small")

    assert result.status == "ok"
    assert result.energy.energy_kwh is None
    assert result.energy.error == "CodeCarbon failed to start: RuntimeError: RAPL unreadable"
    assert result.epoch_rows[0].energy_kwh is None
    assert result.training_time_s > 0


@pytest.mark.slow
def test_train_measures_inference(digits):
    result = train_architecture(build_small, digits, FAST, arch_id="small")
    inference = result.inference

    assert inference.error is None
    assert inference.batch_size == FAST.batch_size
    assert inference.num_batches >= FAST.inference_batches
    assert inference.latency_s > 0
    assert inference.latency_per_image_s == pytest.approx(inference.latency_s / FAST.batch_size)
    assert inference.energy_kwh > 0
    assert result.device == "CPU"
    assert result.gpu_energy_flag is None


def test_failed_training_has_no_inference(digits):
    result = train_architecture(build_raising, digits, FAST, arch_id="broken")

    assert result.inference is None


@pytest.mark.slow
def test_train_inference_turned_off(digits):
    config = dataclasses.replace(FAST, inference_batches=0)
    result = train_architecture(build_small, digits, config, arch_id="small")

    assert result.status == "ok"
    assert result.inference is None


@pytest.mark.slow
def test_train_seed_argument(digits):
    config = dataclasses.replace(FAST, inference_batches=0)
    default = train_architecture(build_small, digits, config, arch_id="a")
    seeded = train_architecture(build_small, digits, config, arch_id="b", seed=12345)

    assert default.training_seed == config.seed
    assert seeded.training_seed == 12345
    assert seeded.test_loss != default.test_loss


@pytest.mark.parametrize("seed", [-1, 1.5, "3"])
def test_train_invalid_seed(digits, seed):
    with pytest.raises(ParameterError, match="invalid training parameter seed="):
        train_architecture(build_small, digits, FAST, arch_id="a", seed=seed)


@pytest.mark.slow
def test_mixed_precision_training(digits):
    import keras

    config = dataclasses.replace(FAST, mixed_precision=True, inference_batches=2)
    result = train_architecture(build_small, digits, config, arch_id="mixed")

    assert result.status in ("ok", "diverged"), result.error
    assert result.mixed_precision is True
    assert math.isfinite(result.test_loss)
    assert result.inference.latency_s > 0
    assert keras.mixed_precision.global_policy().name == "float32"


def test_float32_outputs_of_emitted_model(tmp_path):
    import keras

    from cnngen.keras_source import load_build_model, write_source
    from cnngen.sampling import sample_resolved

    write_source(sample_resolved(3, (8, 8, 1), 10), tmp_path / "a.py")
    build_model = load_build_model(tmp_path / "a.py")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        original = build_model((8, 8, 1), 10)
        model = float32_outputs(original)
        predictions = model.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()

    assert original.outputs[0].dtype == "float16"
    assert model.outputs[0].dtype == "float32"
    assert model.layers[-1].dtype_policy.name == "float32"
    assert model.layers[-2].dtype_policy.name == "mixed_float16"
    assert model.count_params() == original.count_params()
    assert predictions.dtype == np.float32
    assert np.allclose(predictions.sum(axis=1), 1.0, atol=1e-3)


def test_float32_outputs_rejects_subclassed_model():
    import keras

    class Doubling(keras.Model):
        def call(self, inputs):
            return inputs * 2

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = Doubling()
        model(np.zeros((1, 4), "float32"))
        with pytest.raises(TrainingError, match="train this model with mixed_precision=False"):
            float32_outputs(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()


@pytest.mark.slow
def test_gpu_run_without_gpu_energy_flagged(digits, monkeypatch, tmp_path):
    # A GPU is faked: CodeCarbon on this CPU machine then reports 0 kWh of GPU energy, which
    # is what a GPU machine without NVML reports too.
    monkeypatch.setattr(devices, "training_device", lambda: FAKE_GPU)
    result = train_architecture(build_small, digits, FAST, arch_id="fake-gpu")
    with ResultsStore(tmp_path / "results.sqlite") as store:
        store.add_architecture(SimpleNamespace(arch_id="fake-gpu", phrase="input output"))
        store.record_training(result)
        row = store.trainings_frame().iloc[0]

    assert result.device == "GPU"
    assert result.gpu_energy_flag == "zero"
    assert result.energy.gpu_energy_kwh is None
    assert result.energy.gpu_power_w is None
    assert result.energy.energy_kwh > 0
    assert result.inference.energy_kwh is None
    assert "GPU energy zero" in result.inference.error
    assert row["gpu_energy_flag"] == "zero"
    assert np.isnan(row["gpu_energy_kwh"])
    assert row["device"] == "GPU"


@pytest.mark.slow
def test_gpu_run_with_failed_reading_flagged(digits, monkeypatch):
    def fail(self):
        raise RuntimeError("NVML unreadable")

    monkeypatch.setattr(devices, "training_device", lambda: FAKE_GPU)
    monkeypatch.setattr(OfflineEmissionsTracker, "_ensure_hardware_ready", fail)
    config = dataclasses.replace(FAST, inference_batches=0)
    result = train_architecture(build_small, digits, config, arch_id="fake-gpu")

    assert result.status == "ok"
    assert result.gpu_energy_flag == "missing"
    assert result.energy.energy_kwh is None


DETERMINISM_SCRIPT = """
import dataclasses, json, sys
sys.path.insert(0, {tests_dir!r})
from fixtures_training import FAST, build_dropout, load_digits_splits
from cnngen.training import train_architecture

config = dataclasses.replace(FAST, epochs=2, deterministic=True, inference_batches=0)
result = train_architecture(build_dropout, load_digits_splits(), config, arch_id="a", seed=11)
rows = [[row.train_loss, row.val_loss, row.train_accuracy] for row in result.epoch_rows]
print(json.dumps({{
    "status": result.status, "test_accuracy": result.test_accuracy,
    "test_loss": result.test_loss, "train_loss": result.train_loss, "epochs": rows,
}}))
"""


@pytest.mark.slow
def test_deterministic_training_repeats_exactly():
    # Op determinism stays on for the rest of a process, so each training has its own.
    script = DETERMINISM_SCRIPT.format(tests_dir=str(TESTS_DIR))
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first, second = outputs

    assert first["status"] == "ok"
    assert first["test_accuracy"] == second["test_accuracy"]
    assert first["test_loss"] == second["test_loss"]
    assert first["train_loss"] == second["train_loss"]
    assert first["epochs"] == second["epochs"]
