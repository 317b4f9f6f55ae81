"""Export a run's results store as a reference dataset of Parquet files with a README.

Usage: python scripts/export_reference.py RUN_DIR OUT_DIR

Writes, into OUT_DIR (created when missing):

* ``results.parquet``: one row per trained architecture: identity, protocol, metrics, energy
  parts, inference cost, measurement disclosure, parameters and FLOPs, and the duplicate flags
  of the generation. The run's metadata (split summary, training configuration, disclosure,
  parameters, and the generation record of the architectures that were not trained) is kept
  as JSON in the Parquet file metadata under ``cnngen_run``, which ``cnngen evaluate`` reads
  to rebuild the training split.
* ``epochs.parquet``: the per-epoch losses, accuracies, durations and energy.
* ``README.md``: every column with its type and unit, the protocol, the command that produced
  the files, how the energy was obtained, and how to regenerate code and pictures.
* ``SHA256SUMS``: checksums of the three files above, for ``sha256sum -c``.

The script reads the store read-only, so it can export a run that is still training. The
architectures without a finished training are left out and counted. It also checks that the
Keras source regenerated from each stored phrase is byte-identical to the stored file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger("export_reference")

PARQUET_METADATA_KEY = b"cnngen_run"
GENERATION_COLUMNS = ("bare_phrase", "duplicate_of", "bare_duplicate_of")

# Column: (unit, meaning). The type is read from the exported table.
COLUMN_DOCS = {
    "arch_id": ("", "architecture id in the run, a0001, a0002, ..."),
    "phrase": ("", "fully pinned phrase; rebuilds the network with `cnngen emit`"),
    "bare_phrase": ("", "the phrase without hyper-parameters"),
    "duplicate_of": ("", "arch_id of an earlier architecture with the same phrase, or null"),
    "bare_duplicate_of": ("", "arch_id of an earlier architecture with the same bare phrase"),
    "dataset": ("", "data set the architecture was solved for and trained on"),
    "epochs": ("epochs", "requested training epochs"),
    "epochs_run": ("epochs", "epochs actually run"),
    "status": ("", "ok, diverged (NaN loss or test accuracy at chance level) or failed"),
    "test_accuracy": ("fraction", "accuracy on the held-out test images"),
    "train_accuracy": ("fraction", "accuracy of the final model on the training images"),
    "val_accuracy": ("fraction", "validation accuracy of the last epoch run"),
    "test_loss": ("", "cross-entropy on the test images"),
    "train_loss": ("", "cross-entropy of the final model on the training images"),
    "val_loss": ("", "validation cross-entropy of the last epoch run"),
    "training_time_s": ("s", "wall time of Keras fit"),
    "params": ("parameters", "trainable and non-trainable parameters (Keras count_params)"),
    "flops": ("FLOPs", "one forward pass on one image, a multiply-add counted as 2"),
    "num_layers": ("layers", "Keras layers, input included"),
    "seed": ("", "seed of the values the solver drew for this architecture"),
    "training_seed": ("", "seed of the weights, dropout and shuffling"),
    "device": ("", "CPU or GPU"),
    "mixed_precision": ("", "whether Keras trained under mixed_float16"),
    "energy_kwh": ("kWh", "energy of fit: CPU + GPU + RAM parts, from CodeCarbon"),
    "cpu_energy_kwh": ("kWh", "CPU part of energy_kwh"),
    "gpu_energy_kwh": ("kWh", "GPU part of energy_kwh"),
    "ram_energy_kwh": ("kWh", "RAM part of energy_kwh"),
    "emissions_kg": ("kg CO2-eq", "energy_kwh times the carbon intensity"),
    "emissions_rate_kg_per_s": ("kg CO2-eq/s", "emissions per second of fit"),
    "cpu_power_w": ("W", "mean CPU power during fit"),
    "gpu_power_w": ("W", "mean GPU power during fit"),
    "ram_power_w": ("W", "mean RAM power during fit"),
    "gpu_energy_flag": ("", "zero or missing when a GPU training has no GPU energy reading"),
    "energy_is_estimate": ("", "whether any energy part comes from a model, not a counter"),
    "cpu_energy_source": ("", "how CodeCarbon obtained the CPU energy"),
    "cpu_energy_is_estimate": ("", "whether the CPU energy is an estimate rather than RAPL"),
    "cpu_tdp_w": ("W", "CPU thermal design power that CodeCarbon assumed"),
    "gpu_energy_source": ("", "how CodeCarbon obtained the GPU energy"),
    "ram_energy_method": ("", "how CodeCarbon estimated the RAM energy"),
    "codecarbon_version": ("", "CodeCarbon version"),
    "measure_power_secs": ("s", "CodeCarbon power sampling interval"),
    "tracking_mode": ("", "CodeCarbon tracking mode (machine or process)"),
    "country_iso_code": ("", "ISO 3166-1 alpha-3 code of the electricity mix"),
    "carbon_intensity_g_per_kwh": ("g CO2-eq/kWh", "carbon intensity used for emissions"),
    "idle_power_w": ("W", "machine power with the process asleep, measured once per run"),
    "cpu_model": ("", "CPU model as CodeCarbon reads it"),
    "cpu_count": ("cores", "CPU cores"),
    "gpu_model": ("", "GPU model, or null"),
    "gpu_count": ("GPUs", "GPUs CodeCarbon found"),
    "gpu_ids": ("", "NVML indices of the measured GPUs, as JSON, or null"),
    "gpu_driver_version": ("", "NVIDIA driver version, or null"),
    "training_gpu_name": ("", "GPU Keras trained on, or null"),
    "python_version": ("", "Python version"),
    "tensorflow_version": ("", "TensorFlow version"),
    "keras_version": ("", "Keras version"),
    "cuda_version": ("", "CUDA version TensorFlow was built with, or null for a CPU build"),
    "cudnn_version": ("", "cuDNN version TensorFlow was built with, or null for a CPU build"),
    "inference_latency_s": ("s", "mean time of one inference batch"),
    "inference_latency_per_image_s": ("s", "inference_latency_s divided by the batch size"),
    "inference_energy_kwh": ("kWh", "energy of the timed inference batches"),
    "inference_energy_per_image_kwh": ("kWh", "inference energy per image"),
    "inference_batch_size": ("images", "images per inference batch"),
    "inference_batches": ("batches", "timed inference batches"),
    "inference_duration_s": ("s", "length of the timed inference loop"),
    "energy_error": ("", "why the energy reading is missing, or null"),
    "inference_error": ("", "why the inference measurement failed, or null"),
    "error": ("", "exception of a failed training, or null"),
    "started_at": ("ISO 8601", "start of the training, UTC"),
    "finished_at": ("ISO 8601", "end of the training, UTC"),
    "code_path": ("", "emitted Keras source in the run directory (not exported)"),
    "image_path": ("", "plot_model picture in the run directory (not exported)"),
}
EPOCH_DOCS = {
    "arch_id": ("", "architecture id"),
    "epoch": ("", "epoch number, from 1"),
    "train_loss": ("", "training cross-entropy of the epoch"),
    "train_accuracy": ("fraction", "training accuracy of the epoch"),
    "val_loss": ("", "validation cross-entropy after the epoch"),
    "val_accuracy": ("fraction", "validation accuracy after the epoch"),
    "duration_s": ("s", "wall time of the epoch"),
    "energy_kwh": ("kWh", "CodeCarbon energy of the epoch"),
}


def export_reference(
    run_dir: Path, out_dir: Path, command: str, machine: str | None = None
) -> list[Path]:
    """Write the reference files of a run directory into out_dir and return their paths.

    Args:
        run_dir: The run directory.
        out_dir: The folder to write.
        command: The command line to record in the README.
        machine: A description of the machine that trained, for the README, or None.
    """
    from cnngen.errors import CNNGenError
    from cnngen.store import ResultsStore

    db_path = run_dir / "results.sqlite"
    if not db_path.is_file():
        raise CNNGenError(f"no results store at {str(db_path)!r}; pass a run directory")
    with ResultsStore(db_path, read_only=True) as store:
        trainings, epochs = store.trainings_frame(), store.epochs_frame()
        metadata = store.run_metadata()
        registered = len(store.read_rows("architectures"))
    results = _with_versions(_with_generation(trainings, metadata), metadata)
    undocumented = sorted(set(results.columns) - set(COLUMN_DOCS))
    if undocumented:
        raise CNNGenError(f"columns {undocumented} have no description in COLUMN_DOCS; add one")
    metadata["parameters"] = _read_parameters(run_dir)
    metadata["untrained_architectures"] = registered - len(results)
    metadata["generation"] = _untrained_only(metadata.get("generation"), results)

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        _write_parquet(results, out_dir / "results.parquet", metadata),
        _write_parquet(epochs, out_dir / "epochs.parquet", None),
    ]
    identical, checked = _check_sources(results, run_dir)
    readme = out_dir / "README.md"
    readme.write_text(
        _readme(results, epochs, metadata, command, (identical, checked), machine, out_dir),
        encoding="utf-8",
    )
    paths.append(readme)
    paths.append(_write_checksums(paths, out_dir / "SHA256SUMS"))
    return paths


def _with_generation(trainings, metadata: dict):
    """Add the generation's bare phrase and duplicate flags to each training row."""
    import pandas as pd

    rows = (metadata.get("generation") or {}).get("architectures") or []
    generation = pd.DataFrame(rows, columns=["arch_id", *GENERATION_COLUMNS])
    results = trainings.merge(generation, on="arch_id", how="left")
    position = list(results.columns).index("phrase") + 1
    ordered = [c for c in results.columns if c not in GENERATION_COLUMNS]
    ordered[position:position] = list(GENERATION_COLUMNS)
    for column in GENERATION_COLUMNS:
        results[column] = results[column].astype("string")
    return results[ordered].sort_values("arch_id", ignore_index=True)


