"""Image classification data sets: the table of shapes, loading, and the seeded split protocol.

This module owns the list of supported data sets (:data:`DATASETS`), the public loader
:func:`load_dataset` and the split protocol that turns the pooled official images into training,
validation and test sets. Finding, checking and parsing the official files is left to
:mod:`cnngen.dataset_lookup`; batching, augmentation and feeding Keras to :mod:`cnngen.training`.

Importing this module does not import TensorFlow, Keras or scikit-learn, so sampling and
``cnngen describe`` can read :data:`DATASETS` cheaply.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from cnngen import dataset_lookup
from cnngen.errors import DatasetError

logger = logging.getLogger(__name__)

# The largest seed that scikit-learn's random_state (a NumPy RandomState) accepts, plus one.
_SEED_LIMIT = 2**32


@dataclass(frozen=True)
class DatasetInfo:
    """Shape and class count of a supported data set, known without loading it.

    Attributes:
        name: The name that :func:`load_dataset` takes.
        input_shape: Height, width and channels of one image.
        num_classes: Number of labels, numbered from 0.
        description: One line for listings.
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    description: str


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("digits", (8, 8, 1), 10, "scikit-learn handwritten digits, 1,797 images"),
        DatasetInfo(
            "fashion_mnist", (28, 28, 1), 10, "Zalando Fashion-MNIST clothing, 70,000 images"
        ),
        DatasetInfo("cifar10", (32, 32, 3), 10, "CIFAR-10 colour photographs, 60,000 images"),
        DatasetInfo("cifar100", (32, 32, 3), 100, "CIFAR-100 fine labels, 60,000 images"),
    )
}


def get_dataset_info(name: str) -> DatasetInfo:
    """Look up a data set by name.

    Args:
        name: One of the keys of :data:`DATASETS`.

    Returns:
        The data set's shape and class count.

    Raises:
        DatasetError: If the name is not a supported data set.
    """
    if not isinstance(name, str):
        raise DatasetError(
            f"data set name must be a string, got {name!r} ({type(name).__name__}); "
            f"expected one of: {', '.join(sorted(DATASETS))}"
        )
    if name in DATASETS:
        return DATASETS[name]

    message = f"unknown data set {name!r}; expected one of: {', '.join(sorted(DATASETS))}"
    close = difflib.get_close_matches(name.lower().replace("-", "_"), DATASETS, n=1, cutoff=0.5)
    if close:
        message += f". Did you mean {close[0]!r}?"
    raise DatasetError(message)


