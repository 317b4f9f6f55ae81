"""Check on a CUDA machine that GPU training and its energy measurement work, in minutes.

Trains 2 small sampled architectures on digits (bundled with scikit-learn, so no download) with
mixed precision, through ``cnngen.batch.run_batch`` and a results store in a temporary folder,
each in its own training process as a run does (``architectures_per_process=1``). It prints the
device TensorFlow trains on, the GPU part of the measurement disclosure (source, model, NVML
ids, driver), and for each training the status, GPU energy and power, the GPU energy flag and
the inference cost. Most of its time goes to TensorFlow's start-up, the idle measurement and 2
short trainings: with ``--allow-cpu --epochs 1`` on a 2-core CPU machine it took about 70 s.

Exit status: 0 when TensorFlow lists a GPU and every training has a positive GPU energy, 1 when
a training has none (flagged "zero" or "missing") or failed, 2 when no GPU is visible (unless
``--allow-cpu``, which runs the same steps on the CPU to check the script itself).

Usage:
    python benchmarks/cuda_smoke.py [--epochs 3] [--allow-cpu]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

# Hide TensorFlow's C++ start-up messages; set before TensorFlow is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cnngen.batch import run_batch  # noqa: E402
from cnngen.datasets import load_dataset  # noqa: E402
from cnngen.devices import training_device  # noqa: E402
from cnngen.keras_source import CodeFileModels, write_source  # noqa: E402
from cnngen.sampling import architecture_seeds, sample_resolved  # noqa: E402
from cnngen.store import ResultsStore  # noqa: E402
from cnngen.training import TrainingConfig  # noqa: E402

ROW_COLUMNS = [
    "arch_id", "status", "device", "mixed_precision", "test_accuracy", "training_time_s",
    "energy_kwh", "gpu_energy_kwh", "gpu_power_w", "gpu_energy_flag", "inference_latency_s",
    "inference_energy_kwh", "inference_error", "energy_error", "error",
]  # fmt: skip
DISCLOSURE_FIELDS = [
    "training_device", "training_gpu_name", "gpu_energy_source", "gpu_model", "gpu_count",
    "gpu_ids", "gpu_driver_version", "cuda_version", "cudnn_version", "tensorflow_version",
    "codecarbon_version", "error",
]  # fmt: skip


def make_items(folder: Path, data, count: int) -> list[SimpleNamespace]:
    """Sample and emit count architectures for the data set's shape."""
    items = []
    for index, seed in enumerate(architecture_seeds(0, count)):
        resolved = sample_resolved(seed, tuple(data.info.input_shape), data.info.num_classes)
        path = write_source(resolved, folder / f"a{index + 1}.py")
        items.append(
            SimpleNamespace(
                arch_id=f"a{index + 1}", phrase=resolved.to_phrase(), seed=seed, code_path=path.name
            )
        )
    return items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per training")
    parser.add_argument("--allow-cpu", action="store_true", help="run even without a GPU")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    device = training_device()
    print(f"training device: {device}")
    if device.kind != "GPU" and not args.allow_cpu:
        print("TensorFlow sees no GPU: install with `pip install -e .[cuda]` on a CUDA machine")
        return 2

    data = load_dataset("digits")
    config = TrainingConfig(epochs=args.epochs, mixed_precision=True, idle_duration_s=2.0)
    with tempfile.TemporaryDirectory() as folder:
        items = make_items(Path(folder), data, 2)
        with ResultsStore(Path(folder) / "results.sqlite") as store:
            run_batch(
                items,
                data,
                config,
                store,
                build_model_for=CodeFileModels(Path(folder)),
                progress=False,
                architectures_per_process=1,
            )
            disclosure = store.disclosure
            frame = store.trainings_frame()

    print("disclosure:")
    for name in DISCLOSURE_FIELDS:
        print(f"  {name:<20} {disclosure.get(name)}")
    print("trainings:")
    for _, row in frame[ROW_COLUMNS].iterrows():
        print("  " + ", ".join(f"{name}={row[name]}" for name in ROW_COLUMNS))

    measured = frame["gpu_energy_kwh"].notna() & (frame["gpu_energy_kwh"] > 0)
    healthy = (frame["status"] != "failed") & measured & frame["gpu_energy_flag"].isna()
    print(f"trainings with a positive GPU energy: {int(healthy.sum())} of {len(frame)}")
    return 0 if device.kind == "GPU" and bool(healthy.all()) else 1


if __name__ == "__main__":
    sys.exit(main())