def _untrained_only(generation: dict | None, results) -> dict | None:
    """Keep the generation record of the architectures that have no row in the results.

    The rows already contain the phrase and duplicate flags of every trained architecture, and
    repeating them in the file metadata would double the file's size.
    """
    if not generation:
        return generation
    trained = set(results["arch_id"])
    listed = generation.get("architectures") or []
    untrained = [entry for entry in listed if entry.get("arch_id") not in trained]
    return dict(generation, architectures=untrained)


def _with_versions(results, metadata: dict):
    """Fill the software versions of rows written before the store copied them into each row.

    The values come from the run's disclosure, which every row of one store shares.
    """
    disclosure = metadata.get("disclosure") or {}
    for column in VERSION_COLUMNS:
        if results[column].isna().all() and disclosure.get(column) is not None:
            results[column] = disclosure[column]
    return results


VERSION_COLUMNS = (
    "python_version", "tensorflow_version", "keras_version", "cuda_version", "cudnn_version",
)  # fmt: skip


def _read_parameters(run_dir: Path) -> dict | None:
    import yaml

    path = run_dir / "parameters.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None


def _write_parquet(frame, path: Path, metadata: dict | None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata is not None:
        text = json.dumps(metadata, sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata({**table.schema.metadata, PARQUET_METADATA_KEY: text})
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, path)
    logger.info("wrote %s (%d rows)", path, len(frame))
    return path


def _check_sources(results, run_dir: Path) -> tuple[int, int]:
    """Count stored Keras files that emit_source regenerates byte for byte from the phrase."""
    from cnngen.features import resolve_stored
    from cnngen.keras_source import emit_source

    identical = checked = 0
    for row in results.to_dict("records"):
        path = run_dir / str(row["code_path"])
        if not isinstance(row["code_path"], str) or not path.is_file():
            continue
        seed = None if row["seed"] is None or row["seed"] != row["seed"] else int(row["seed"])
        source = emit_source(resolve_stored(row["phrase"], seed, row["dataset"]))
        checked += 1
        identical += source == path.read_text(encoding="utf-8")
    if identical < checked:
        logger.warning(
            "%d of %d stored Keras files differ from the source regenerated from their phrase",
            checked - identical,
            checked,
        )
    return identical, checked


def _write_checksums(paths: list[Path], target: Path) -> Path:
    lines = [f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}" for path in paths]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def _readme(results, epochs, metadata, command, sources, machine, out_dir) -> str:
    sections = [
        _readme_intro(results, metadata, command),
        _readme_protocol(metadata, out_dir),
        _readme_energy(results, machine),
        _readme_regenerate(results, sources),
        "## results.parquet\n\n" + _schema_table(results, COLUMN_DOCS),
        "## epochs.parquet\n\n" + _schema_table(epochs, EPOCH_DOCS),
    ]
    return "\n\n".join(sections) + "\n"


def _readme_intro(results, metadata: dict, command: str) -> str:
    from cnngen import __version__

    split = metadata.get("dataset") or {}
    counts = results["status"].value_counts().to_dict()
    status_text = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "diverged", "failed"))
    untrained = metadata.get("untrained_architectures", 0)
    return "\n".join(
        [
            "# CNNGen reference dataset",
            "",
            _fill(
                f"{len(results)} sampled architectures trained on {split.get('dataset')} with "
                f"one protocol ({status_text}). {untrained} registered architectures had no "
                "finished training when this export was made and are not included."
            ),
            "",
            f"Produced by CNNGen {__version__} (commit {_git_commit()}) with:",
            "",
            f"    {command}",
        ]
    )