@dataclass
class DatasetSplits:
    """Training, validation and test arrays of one data set, with the record of how they were cut.

    Images are float32 in [0, 1] with shape (N, height, width, channels). Labels are int64 class
    numbers. The index arrays point into the pool: the official training images followed by the
    official test images, in file order.

    Attributes:
        info: The data set's shape and class count.
        x_train: Training images.
        y_train: Training labels.
        x_val: Validation images.
        y_val: Validation labels.
        x_test: Test images.
        y_test: Test labels.
        split_seed: The seed of the stratified splits and subsamples.
        source: Where the images were read from: a folder or archive path, "scikit-learn
            bundled", or the keras.datasets download.
        test_fraction: Fraction of the pool that went to the test set before subsampling.
        validation_fraction: Fraction of the remaining training part that went to validation.
        train_index: Pool positions of the training images.
        val_index: Pool positions of the validation images.
        test_index: Pool positions of the test images.
    """

    info: DatasetInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    split_seed: int
    source: str
    test_fraction: float
    validation_fraction: float
    train_index: np.ndarray
    val_index: np.ndarray
    test_index: np.ndarray

    def summary(self) -> dict:
        """Describe the split for a run's records, as plain JSON-compatible values.

        Returns:
            The data set name, shape, split sizes, seed, fractions, source and ``split_sha256``.
            That is the SHA-256 of the train, validation and test index arrays, concatenated in
            that order as little-endian int64. Two runs compare it to check that they used the
            same split.
        """
        indices = np.concatenate([self.train_index, self.val_index, self.test_index])
        digest = hashlib.sha256(indices.astype("<i8").tobytes()).hexdigest()
        return {
            "dataset": self.info.name,
            "input_shape": list(self.info.input_shape),
            "num_classes": self.info.num_classes,
            "num_train": int(len(self.train_index)),
            "num_val": int(len(self.val_index)),
            "num_test": int(len(self.test_index)),
            "split_seed": self.split_seed,
            "test_fraction": self.test_fraction,
            "validation_fraction": self.validation_fraction,
            "source": self.source,
            "split_sha256": digest,
        }


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.2,
    max_train: int | None = None,
    max_test: int | None = None,
    download: bool = False,
    verify_checksums: bool = True,
) -> DatasetSplits:
    """Load a data set and split it with a seeded, stratified protocol.

    The official training and test images are pooled. A stratified split sends
    ``test_fraction`` of the pool to the test set, then ``validation_fraction`` of the rest to
    the validation set. ``max_train`` and ``max_test`` then cap the training and test sets with
    seeded stratified subsamples, so a quick run uses subsets of the full run's splits. The
    validation set is capped in the same proportion, ``ceil(max_train * validation_fraction /
    (1 - validation_fraction))`` images, but never below one image per class. The same
    arguments give identical arrays.

    Files are searched in this order, and the first location that contains the data set is used:
    ``data_dir`` (which must exist when given), ``$CNNGEN_DATA_DIR``, ``$KERAS_HOME/datasets``
    when ``KERAS_HOME`` is set, ``~/.keras/datasets``, and for Fashion-MNIST only
    ``/usr/share/datasets/fashion-mnist`` (Debian package dataset-fashion-mnist). The file and
    folder names checked in each location are listed in :mod:`cnngen.dataset_lookup`. ``digits``
    is bundled with scikit-learn and ignores ``data_dir``, ``download`` and ``verify_checksums``.

    Args:
        name: A key of :data:`DATASETS`.
        data_dir: Folder searched first for the data set's files.
        seed: Seed of the splits and subsamples, in [0, 2**32).
        test_fraction: Fraction of the pool for the test set, in (0, 1).
        validation_fraction: Fraction of the training part for validation, in (0, 1).
        max_train: Maximum number of training images, or None for all of them.
        max_test: Maximum number of test images, or None for all of them.
        download: Whether to call ``keras.datasets.<name>.load_data()`` when no location contains
            the files. That needs network access.
        verify_checksums: Whether to compare the files with the official checksums. Only tests
            that build small files in the official formats turn this off.

    Returns:
        The split arrays and the record of how they were made.

    Raises:
        DatasetError: If an argument is invalid, the files are missing, corrupt or of the wrong
            shape, or a stratified split is impossible with the requested sizes.
    """
    info = get_dataset_info(name)
    _check_split_arguments(seed, test_fraction, validation_fraction, max_train, max_test)

    images, labels, source = dataset_lookup.load_pool(info, data_dir, download, verify_checksums)
    train_index, val_index, test_index = _split_indices(
        labels, seed, test_fraction, validation_fraction, max_train, max_test
    )

    # Convert to float32 only after subsampling, so a quick run on CIFAR does not hold the
    # whole pool as floats.
    scale = np.float32(16.0 if info.name == "digits" else 255.0)
    splits = DatasetSplits(
        info=info,
        x_train=images[train_index].astype(np.float32) / scale,
        y_train=labels[train_index],
        x_val=images[val_index].astype(np.float32) / scale,
        y_val=labels[val_index],
        x_test=images[test_index].astype(np.float32) / scale,
        y_test=labels[test_index],
        split_seed=int(seed),
        source=source,
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
        train_index=train_index,
        val_index=val_index,
        test_index=test_index,
    )
    logger.info(
        "Loaded %s from %s: %d training, %d validation, %d test images (split seed %d)",
        info.name,
        source,
        len(train_index),
        len(val_index),
        len(test_index),
        seed,
    )
    return splits


