"""Tests of the shipped protocols: a documented subset of fashion_mnist_cpu.yaml, run for real.

``cnngen run parameters/fashion_mnist_cpu.yaml -p num_architectures=2 -p epochs=1`` trains the
file's first two architectures on its 8,000 Fashion-MNIST training images, read from the
Debian package dataset-fashion-mnist, with every other setting of the file. The test checks
that each record has per-epoch energy and a complete measurement disclosure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cnngen.store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

# Columns that every record of a CPU run must fill: the CodeCarbon set-up and sources, the
# machine, the idle power and the software versions.
DISCLOSURE_COLUMNS = (
    "energy_is_estimate", "cpu_energy_source", "cpu_energy_is_estimate", "gpu_energy_source",
    "ram_energy_method", "codecarbon_version", "measure_power_secs", "tracking_mode",
    "country_iso_code", "carbon_intensity_g_per_kwh", "idle_power_w", "cpu_model", "cpu_count",
    "python_version", "tensorflow_version", "keras_version",
)  # fmt: skip


@pytest.fixture(scope="module")
def subset_run(tmp_path_factory):
    if not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    run_dir = tmp_path_factory.mktemp("fashion") / "run"
    command = [
        sys.executable, "-m", "cnngen.cli", "run", str(ROOT / "parameters/fashion_mnist_cpu.yaml"),
        "--output", str(run_dir), "-p", "num_architectures=2", "-p", "epochs=1",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    with ResultsStore(run_dir / "results.sqlite", read_only=True) as store:
        return store.trainings_frame(), store.epochs_frame(), store.run_metadata()


@pytest.mark.slow
def test_subset_trains_with_file_protocol(subset_run):
    trainings, _, metadata = subset_run
    assert list(trainings["arch_id"]) == ["a0001", "a0002"]
    assert set(trainings["status"]) <= {"ok", "diverged"}
    assert metadata["dataset"]["num_train"] == 8000
    assert metadata["dataset"]["source"] == str(DEBIAN_DIR)


@pytest.mark.slow
def test_subset_records_energy_per_epoch(subset_run):
    trainings, epochs, _ = subset_run
    assert list(epochs["arch_id"]) == ["a0001", "a0002"]
    assert epochs["energy_kwh"].gt(0).all()
    assert epochs["duration_s"].gt(0).all()
    assert trainings["energy_kwh"].gt(0).all()


@pytest.mark.slow
@pytest.mark.parametrize("column", DISCLOSURE_COLUMNS)
def test_subset_records_full_disclosure(subset_run, column):
    trainings, _, _ = subset_run
    assert trainings[column].notna().all()
