"""Tests of scripts/export_reference.py on a small run directory written through the store."""

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from fixtures_evaluation import training_result
from fixtures_store import DISCLOSURE

from cnngen.errors import CNNGenError
from cnngen.evaluation import evaluate_database
from cnngen.keras_source import write_source
from cnngen.metrics import compute_metrics
from cnngen.sampling import sample_many
from cnngen.store import ArchitectureRecord, ResultsStore
from cnngen.training import EpochRecord

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "export_reference.py"
STATUSES = ["ok"] * 8 + ["diverged", "failed"]


def load_script():
    spec = importlib.util.spec_from_file_location("export_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(run_dir: Path, untrained: int = 1) -> Path:
    """Write a run of digits architectures with code files, metadata and per-epoch rows."""
    sampled = list(sample_many(8, len(STATUSES) + untrained, (8, 8, 1), 10))
    run_dir.mkdir(parents=True, exist_ok=True)
    generation = []
    with ResultsStore(run_dir / "results.sqlite") as store:
        store.record_disclosure(DISCLOSURE)
        store.record_run_metadata("dataset", {"dataset": "digits", "split_seed": 0})
        store.record_run_metadata("training_config", {"epochs": 2, "batch_size": 64})
        for index, (seed, resolved) in enumerate(sampled):
            arch_id = f"a{index + 1:04d}"
            code_path = f"architectures/{arch_id}.py"
            write_source(resolved, run_dir / code_path)
            metrics = compute_metrics(resolved)
            store.add_architecture(
                ArchitectureRecord(
                    arch_id, resolved.to_phrase(), seed, "digits", metrics.params, metrics.flops,
                    metrics.num_layers, code_path, f"architectures/{arch_id}.png",
                )
            )  # fmt: skip
            generation.append(
                {"arch_id": arch_id, "bare_phrase": resolved.architecture.to_bare_phrase(),
                 "duplicate_of": None, "bare_duplicate_of": None}
            )  # fmt: skip
            if index < len(STATUSES):
                result = training_result(arch_id, STATUSES[index], 0.5, metrics.flops * 1e-12, 2)
                if result.status != "failed":
                    result.epoch_rows = [EpochRecord(1, 1.0, 0.4, 1.1, 0.4, 1.0, 1e-7)]
                store.record_training(result)
        store.record_run_metadata("generation", {"architectures": generation})
    (run_dir / "parameters.yaml").write_text("dataset: digits\nepochs: 2\n", encoding="utf-8")
    return run_dir


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run_dir = write_run(tmp_path_factory.mktemp("run"))
    out_dir = tmp_path_factory.mktemp("export") / "reference"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(run_dir), str(out_dir), "--machine", "2-core test VM"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return run_dir, out_dir


def test_writes_the_four_files(exported):
    _, out_dir = exported
    names = sorted(path.name for path in out_dir.iterdir())
    assert names == ["README.md", "SHA256SUMS", "epochs.parquet", "results.parquet"]


def test_checksums_match(exported):
    _, out_dir = exported
    for line in (out_dir / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((out_dir / name).read_bytes()).hexdigest() == digest, name


def test_one_row_per_trained_architecture(exported):
    _, out_dir = exported
    results = pd.read_parquet(out_dir / "results.parquet")
    assert list(results["arch_id"]) == [f"a{i:04d}" for i in range(1, 11)]
    assert results["status"].value_counts().to_dict() == {"ok": 8, "diverged": 1, "failed": 1}
    for column in ("phrase", "bare_phrase", "seed", "params", "flops", "energy_kwh",
                   "cpu_energy_kwh", "cpu_energy_source", "test_accuracy"):  # fmt: skip
        assert column in results.columns, column


def test_epochs_exported(exported):
    _, out_dir = exported
    epochs = pd.read_parquet(out_dir / "epochs.parquet")
    assert len(epochs) == 9
    assert set(epochs.columns) >= {"arch_id", "epoch", "val_accuracy", "energy_kwh"}


def test_run_metadata_in_parquet(exported):
    _, out_dir = exported
    metadata = json.loads(pq.read_schema(out_dir / "results.parquet").metadata[b"cnngen_run"])
    assert metadata["dataset"]["dataset"] == "digits"
    assert metadata["parameters"] == {"dataset": "digits", "epochs": 2}
    assert metadata["untrained_architectures"] == 1
    assert metadata["disclosure"]["cpu_energy_source"] == "TDP estimate (load-scaled)"


def test_readme_documents_every_column(exported):
    _, out_dir = exported
    readme = (out_dir / "README.md").read_text()
    for name in ("results.parquet", "epochs.parquet"):
        for column in pd.read_parquet(out_dir / name).columns:
            assert f"| `{column}` |" in readme, (name, column)


def test_readme_states_how_energy_was_obtained(exported):
    _, out_dir = exported
    readme = " ".join((out_dir / "README.md").read_text().split())
    assert "are CodeCarbon estimates, not measurements" in readme
    assert "thermal design power (TDP)" in readme
    assert "Machine: 2-core test VM." in readme
    assert "1 registered architectures had no finished training" in readme
    assert "CodeCarbon tracked the whole machine" in readme


def test_readme_regeneration_checked(exported):
    _, out_dir = exported
    readme = " ".join((out_dir / "README.md").read_text().split())
    assert "cnngen emit" in readme
    assert "checked 10 of 10 stored files byte for byte" in readme


def test_edited_code_file_is_counted(tmp_path):
    run_dir = write_run(tmp_path / "run", untrained=0)
    code = run_dir / "architectures" / "a0001.py"
    code.write_text(code.read_text() + "\n# edited\n")
    module = load_script()
    paths = module.export_reference(run_dir, tmp_path / "out", "test")
    readme = " ".join(paths[2].read_text().split())
    assert "checked 9 of 10 stored files byte for byte" in readme


def test_evaluation_of_export_matches_store(exported):
    run_dir, out_dir = exported
    options = {"predictors": ("DT",), "train_sizes": (3,), "repetitions": 2}
    from_export = evaluate_database(out_dir, **options)
    from_store = evaluate_database(run_dir, **options)
    pd.testing.assert_frame_equal(from_export, from_store)


def test_missing_store_exits_with_message(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "no results store at" in result.stderr


def test_undocumented_column_rejected(tmp_path, monkeypatch):
    module = load_script()
    run_dir = write_run(tmp_path / "run", untrained=0)
    monkeypatch.delitem(module.COLUMN_DOCS, "cpu_tdp_w")
    from cnngen.errors import CNNGenError

    with pytest.raises(CNNGenError, match=r"columns \['cpu_tdp_w'\] have no description"):
        module.export_reference(run_dir, tmp_path / "out", "test")


def test_metadata_keeps_only_untrained_generation(exported):
    _, out_dir = exported
    metadata = json.loads(pq.read_schema(out_dir / "results.parquet").metadata[b"cnngen_run"])
    listed = [entry["arch_id"] for entry in metadata["generation"]["architectures"]]
    assert listed == ["a0011"]


def test_software_versions_filled_from_disclosure(exported):
    _, out_dir = exported
    results = pd.read_parquet(out_dir / "results.parquet")
    assert set(results["python_version"]) == {DISCLOSURE["python_version"]}
    assert set(results["keras_version"]) == {DISCLOSURE["keras_version"]}


def test_analysis_loads_export(exported):
    from cnngen.analysis import load_run

    _, out_dir = exported
    results = load_run(out_dir)
    assert list(results.trainings["arch_id"]) == [f"a{i:04d}" for i in range(1, 11)]
    assert len(results.epochs) == 9
    assert results.disclosure["cpu_energy_source"] == "TDP estimate (load-scaled)"
    assert results.run_dir is None


def test_analysis_export_without_epochs_rejected(exported, tmp_path):
    from cnngen.analysis import load_run

    _, out_dir = exported
    (tmp_path / "results.parquet").write_bytes((out_dir / "results.parquet").read_bytes())
    with pytest.raises(CNNGenError, match="epochs.parquet"):
        load_run(tmp_path)
