"""Faults inside a batch: each leaves a record, no leftovers, and the batch goes on.

Every case trains a real batch of two architectures on scikit-learn digits with a real
CodeCarbon tracker and a real results store. The fault hits the first architecture only (the
injected ones through monkeypatch), and the second must then train normally.
tests/test_training.py and tests/test_batch.py check a failing builder, one NaN training and
one CodeCarbon failure on their own. This table repeats such faults only to add the checks
that those tests lack: the next architecture, leftover threads and CodeCarbon's lock file.
"""

import csv
import math
import threading
from dataclasses import dataclass

import codecarbon.lock
import pandas as pd
import pytest
from codecarbon import OfflineEmissionsTracker
from fixtures_training import NO_INFERENCE, build_nan, build_small, item, load_digits_splits
from tqdm._monitor import TMonitor

from cnngen.batch import run_batch
from cnngen.store import ResultsStore
from cnngen.training import train_architecture


@pytest.fixture(scope="module")
def digits():
    return load_digits_splits()


@dataclass
class Fault:
    """The architecture that an injected fault hits.

    run_batch builds each model just before training it, so the builder switches the fault on
    and off.
    """

    target: str = "a1"
    active: bool = False

    def builder_for(self, build_faulty):
        def builder(item):
            self.active = item.arch_id == self.target
            return build_faulty if self.active else build_small

        return builder


def build_wrong_input(input_shape, num_classes):
    """A model for 28x28 images, so that fitting it on 8x8 digits raises inside fit."""
    return build_small((28, 28, 1), num_classes)


def inject_nothing(monkeypatch, fault):
    pass


def inject_out_of_memory(monkeypatch, fault):
    import keras
    import tensorflow as tf

    fit = keras.Model.fit

    def fit_or_oom(self, *args, **kwargs):
        if fault.active:
            raise tf.errors.ResourceExhaustedError(
                None, None, "OOM when allocating tensor with shape[64,8,6,6]"
            )
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit_or_oom)


def inject_tracker_failure(method, exception):
    def inject(monkeypatch, fault):
        original = getattr(OfflineEmissionsTracker, method)

        def failing(self, *args, **kwargs):
            if fault.active:
                raise exception
            return getattr(original, "__wrapped__", original)(self, *args, **kwargs)

        monkeypatch.setattr(OfflineEmissionsTracker, method, failing)

    return inject


# Builder of the faulty architecture, injection, expected status and error prefix, and whether
# the total and the per-epoch energy are measured. When CodeCarbon fails to stop, the epochs
# closed before the failure keep their energy, but the total is missing.
FAULTS = [
    pytest.param(
        build_wrong_input,
        inject_nothing,
        "failed",
        "ValueError: ",
        True,
        True,
        id="exception-in-fit",
    ),
    pytest.param(build_nan, inject_nothing, "diverged", None, True, True, id="nan-loss"),
    pytest.param(
        build_small,
        inject_out_of_memory,
        "failed",
        "ResourceExhaustedError: OOM when allocating tensor",
        True,
        True,
        id="out-of-memory",
    ),
    pytest.param(
        build_small,
        inject_tracker_failure("start", RuntimeError("RAPL unreadable")),
        "ok",
        None,
        False,
        False,
        id="codecarbon-start",
    ),
    pytest.param(
        build_small,
        inject_tracker_failure("stop", OSError("counter vanished")),
        "ok",
        None,
        False,
        True,
        id="codecarbon-stop",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("build_faulty", "inject", "status", "error", "measured", "epochs_measured"), FAULTS
)
def test_fault_recorded_and_batch_continues(
    digits, monkeypatch, tmp_path, build_faulty, inject, status, error, measured, epochs_measured
):
    lock_file = tmp_path / ".codecarbon.lock"
    monkeypatch.setattr(codecarbon.lock, "LOCKFILE", str(lock_file))
    fault = Fault()
    inject(monkeypatch, fault)
    threads_before = set(threading.enumerate())

    with ResultsStore(tmp_path / "results.sqlite") as store:
        results = run_batch(
            [item("a1"), item("a2")],
            digits,
            NO_INFERENCE,
            store,
            build_model_for=fault.builder_for(build_faulty),
            progress=False,
        )
        frame = store.trainings_frame().set_index("arch_id")
        epochs = store.epochs_frame()
        problems = store.integrity_check()
        with open(store.export_csv(tmp_path / "results.csv"), newline="", encoding="utf-8") as f:
            csv_rows = {row["arch_id"]: row for row in csv.DictReader(f)}
    # tqdm's monitor thread outlives progress bars on purpose; every other new thread is a leak.
    new_threads = [
        t.name
        for t in threading.enumerate()
        if t not in threads_before and not isinstance(t, TMonitor)
    ]

    assert [result.arch_id for result in results] == ["a1", "a2"]
    faulty, healthy = frame.loc["a1"], frame.loc["a2"]
    assert faulty["status"] == status
    if error is None:
        assert pd.isna(faulty["error"])
    else:
        assert faulty["error"].startswith(error)
    if measured:
        assert faulty["energy_kwh"] > 0
    else:
        assert math.isnan(faulty["energy_kwh"])
        assert faulty["energy_error"].startswith("CodeCarbon failed to")
        assert csv_rows["a1"]["energy_kwh"] == ""
        assert csv_rows["a1"]["emissions_kg"] == ""
    if not epochs_measured:
        assert epochs.loc[epochs["arch_id"] == "a1", "energy_kwh"].isna().all()
    assert healthy["status"] == "ok"
    assert healthy["energy_kwh"] > 0
    assert new_threads == []
    assert not lock_file.exists()
    assert problems == []


def test_stored_error_is_plain_text(digits):
    result = train_architecture(build_wrong_input, digits, NO_INFERENCE, arch_id="a1")

    assert result.status == "failed"
    assert "\x1b[" not in result.error
    assert "\n\n" not in result.error