def _readme_protocol(metadata: dict, out_dir: Path) -> str:
    split = metadata.get("dataset") or {}
    config = metadata.get("training_config") or {}
    return "\n".join(
        [
            "## Protocol",
            "",
            _fill(
                f"Data set: {split.get('dataset')}, split with seed {split.get('split_seed')}: "
                f"{split.get('num_train')} training, {split.get('num_val')} validation and "
                f"{split.get('num_test')} test images (test fraction "
                f"{split.get('test_fraction')} of the pool, validation fraction "
                f"{split.get('validation_fraction')} of the rest), split digest "
                f"`{split.get('split_sha256')}`.",
                bullet=True,
            ),
            _fill(
                f"Training: {config.get('epochs')} epochs, batches of "
                f"{config.get('batch_size')}, Adam with learning rate "
                f"{config.get('learning_rate')}, early stopping "
                f"{config.get('early_stopping')}. A training whose loss became NaN or whose "
                f"test accuracy stayed within {config.get('chance_margin')} of chance is "
                "`diverged`.",
                bullet=True,
            ),
            _fill(
                "The run's parameters, split summary, training configuration and measurement "
                "disclosure are stored as JSON in the file metadata of `results.parquet` under "
                "the key `cnngen_run` "
                '(`pyarrow.parquet.read_schema(path).metadata[b"cnngen_run"]`).',
                bullet=True,
            ),
            _fill(
                f"Evaluate the predictors on these files with `cnngen evaluate {out_dir}` "
                "(or pass `results.parquet`).",
                bullet=True,
            ),
        ]
    )


