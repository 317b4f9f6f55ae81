"""Check that memory stays flat over a long batch: peak RSS after 20 trainings vs after 5.

Samples 5 architectures for digits (bundled with scikit-learn), emits their Keras source, and
trains them through ``cnngen.batch.run_batch`` (CodeCarbon tracker, inference measurement, a
results store in a temporary folder). Then it trains 15 more items built from the same 5
architectures, so the sizes repeat, in the same store. After each part it records the peak
resident set size (``resource.getrusage``) of the process that trains, and prints the ratio of
the two peaks (target <= 1.1).

By default the batch trains in child processes replaced every 5 architectures
(``--per-process 5``, as ``architectures_per_process`` in a run), and the peak is that of the
largest child; the parent's own peak is printed too. With ``--per-process 0`` the batch trains
in this process, which then grows by what TensorFlow keeps of every fitted model.

With ``--plain`` the same architectures are trained by a plain Keras loop in this process
(build, compile, fit, evaluate, ``keras.backend.clear_session()``, ``gc.collect()``), without
CNNGen's batch, tracker or store, which separates CNNGen's share of the growth from
TensorFlow's.

Usage:
    python benchmarks/bench_memory.py [--first 5] [--total 20] [--epochs 1]
        [--per-process 5 | --plain]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import resource
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

# Hide TensorFlow's C++ start-up messages; set before TensorFlow is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cnngen.batch import run_batch  # noqa: E402
from cnngen.datasets import load_dataset  # noqa: E402
from cnngen.keras_source import CodeFileModels, load_build_model, write_source  # noqa: E402
from cnngen.sampling import architecture_seeds, sample_resolved  # noqa: E402
from cnngen.store import ResultsStore  # noqa: E402
from cnngen.training import TrainingConfig  # noqa: E402


def memory_mib() -> tuple[float, float]:
    """Return (peak RSS, current RSS) of this process in MiB."""
    import psutil

    # Linux reports ru_maxrss in KiB.
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak_mib, psutil.Process().memory_info().rss / 2**20


def children_peak_mib() -> float:
    """Return the peak RSS of the largest child process that has ended, in MiB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def make_items(folder: Path, num_architectures: int, total: int) -> list[SimpleNamespace]:
    """Emit num_architectures sampled architectures and return total items cycling over them."""
    architectures = []
    for index, seed in enumerate(architecture_seeds(0, num_architectures)):
        resolved = sample_resolved(seed, (8, 8, 1), 10)
        path = write_source(resolved, folder / f"arch{index}.py")
        architectures.append((seed, resolved.to_phrase(), path))
    items = []
    for position in range(total):
        seed, phrase, path = architectures[position % num_architectures]
        items.append(
            SimpleNamespace(
                arch_id=f"m{position + 1:03d}", phrase=phrase, seed=seed, code_path=path.name
            )
        )
    return items


def train_plain(items, folder: Path, data, epochs: int) -> None:
    """Train the items with a plain Keras loop that frees Keras's state after each one."""
    import keras

    for item in items:
        keras.utils.set_random_seed(item.seed)
        build_model = load_build_model(folder / item.code_path)
        model = build_model(data.info.input_shape, data.info.num_classes)
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=64, verbose=0)
        model.evaluate(data.x_test, data.y_test, verbose=0)
        del model
        keras.backend.clear_session()
        gc.collect()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=5, help="trainings before the first record")
    parser.add_argument("--total", type=int, default=20, help="trainings in all")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per training")
    parser.add_argument(
        "--per-process",
        type=int,
        default=5,
        help="trainings per child process; 0 trains in this process",
    )
    parser.add_argument("--plain", action="store_true", help="train with a plain Keras loop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    data = load_dataset("digits")
    config = TrainingConfig(
        epochs=args.epochs, idle_duration_s=1.0, inference_batches=10, inference_duration_s=0.5
    )
    with tempfile.TemporaryDirectory() as folder:
        items = make_items(Path(folder), args.first, args.total)
        if args.plain:
            train_plain(items[: args.first], Path(folder), data, args.epochs)
            peak_first, current_first = memory_mib()
            train_plain(items[args.first :], Path(folder), data, args.epochs)
            peak_total, current_total = memory_mib()
            print("plain Keras loop")
            report(args, peak_first, current_first, peak_total, current_total)
            return 0
        with ResultsStore(Path(folder) / "results.sqlite") as store:
            options = {
                "build_model_for": CodeFileModels(Path(folder)),
                "architectures_per_process": args.per_process,
            }
            run_batch(items[: args.first], data, config, store, **options)
            peak_first, current_first = memory_mib()
            children_first = children_peak_mib()
            run_batch(items, data, config, store, **options)
            peak_total, current_total = memory_mib()
            children_total = children_peak_mib()
            counts = store.status_counts()

    print(f"trainings: {counts}")
    if args.per_process:
        print(f"in child processes replaced every {args.per_process} trainings")
        print(f"after {args.first:3d}: peak RSS of the children {children_first:8.1f} MiB")
        print(f"after {args.total:3d}: peak RSS of the children {children_total:8.1f} MiB")
        print(f"peak RSS ratio {children_total / children_first:.3f} (target <= 1.1)")
        print(f"parent process: peak RSS {peak_first:.1f} MiB, then {peak_total:.1f} MiB")
        return 0
    print("in this process")
    report(args, peak_first, current_first, peak_total, current_total)
    return 0


def report(args, peak_first, current_first, peak_total, current_total) -> None:
    """Print the memory after the first trainings and after all, and their ratios."""
    print(f"after {args.first:3d}: peak RSS {peak_first:8.1f} MiB, RSS {current_first:8.1f} MiB")
    print(f"after {args.total:3d}: peak RSS {peak_total:8.1f} MiB, RSS {current_total:8.1f} MiB")
    print(
        f"peak RSS ratio {peak_total / peak_first:.3f} (target <= 1.1), "
        f"RSS ratio {current_total / current_first:.3f}"
    )


if __name__ == "__main__":
    sys.exit(main())