def _check_split_arguments(seed, test_fraction, validation_fraction, max_train, max_test):
    is_integer = isinstance(seed, int | np.integer) and not isinstance(seed, bool)
    if not is_integer or not 0 <= seed < _SEED_LIMIT:
        raise DatasetError(
            f"seed must be an integer in [0, 2**32), got {seed!r}; pass for example seed=0"
        )
    for parameter, value in (
        ("test_fraction", test_fraction),
        ("validation_fraction", validation_fraction),
    ):
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not is_number or not 0.0 < value < 1.0:
            raise DatasetError(
                f"{parameter} must be a number strictly between 0 and 1, got {value!r}; "
                f"pass for example {parameter}=0.2"
            )
    for parameter, value in (("max_train", max_train), ("max_test", max_test)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise DatasetError(
                f"{parameter} must be a positive integer or None, got {value!r}; "
                f"pass None to keep every image"
            )


def _split_indices(labels, seed, test_fraction, validation_fraction, max_train, max_test):
    """Return the train, validation and test pool positions (see :func:`load_dataset`)."""
    num_classes = len(np.unique(labels))
    pool = np.arange(len(labels))

    train_part, test = _stratified_split(pool, labels, test_fraction, seed, "test_fraction")
    train, val = _stratified_split(
        train_part, labels, validation_fraction, seed, "validation_fraction"
    )

    if max_train is not None and max_train < len(train):
        share = validation_fraction / (1.0 - validation_fraction)
        max_val = max(math.ceil(max_train * share), num_classes)
        train = _subsample(train, labels, max_train, seed, "max_train")
        if max_val < len(val):
            val = _subsample(val, labels, max_val, seed, "max_train")
    if max_test is not None and max_test < len(test):
        test = _subsample(test, labels, max_test, seed, "max_test")
    return train, val, test


def _stratified_split(indices, labels, test_size, seed, parameter):
    """Split ``indices`` in two, keeping class proportions. ``test_size`` is a fraction or count."""
    from sklearn.model_selection import train_test_split

    try:
        first, second = train_test_split(
            indices, test_size=test_size, stratify=labels[indices], random_state=seed
        )
    except ValueError as error:
        num_classes = len(np.unique(labels[indices]))
        raise DatasetError(
            f"cannot make a stratified split of {len(indices)} images of {num_classes} classes "
            f"with {parameter} as requested: {error}. Choose a {parameter} that leaves at least "
            f"one image of every class on each side."
        ) from error
    return first, second


def _subsample(indices, labels, size, seed, parameter):
    """Draw ``size`` of ``indices`` with seeded, proportional per-class quotas.

    Quotas are each class's exact share rounded down, plus one for the classes with the largest
    remainders. scikit-learn's ``train_test_split`` is not used here because it also needs every
    class in the discarded part, which fails when only a few images are dropped.
    """
    classes, counts = np.unique(labels[indices], return_counts=True)
    if size < len(classes):
        raise DatasetError(
            f"{parameter}={size} is smaller than the number of classes ({len(classes)}), so a "
            f"stratified subsample cannot keep every class; pass {parameter} >= {len(classes)}"
        )

    # Largest-remainder rounding, with ties broken by the seeded generator.
    rng = np.random.default_rng(seed)
    exact = counts * size / len(indices)
    quotas = np.floor(exact).astype(np.int64)
    tie_breaker = rng.permutation(len(classes))
    by_remainder = np.lexsort((tie_breaker, -(exact - quotas)))
    quotas[by_remainder[: size - quotas.sum()]] += 1

    chosen = [
        rng.choice(indices[labels[indices] == label], quota, replace=False)
        for label, quota in zip(classes, quotas, strict=True)
    ]
    return rng.permutation(np.concatenate(chosen))
