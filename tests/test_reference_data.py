"""Tests of the committed reference dataset in data/reference and of notebook 04 on it.

The dataset is the export of ``cnngen run parameters/reference_fashion_mnist.yaml`` by
``scripts/export_reference.py``. These tests check its checksums, that it comes from one
protocol, that its phrases rebuild the trained networks, and that notebook 04 runs under nbval
on a subset of it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import papermill
import pyarrow.parquet as pq
import pytest

from cnngen.features import resolve_stored
from cnngen.metrics import compute_metrics

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "data" / "reference"


@pytest.fixture(scope="module")
def results():
    return pd.read_parquet(REFERENCE / "results.parquet")


@pytest.fixture(scope="module")
def metadata():
    schema = pq.read_schema(REFERENCE / "results.parquet")
    return json.loads(schema.metadata[b"cnngen_run"])


def test_checksums_match_files():
    lines = (REFERENCE / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == 3
    for line in lines:
        digest, name = line.split(maxsplit=1)
        assert hashlib.sha256((REFERENCE / name).read_bytes()).hexdigest() == digest, name


def test_reference_has_500_architectures(results):
    assert len(results) >= 500
    assert results["arch_id"].is_unique
    assert results["phrase"].notna().all()


def test_reference_uses_one_protocol(results, metadata):
    assert set(results["dataset"]) == {"fashion_mnist"}
    assert set(results["epochs"]) == {2}
    assert metadata["training_config"]["batch_size"] == 32
    assert metadata["dataset"]["num_train"] == 1500
    assert metadata["parameters"]["num_architectures"] == len(results)


def test_reference_energy_is_labelled_estimate(results):
    assert results["energy_is_estimate"].all()
    readme = (REFERENCE / "README.md").read_text()
    assert "estimate" in readme


def test_reference_epochs_cover_every_training(results):
    epochs = pd.read_parquet(REFERENCE / "epochs.parquet")
    trained = results.loc[results["status"] != "failed", "arch_id"]
    assert set(trained) <= set(epochs["arch_id"])
    assert epochs["energy_kwh"].notna().all()


@pytest.mark.parametrize("position", [0, 137, 499])
def test_phrase_rebuilds_trained_network(results, position):
    row = results.sort_values("arch_id").iloc[position]
    resolved = resolve_stored(row["phrase"], int(row["seed"]), row["dataset"])
    assert compute_metrics(resolved).params == row["params"]


@pytest.mark.slow
def test_notebook_04_runs_on_reference_subset(tmp_path):
    notebook = tmp_path / "04_evaluate_predictors.ipynb"
    output_dir = tmp_path / "evaluation"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "04_evaluate_predictors.ipynb"),
        str(notebook),
        parameters={
            "output_dir": str(output_dir),
            "results_dir": str(REFERENCE),
            "max_architectures": 80,
            "eval_predictors": ["Py_code", "DT", "RF"],
            "train_sizes": ["10", "25", "all"],
            "repetitions": 2,
            "num_candidates": 300,
        },
        prepare_only=True,
    )
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider",
            "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), str(notebook),
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    summary = pd.read_csv(output_dir / "evaluation.csv")
    assert {"Py_code", "DT", "RF", "params", "flops"} <= set(summary["predictor"])
    assert (output_dir / "figures" / "tau_vs_train_size_energy_kwh.png").is_file()
    candidates = pd.read_csv(output_dir / "candidates.csv")
    assert len(candidates) == 300
    assert candidates["predicted_energy_kwh"].gt(0).all()
    assert candidates["pareto"].sum() >= 1
    assert (output_dir / "rf_energy_kwh.joblib").is_file()
