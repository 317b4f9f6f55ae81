"""Tests of cnngen.training: real Keras trainings on scikit-learn digits with a real tracker."""

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
from codecarbon import OfflineEmissionsTracker

from cnngen.errors import MeasurementError, ParameterError, TrainingError
from cnngen.store import ResultsStore
from cnngen.training import TrainingConfig, run_batch, train_architecture

FAST = TrainingConfig(epochs=1, measure_power_secs=0.5, idle_duration_s=0.5)


@pytest.fixture(scope="module")
def digits():
    """Digits as 8x8x1 images in [0, 1], split 60/20/20 with stratification."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / 16.0).astype("float32")[..., np.newaxis]
    y = bunch.target.astype("int64")
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.25, random_state=0, stratify=y_rest
    )
    info = SimpleNamespace(name="digits", input_shape=(8, 8, 1), num_classes=10)
    return SimpleNamespace(
        info=info,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        summary=lambda: {"dataset": "digits", "num_train": len(y_train)},
    )


def build_small(input_shape, num_classes):
    import keras

    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


def build_nan(input_shape, num_classes):
    """A model whose every output, and so its loss, is NaN."""
    import keras

    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Lambda(lambda t: t * float("nan")),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


def build_constant(input_shape, num_classes):
    """A model that cannot learn: frozen zero weights give the same output for every image."""
    import keras

    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(
                num_classes, activation="softmax", trainable=False, kernel_initializer="zeros"
            ),
        ]
    )


def build_raising(input_shape, num_classes):
    raise ValueError("unknown layer 'conv9'")


def item(arch_id: str, **fields):
    return SimpleNamespace(
        arch_id=arch_id,
        phrase=f"input conv flatten dense output # {arch_id}",
        seed=1,
        params=None,
        flops=100,
        **fields,
    )


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
def test_codecarbon_stop_failure_recorded(digits, monkeypatch, tmp_path):
    def fail(self):
        raise OSError("counter vanished")

    monkeypatch.setattr(OfflineEmissionsTracker, "_prepare_emissions_data", fail)
    with ResultsStore(tmp_path / "results.sqlite") as store:
        run_batch(
            [item("a1")], digits, FAST, store, build_model_for=lambda _: build_small, progress=False
        )
        row = store.trainings_frame().iloc[0]

    assert row["status"] == "ok"
    assert np.isnan(row["energy_kwh"])
    assert "CodeCarbon failed to stop: OSError: counter vanished" in row["energy_error"]


@pytest.mark.slow
def test_batch_failure_continues(digits, tmp_path):
    builders = {"a1": build_small, "a2": build_raising, "a3": build_small}
    with ResultsStore(tmp_path / "results.sqlite") as store:
        results = run_batch(
            [item("a1"), item("a2"), item("a3")],
            digits,
            FAST,
            store,
            build_model_for=lambda it: builders[it.arch_id],
            progress=False,
        )
        frame = store.trainings_frame().set_index("arch_id")
        metadata = store.run_metadata()

    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert frame.loc["a2", "status"] == "failed"
    assert frame.loc["a2", "error"] == "ValueError: unknown layer 'conv9'"
    assert frame.loc["a3", "status"] == "ok"
    assert frame.loc["a1", "dataset"] == "digits"
    assert frame.loc["a1", "num_layers"] == 3
    assert metadata["training_config"]["epochs"] == 1
    assert metadata["dataset"] == {"dataset": "digits", "num_train": len(digits.y_train)}
    assert metadata["disclosure"]["country_iso_code"] == "BEL"
    assert metadata["idle_power_w"] > 0


@pytest.mark.slow
def test_batch_builder_raising_is_failed(digits, tmp_path):
    def no_builder(it):
        raise KeyError(it.arch_id)

    with ResultsStore(tmp_path / "results.sqlite") as store:
        results = run_batch(
            [item("a1")], digits, FAST, store, build_model_for=no_builder, progress=False
        )

    assert results[0].status == "failed"
    assert results[0].error == "KeyError: 'a1'"


@pytest.mark.slow
def test_batch_resume_skips_finished(digits, tmp_path):
    path = tmp_path / "results.sqlite"
    built = []

    def builder_for(it):
        built.append(it.arch_id)
        return build_raising if it.arch_id == "a2" else build_small

    with ResultsStore(path) as store:
        run_batch(
            [item("a1"), item("a2")],
            digits,
            FAST,
            store,
            build_model_for=builder_for,
            progress=False,
        )
    with ResultsStore(path) as store:
        resumed = run_batch(
            [item("a1"), item("a2"), item("a3")],
            digits,
            FAST,
            store,
            build_model_for=builder_for,
            progress=False,
        )
        retried = run_batch(
            [item("a1"), item("a2"), item("a3")],
            digits,
            FAST,
            store,
            build_model_for=builder_for,
            retry_failed=True,
            progress=False,
        )
        finished = store.finished_ids()

    assert [r.arch_id for r in resumed] == ["a3"]
    assert [r.arch_id for r in retried] == ["a2"]
    assert built == ["a1", "a2", "a3", "a2"]
    assert finished == {"a1", "a2", "a3"}


def test_batch_nothing_to_do(digits, tmp_path):
    with ResultsStore(tmp_path / "results.sqlite") as store:
        results = run_batch([], digits, FAST, store, build_model_for=lambda _: build_small)
        metadata = store.run_metadata()

    assert results == []
    assert metadata == {}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config_changes", "summary", "message"),
    [
        ({"epochs": 2}, None, "another training_config \\(epochs 1 stored, 2 now\\)"),
        ({"seed": 5}, None, "another training_config \\(seed 0 stored, 5 now\\)"),
        ({}, {"dataset": "digits", "num_train": 1}, "another dataset \\(num_train"),
    ],
)
def test_batch_resume_rejects_other_setup(digits, tmp_path, config_changes, summary, message):
    changed_data = SimpleNamespace(**vars(digits))
    if summary is not None:
        changed_data.summary = lambda: summary
    with ResultsStore(tmp_path / "results.sqlite") as store:
        run_batch([item("a1")], digits, FAST, store, build_model_for=lambda _: build_small)
        with pytest.raises(TrainingError, match=message):
            run_batch(
                [item("a2")],
                changed_data,
                dataclasses.replace(FAST, **config_changes),
                store,
                build_model_for=lambda _: build_small,
            )


@pytest.mark.slow
def test_batch_resume_allows_other_verbosity(digits, tmp_path):
    with ResultsStore(tmp_path / "results.sqlite") as store:
        run_batch([item("a1")], digits, FAST, store, build_model_for=lambda _: build_small)
        resumed = run_batch(
            [item("a2")],
            digits,
            dataclasses.replace(FAST, verbose=2, idle_duration_s=3.0),
            store,
            build_model_for=lambda _: build_small,
        )

    assert [result.status for result in resumed] == ["ok"]
