"""Tiny data set files in the official formats, so tests run the real parsers on small inputs.

The layouts follow the published descriptions. Fashion-MNIST is four IDX files of unsigned
bytes: magic 0x00000803 for images or 0x00000801 for labels, then big-endian sizes. CIFAR is
pickled dicts with b"data" rows of 3072 bytes (the red, green, then blue 32x32 planes) and
b"labels" or b"fine_labels", in a ``cifar-*-python.tar.gz`` archive or its extracted folder.
"""

from __future__ import annotations

import gzip
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Official archive name, folder inside it, training members, test members, label key, classes.
CIFAR_LAYOUTS = {
    "cifar10": (
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        [f"data_batch_{number}" for number in range(1, 6)],
        ["test_batch"],
        b"labels",
        10,
    ),
    "cifar100": (
        "cifar-100-python.tar.gz",
        "cifar-100-python",
        ["train"],
        ["test"],
        b"fine_labels",
        100,
    ),
}


@dataclass
class Pool:
    """Images and labels written to the files, in pool order (training files before test ones).

    Attributes:
        images: uint8 images of shape (N, height, width, channels).
        labels: int64 labels.
        path: The folder or archive that contains the files.
    """

    images: np.ndarray
    labels: np.ndarray
    path: Path


def idx_bytes(array: np.ndarray, magic: bytes | None = None) -> bytes:
    """Encode a uint8 array as an IDX file; ``magic`` replaces the correct magic number."""
    header = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    sizes = np.asarray(array.shape, dtype=">u4").tobytes()
    return header + sizes + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_bytes(path: Path, content: bytes) -> Path:
    """Write ``content`` to ``path``, gzip-compressed when the name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


def balanced_labels(count: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``count`` labels with every class equally often (give or take one), shuffled."""
    return rng.permutation(np.arange(count) % num_classes).astype(np.int64)


def write_fashion_mnist(
    folder: Path, num_train: int = 60, num_test: int = 20, seed: int = 0, compressed: bool = True
) -> Pool:
    """Write the four Fashion-MNIST files with random 28x28 images and balanced labels."""
    rng = np.random.default_rng(seed)
    suffix = ".gz" if compressed else ""
    images, labels = [], []
    for prefix, count in (("train", num_train), ("t10k", num_test)):
        part_images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        part_labels = balanced_labels(count, 10, rng)
        write_bytes(folder / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(part_images))
        write_bytes(folder / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(part_labels))
        images.append(part_images)
        labels.append(part_labels)
    return Pool(np.concatenate(images)[..., np.newaxis], np.concatenate(labels), folder)


def cifar_batch(images: np.ndarray, labels: np.ndarray, label_key: bytes) -> dict:
    """Build a CIFAR batch dict with the official keys from NHWC images."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"data": rows,
        label_key: [int(label) for label in labels],
        b"filenames": [f"image_{index}.png".encode() for index in range(len(images))],
    }
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [int(label) // 5 for label in labels]
    return batch


def write_cifar_folder(
    root: Path, name: str, images_per_class: int = 12, seed: int = 0, protocol: int = 2
) -> Pool:
    """Write an extracted CIFAR folder under ``root``; returns the folder and what it contains.

    The pool has ``images_per_class`` images of each class, and one sixth of them is the test
    part, as in the official 50,000 / 10,000 division. Protocol 2, the default, names NumPy's
    modules as the official NumPy 1 pickles do.
    """
    _, folder_name, train_members, test_members, label_key, num_classes = CIFAR_LAYOUTS[name]
    rng = np.random.default_rng(seed)
    members = train_members + test_members
    total = images_per_class * num_classes
    test_count = total // 6
    sizes = _divide(total - test_count, len(train_members)) + _divide(test_count, len(test_members))

    folder = root / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = [], []
    for member, size in zip(members, sizes, strict=True):
        member_images = rng.integers(0, 256, size=(size, 32, 32, 3), dtype=np.uint8)
        member_labels = balanced_labels(size, num_classes, rng)
        batch = cifar_batch(member_images, member_labels, label_key)
        (folder / member).write_bytes(_pickle_batch(batch, protocol))
        images.append(member_images)
        labels.append(member_labels)
    return Pool(np.concatenate(images), np.concatenate(labels), folder)


def write_cifar_archive(root: Path, name: str, **options) -> Pool:
    """Write the official tar.gz archive of a tiny CIFAR data set under ``root``."""
    archive_name, folder_name = CIFAR_LAYOUTS[name][:2]
    staging = root / "staging"
    pool = write_cifar_folder(staging, name, **options)
    archive = root / archive_name
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / folder_name, arcname=folder_name)
    return Pool(pool.images, pool.labels, archive)


def _pickle_batch(batch: dict, protocol: int) -> bytes:
    """Pickle a batch; with protocol 2, name NumPy's module numpy.core as the official files do.

    The official batches were written with NumPy 1, whose array reconstructor lives in
    numpy.core.multiarray (numpy._core.multiarray since NumPy 2). Protocol 2 stores the name
    as plain text, so it can be replaced in place.
    """
    content = pickle.dumps(batch, protocol=protocol)
    if protocol == 2:
        content = content.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    return content


def _divide(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]
