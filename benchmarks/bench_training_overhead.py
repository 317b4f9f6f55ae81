"""Measure what energy measurement, the results store and logging add to a training.

Trains the same small CNN on a Fashion-MNIST subset twice per repeat, in one process:

* plain: build, compile, ``model.fit`` with validation data, evaluate on test and training data;
* measured: the same work through ``cnngen.training.train_architecture`` (CodeCarbon tracker,
  per-epoch CodeCarbon tasks, epoch records) followed by ``ResultsStore.record_training``,
  with INFO logging enabled.

It prints the median wall time and process CPU time of both and their ratios (target
<= 1.05), the ratio of the fit times alone, and the time spent in the per-epoch tracker calls as
a share of an epoch (target <= 2%). Wall time varies by tens of percent when other processes
share the CPUs; CPU time (all threads of this process, the tracker's included) varies less, so
it is the better figure on a busy machine. Pairs alternate their order (plain first, then
measured first) to cancel drift. The first tracker start of a process detects the hardware,
which takes about 2 s. A batch pays that once, so it happens before timing and is reported
separately.

Usage:
    python benchmarks/bench_training_overhead.py [--train-images 12000] [--epochs 3] [--repeats 4]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cnngen.datasets import load_dataset
from cnngen.energy import EnergyMeter
from cnngen.store import ArchitectureRecord, ResultsStore
from cnngen.training import TrainingConfig, train_architecture


class TimedMeter(EnergyMeter):
    """An EnergyMeter that adds up the time spent in its per-epoch calls."""

    epoch_calls_s = 0.0

    def start_epoch(self) -> None:
        start = time.perf_counter()
        super().start_epoch()
        TimedMeter.epoch_calls_s += time.perf_counter() - start

    def stop_epoch(self) -> float | None:
        start = time.perf_counter()
        energy_kwh = super().stop_epoch()
        TimedMeter.epoch_calls_s += time.perf_counter() - start
        return energy_kwh


def build_model(input_shape, num_classes):
    import keras

    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


def train_plain(data, config: TrainingConfig) -> tuple[float, float, float]:
    """Train without measurement and return (wall time, CPU time, fit time) in seconds."""
    import keras

    start, start_cpu = time.perf_counter(), time.process_time()
    keras.utils.set_random_seed(config.seed)
    model = build_model(data.info.input_shape, data.info.num_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    fit_start = time.perf_counter()
    model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        verbose=0,
    )
    fit_s = time.perf_counter() - fit_start
    model.evaluate(data.x_test, data.y_test, verbose=0)
    model.evaluate(data.x_train, data.y_train, verbose=0)
    keras.backend.clear_session()
    return time.perf_counter() - start, time.process_time() - start_cpu, fit_s


def train_measured(data, config: TrainingConfig, store: ResultsStore, repeat: int):
    """Train through train_architecture, store the result, return (wall, CPU, fit, result)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    arch_id = f"bench-{repeat}"
    store.add_architecture(ArchitectureRecord(arch_id, "benchmark model", dataset="fashion_mnist"))
    result = train_architecture(
        build_model, data, config, arch_id=arch_id, meter_factory=TimedMeter
    )
    store.record_training(result)
    wall_s, cpu_s = time.perf_counter() - start, time.process_time() - start_cpu
    return wall_s, cpu_s, result.training_time_s, result


def run_pairs(data, config: TrainingConfig, repeats: int) -> tuple[list, list]:
    """Time plain and measured trainings, alternating which goes first to cancel drift."""
    plain, measured = [], []
    with tempfile.TemporaryDirectory() as folder:
        with ResultsStore(Path(folder) / "results.sqlite") as store:
            for repeat in range(repeats):
                if repeat % 2 == 0:
                    plain.append(train_plain(data, config))
                    measured.append(train_measured(data, config, store, repeat))
                else:
                    measured.append(train_measured(data, config, store, repeat))
                    plain.append(train_plain(data, config))
    return plain, measured


def report(plain: list, measured: list, epochs: int) -> None:
    """Print the medians, their ratios and the per-epoch tracker cost."""
    plain_wall, plain_cpu, plain_fit = (
        statistics.median(run[i] for run in plain) for i in range(3)
    )
    measured_wall, measured_cpu, measured_fit = (
        statistics.median(run[i] for run in measured) for i in range(3)
    )
    results = [run[3] for run in measured]
    per_epoch_call_s = TimedMeter.epoch_calls_s / sum(result.epochs_run for result in results)
    epoch_share = per_epoch_call_s / (measured_fit / epochs)
    energies = [result.energy.energy_kwh for result in results]

    print(f"plain     wall {plain_wall:7.2f} s   CPU {plain_cpu:7.2f} s   fit {plain_fit:7.2f} s")
    print(
        f"measured  wall {measured_wall:7.2f} s   CPU {measured_cpu:7.2f} s   "
        f"fit {measured_fit:7.2f} s"
    )
    print(
        f"wall ratio {measured_wall / plain_wall:.3f}, CPU ratio {measured_cpu / plain_cpu:.3f} "
        f"(target <= 1.05), fit ratio {measured_fit / plain_fit:.3f}"
    )
    print(
        f"tracker calls per epoch {per_epoch_call_s * 1000:.2f} ms = {epoch_share:.3%} of an "
        "epoch (target <= 2%)"
    )
    print(f"energy per training (kWh): {', '.join(f'{e:.3e}' for e in energies if e)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=12000, help="training images")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per training")
    parser.add_argument("--repeats", type=int, default=4, help="plain/measured pairs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")

    data = load_dataset("fashion_mnist", max_train=args.train_images, max_test=2000)
    # Inference is measured after training and has its own columns, so it is left out here.
    config = TrainingConfig(epochs=args.epochs, inference_batches=0)

    # Warm up TensorFlow and CodeCarbon's hardware detection outside the timed runs.
    train_plain(data, TrainingConfig(epochs=1, inference_batches=0))
    first_start = time.perf_counter()
    with EnergyMeter(config.meter_settings()):
        pass
    first_start_s = time.perf_counter() - first_start

    plain, measured = run_pairs(data, config, args.repeats)
    print(
        f"data: fashion_mnist, {len(data.y_train)} training images, {args.epochs} epochs, "
        f"{args.repeats} pairs"
    )
    print(f"first tracker start in the process (hardware detection): {first_start_s:.2f} s")
    report(plain, measured, args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
