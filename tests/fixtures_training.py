"""Training fixtures shared by the tests of training, batches, merges and reproducibility.

The data set is scikit-learn's bundled digits (1,797 images of 8x8), small enough for real
Keras trainings with a real CodeCarbon tracker in a few seconds. Subprocess scripts import this
module too, with the tests folder on ``sys.path``.
"""

import dataclasses
from types import SimpleNamespace

import numpy as np

from cnngen.training import TrainingConfig

# One epoch, short CodeCarbon intervals and a short inference loop, to keep tests fast.
FAST = TrainingConfig(
    epochs=1,
    measure_power_secs=0.5,
    idle_duration_s=0.5,
    inference_batches=5,
    inference_warmup_batches=1,
    inference_duration_s=0.2,
)
# FAST without the inference measurement, for tests that check only the training.
NO_INFERENCE = dataclasses.replace(FAST, inference_batches=0)


def load_digits_splits():
    """Return digits as 8x8x1 images in [0, 1], split 60/20/20 with stratification."""
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


def build_dropout(input_shape, num_classes):
    """A small CNN with dropout, so that a training also draws random masks."""
    import keras

    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Dropout(0.3),
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
    values = {
        "arch_id": arch_id,
        "phrase": f"input conv flatten dense output # {arch_id}",
        "seed": 1,
        "params": None,
        "flops": 100,
    }
    return SimpleNamespace(**{**values, **fields})


def small_for(item):
    """A picklable ``build_model_for`` that builds the small model for every item."""
    return build_dropout


def small_unless_doomed_for(item):
    """Like :func:`small_for`, but kills its own process for items whose id starts with "doomed"."""
    if item.arch_id.startswith("doomed"):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    return build_dropout
