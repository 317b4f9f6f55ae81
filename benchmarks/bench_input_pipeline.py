"""Compare training throughput through the package's data path with a plain in-memory fit.

Trains the same small CNN (one pooling, so that digits' 8x8 images fit) on a Fashion-MNIST
subset, or on digits with ``--dataset digits``, in one process, alternating the order over the
repeats:

* plain: ``keras.utils.set_random_seed``, build, compile, then ``model.fit`` on the NumPy
  arrays of the splits with the validation split;
* package: ``cnngen.training.train_architecture`` on the same ``DatasetSplits``, with its
  CodeCarbon tracker and epoch records, and the inference measurement turned off.

Throughput is training images per second of ``fit``: epochs x training images / fit time. The
package's fit time is ``TrainingResult.training_time_s``, the interval the tracker measures.
It prints the medians and their ratio, package / plain (target >= 0.95).

Usage:
    python benchmarks/bench_input_pipeline.py [--dataset fashion_mnist] [--train-images 12000]
        [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time

# Hide TensorFlow's C++ start-up messages; set before TensorFlow is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cnngen.datasets import load_dataset  # noqa: E402
from cnngen.training import TrainingConfig, train_architecture  # noqa: E402


def build_model(input_shape, num_classes):
    import keras

    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


def fit_plain(data, config: TrainingConfig) -> float:
    """Fit without the package and return the training images per second."""
    import keras

    keras.utils.set_random_seed(config.seed)
    model = build_model(data.info.input_shape, data.info.num_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        verbose=0,
    )
    fit_s = time.perf_counter() - start
    keras.backend.clear_session()
    return config.epochs * len(data.y_train) / fit_s


def fit_package(data, config: TrainingConfig) -> float:
    """Fit through train_architecture and return the training images per second."""
    result = train_architecture(build_model, data, config, arch_id="bench")
    if result.status == "failed":
        raise RuntimeError(f"the package's training failed: {result.error}")
    return result.epochs_run * len(data.y_train) / result.training_time_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist", help="data set name")
    parser.add_argument("--train-images", type=int, default=12000, help="training images")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per training")
    parser.add_argument("--repeats", type=int, default=3, help="plain/package pairs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    data = load_dataset(args.dataset, max_train=args.train_images, max_test=1000)
    config = TrainingConfig(epochs=args.epochs, inference_batches=0)

    # Warm up TensorFlow and CodeCarbon's hardware detection outside the timed runs.
    fit_package(data, TrainingConfig(epochs=1, inference_batches=0))
    plain, package = [], []
    for repeat in range(args.repeats):
        if repeat % 2 == 0:
            plain.append(fit_plain(data, config))
            package.append(fit_package(data, config))
        else:
            package.append(fit_package(data, config))
            plain.append(fit_plain(data, config))

    plain_rate, package_rate = statistics.median(plain), statistics.median(package)
    print(
        f"data: {args.dataset}, {len(data.y_train)} training images, {args.epochs} epochs, "
        f"{args.repeats} pairs"
    )
    print(f"plain   {plain_rate:9.1f} images/s  ({', '.join(f'{r:.0f}' for r in plain)})")
    print(f"package {package_rate:9.1f} images/s  ({', '.join(f'{r:.0f}' for r in package)})")
    print(f"throughput ratio package/plain {package_rate / plain_rate:.3f} (target >= 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