def _readme_energy(results, machine: str | None) -> str:
    sources = sorted(set(results["cpu_energy_source"].dropna()))
    models = sorted(set(results["cpu_model"].dropna()))
    cores = sorted({int(v) for v in results["cpu_count"].dropna()})
    devices = sorted(set(results["device"].dropna()))
    estimated = bool(results["cpu_energy_is_estimate"].fillna(True).all())
    verdict = (
        "are CodeCarbon estimates, not measurements: no RAPL counter was readable, so "
        "CodeCarbon estimated the CPU part from the CPU's thermal design power (TDP), and the "
        "RAM part from the memory size"
        if estimated
        else "have a CPU part read from hardware counters (RAPL); the RAM part is estimated"
    )
    machine_text = f" Machine: {machine}." if machine else ""
    modes = sorted(set(results["tracking_mode"].dropna()))
    mode_text = {
        "process": " CodeCarbon tracked the training process: its CPU and RAM estimates are "
        "scaled by that process's CPU time and memory, so other processes are not counted.",
        "machine": " CodeCarbon tracked the whole machine, so other processes running during a "
        "training are counted in its energy.",
    }
    tracking = "".join(mode_text.get(mode, "") for mode in modes)
    text = (
        f"The energy numbers {verdict}.{tracking} CPU energy source: "
        f"{', '.join(sources) or 'not recorded'}. CPU: {', '.join(models) or 'not recorded'} "
        f"with {', '.join(map(str, cores)) or 'an unrecorded number of'} cores; training "
        f"device: {', '.join(devices) or 'not recorded'}.{machine_text} Compare energies "
        "within this dataset only, never with measurements made on other machines."
    )
    return "## Energy\n\n" + _fill(text)


def _readme_regenerate(results, sources: tuple[int, int]) -> str:
    identical, checked = sources
    example = results.iloc[0] if len(results) else None
    line = (
        f'cnngen emit "{example["phrase"]}" --dataset {example["dataset"]} '
        f"--seed {example['seed']} -o {example['arch_id']}.py --png {example['arch_id']}.png"
        if example is not None
        else "cnngen emit PHRASE --dataset NAME --seed SEED -o ID.py --png ID.png"
    )
    text = (
        "The phrase pins every hyper-parameter, so the seed changes nothing, and with the same "
        "CNNGen version the source is byte-identical to the file the run trained: this "
        f"export checked {identical} of {checked} stored files byte for byte. The PNG is "
        "byte-identical with the same Keras, pydot and Graphviz versions (see the disclosure "
        "for the Keras version)."
    )
    return "\n".join(
        [
            "## Regenerating the code and the pictures",
            "",
            _fill(
                "The Keras source and the plot_model picture of an architecture are not "
                "exported, because its phrase rebuilds them:"
            ),
            "",
            f"    {line}",
            "",
            _fill(text),
        ]
    )


def _fill(text: str, bullet: bool = False) -> str:
    import textwrap

    if bullet:
        return textwrap.fill(
            text, width=92, initial_indent="* ", subsequent_indent="  ", break_on_hyphens=False
        )
    return textwrap.fill(text, width=92, break_on_hyphens=False)


def _schema_table(frame, docs: dict) -> str:
    lines = ["| column | type | unit | meaning |", "|---|---|---|---|"]
    for column in frame.columns:
        unit, meaning = docs.get(column, ("", ""))
        lines.append(f"| `{column}` | {frame[column].dtype} | {unit} | {meaning} |")
    return "\n".join(lines)


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return result.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """Run the export from the command line and return the exit status."""
    from cnngen.errors import CNNGenError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="run directory with results.sqlite")
    parser.add_argument("out_dir", type=Path, help="folder to write, such as data/reference")
    parser.add_argument(
        "--machine", help='description of the machine, such as "2-core virtual machine"'
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = f"python scripts/export_reference.py {args.run_dir} {args.out_dir}"
    if args.machine:
        command += f" --machine {args.machine!r}"
    try:
        paths = export_reference(args.run_dir, args.out_dir, command, args.machine)
    except CNNGenError as error:
        print(f"export_reference: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
