"""Parsing and checking the official file formats of Fashion-MNIST and CIFAR.

This module owns the gzip IDX format of Fashion-MNIST, the pickled batches of CIFAR (in the
tar.gz archive or its extracted folder) and the checksums of the official files. It turns one
folder or archive into uint8 NHWC images and int64 labels. Where the files are searched is left
to :mod:`cnngen.dataset_lookup`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cnngen.errors import DatasetError

# SHA-256 of the decompressed official Fashion-MNIST IDX files, computed from Debian's
# dataset-fashion-mnist 0.0~git20200523.55506a9-1. The .gz files are not compared, because
# Debian rewrote their gzip headers at build time (no file name, 2020-06-05 as time stamp), so
# their MD5s differ from those that Zalando publishes. The decompressed content is Zalando's:
# its MD5s (for example f4a8712d7a061bf5bd6d2ca38dc4d50a for train-images-idx3-ubyte) equal the
# ones that other Fashion-MNIST loaders check for the extracted official downloads.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

# (images, labels) file stems, training part first. Each file may be gzip-compressed (.gz) or not.
FASHION_MNIST_PARTS = (
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
)
_FASHION_MNIST_REMEDY = (
    "delete it and reinstall dataset-fashion-mnist, or download it again from "
    "https://github.com/zalandoresearch/fashion-mnist"
)

# The top-level ("global") names that an official CIFAR pickle may refer to: NumPy's array
# reconstruction and, in pickles written by Python 3 with protocol 2, the bytes decoder.
_ALLOWED_PICKLE_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


@dataclass(frozen=True)
class CifarLayout:
    """Names and MD5s of the official python-pickle release of one CIFAR data set."""

    archive: str
    folder: str
    archive_md5: str
    members: tuple[tuple[str, str], ...]  # (file name, MD5), training batches before test ones
    label_key: bytes


# MD5s of the archives as published on https://www.cs.toronto.edu/~kriz/cifar.html, and of the
# files inside them as torchvision's CIFAR10 and CIFAR100 classes check them.
# NOTE: the CIFAR readers have run only on small files built in the official format. No real
# archive has been read, so these MD5s have not been compared with a real download.
CIFAR_LAYOUTS = {
    "cifar10": CifarLayout(
        archive="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        archive_md5="c58f30108f718f92721af3b95e74349a",
        members=(
            ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
            ("test_batch", "40351d587109b95175f43aff81a1287e"),
        ),
        label_key=b"labels",
    ),
    "cifar100": CifarLayout(
        archive="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
        members=(
            ("train", "16019d7e3df5f24257cddd939b257f8d"),
            ("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
        ),
        label_key=b"fine_labels",
    ),
}


def contains_files(name: str, path: Path) -> bool:
    """Tell whether ``path`` contains any file of the data set, even an incomplete set."""
    if name != "fashion_mnist" and path.name.endswith(".tar.gz"):
        return path.is_file()
    if not path.is_dir():
        return False
    if name == "fashion_mnist":
        stems = [stem for part in FASHION_MNIST_PARTS for stem in part]
        return any(_idx_file(path, stem) is not None for stem in stems)
    return any((path / member).is_file() for member, _ in CIFAR_LAYOUTS[name].members)


def read_files(name: str, path: Path, verify_checksums: bool):
    """Read a data set from a folder or archive that :func:`contains_files` accepted.

    Args:
        name: "fashion_mnist", "cifar10" or "cifar100".
        path: The folder, or for CIFAR the folder or tar.gz archive.
        verify_checksums: Whether to compare the files with the official checksums.

    Returns:
        A tuple (images, labels): uint8 images of shape (N, height, width, channels) and int64
        labels, the official training images first.

    Raises:
        DatasetError: If a file is missing, corrupt, or contains arrays of the wrong shape.
    """
    if name == "fashion_mnist":
        return _read_fashion_mnist(path, verify_checksums)
    return _read_cifar(name, path, verify_checksums)


# Fashion-MNIST: gzip IDX files.


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_fashion_mnist(folder: Path, verify_checksums: bool):
    files = {stem: _idx_file(folder, stem) for part in FASHION_MNIST_PARTS for stem in part}
    missing = [f"{stem}.gz" for stem, path in files.items() if path is None]
    if missing:
        raise DatasetError(
            f"Fashion-MNIST folder {folder} is incomplete: {', '.join(missing)} not found; "
            f"copy the missing files there or reinstall dataset-fashion-mnist"
        )

    images, labels = [], []
    for images_stem, labels_stem in tqdm(
        FASHION_MNIST_PARTS, desc="Reading Fashion-MNIST", unit="part", disable=None
    ):
        part_images = _read_idx(files[images_stem], images_stem, 3, verify_checksums)
        part_labels = _read_idx(files[labels_stem], labels_stem, 1, verify_checksums)
        _check_fashion_mnist_part(files[images_stem], part_images, files[labels_stem], part_labels)
        images.append(part_images)
        labels.append(part_labels)
    return np.concatenate(images)[..., np.newaxis], np.concatenate(labels).astype(np.int64)


def _check_fashion_mnist_part(images_path, images, labels_path, labels) -> None:
    if images.shape[1:] != (28, 28):
        height, width = images.shape[1:]
        raise DatasetError(
            f"{images_path} contains images of {height}x{width} pixels, expected 28x28 for "
            f"Fashion-MNIST; {_FASHION_MNIST_REMEDY}"
        )
    if len(labels) != len(images):
        raise DatasetError(
            f"{labels_path} contains {len(labels)} labels for the {len(images)} images of "
            f"{images_path}; {_FASHION_MNIST_REMEDY}"
        )
    if labels.size and labels.max() > 9:
        raise DatasetError(
            f"{labels_path} contains label {labels.max()}, expected 0 to 9; {_FASHION_MNIST_REMEDY}"
        )


def _read_idx(path: Path, stem: str, num_dims: int, verify_checksums: bool) -> np.ndarray:
    """Parse an IDX file of unsigned bytes: magic 0x0000080N, N big-endian sizes, then the data."""
    try:
        content = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(
            f"{path} is corrupt or truncated: {error}; {_FASHION_MNIST_REMEDY}"
        ) from error

    expected_magic = bytes([0, 0, 0x08, num_dims])
    if content[:4] != expected_magic:
        raise DatasetError(
            f"{path} is not an IDX file of unsigned bytes with {num_dims} dimensions: its magic "
            f"number is 0x{content[:4].hex()}, expected 0x{expected_magic.hex()}; "
            f"{_FASHION_MNIST_REMEDY}"
        )
    header_size = 4 + 4 * num_dims
    shape = tuple(int(size) for size in np.frombuffer(content[4:header_size], ">u4"))
    expected_size = header_size + int(np.prod(shape)) if len(shape) == num_dims else header_size
    if len(shape) != num_dims or len(content) != expected_size:
        raise DatasetError(
            f"{path} is corrupt or truncated: expected {expected_size} bytes for a header and "
            f"an array of shape {shape}, found {len(content)} bytes; {_FASHION_MNIST_REMEDY}"
        )

    if verify_checksums:
        actual = hashlib.sha256(content).hexdigest()
        if actual != FASHION_MNIST_SHA256[stem]:
            raise DatasetError(
                f"{path} is corrupt or truncated: its content has SHA-256 {actual}, expected "
                f"{FASHION_MNIST_SHA256[stem]} for the official file; {_FASHION_MNIST_REMEDY}"
            )
    return np.frombuffer(content, np.uint8, offset=header_size).reshape(shape)


# CIFAR: pickled batches, in a tar.gz archive or an extracted folder.


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that loads only the NumPy arrays, lists and bytes of a CIFAR batch.

    A pickle can run any function it names, so every other global is rejected.
    """

    def find_class(self, module: str, name: str):
        # Pickles written by NumPy 1 name numpy.core, which NumPy 2 renamed numpy._core.
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core") :]
        if (module, name) not in _ALLOWED_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"it refers to {module}.{name}, which a CIFAR batch never does"
            )
        return super().find_class(module, name)


def _read_cifar(name: str, path: Path, verify_checksums: bool):
    layout = CIFAR_LAYOUTS[name]
    remedy = (
        f"delete it and download {layout.archive} again from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html"
    )
    if path.is_file():
        contents = _read_cifar_archive(layout, path, verify_checksums, remedy)
    else:
        contents = _read_cifar_folder(layout, path)

    images, labels = [], []
    for (member, md5), (origin, content) in zip(layout.members, contents, strict=True):
        actual_md5 = hashlib.md5(content).hexdigest() if verify_checksums else md5
        if actual_md5 != md5:
            raise DatasetError(
                f"{origin} is corrupt or truncated: its MD5 is {actual_md5}, expected {md5} for "
                f"the official {member}; {remedy}"
            )
        batch_images, batch_labels = _parse_cifar_batch(content, origin, layout.label_key, remedy)
        images.append(batch_images)
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


def _read_cifar_folder(layout: CifarLayout, folder: Path):
    missing = [member for member, _ in layout.members if not (folder / member).is_file()]
    if missing:
        raise DatasetError(
            f"CIFAR folder {folder} is incomplete: {', '.join(missing)} not found; "
            f"extract {layout.archive} there again"
        )
    paths = [folder / member for member, _ in layout.members]
    return [(path, path.read_bytes()) for path in tqdm(paths, desc="Reading CIFAR", disable=None)]


def _read_cifar_archive(layout: CifarLayout, archive: Path, verify_checksums: bool, remedy: str):
    if verify_checksums:
        digest = hashlib.md5()
        with archive.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != layout.archive_md5:
            raise DatasetError(
                f"{archive} is corrupt or truncated: its MD5 is {digest.hexdigest()}, expected "
                f"{layout.archive_md5} for the official archive; {remedy}"
            )

    # Read the members in stream order, because looking one up by name rescans the gzip stream.
    expected_members = {f"{layout.folder}/{member}": member for member, _ in layout.members}
    found = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for entry in tqdm(tar, desc="Reading CIFAR", unit="member", disable=None):
                if entry.name in expected_members and entry.isfile():
                    found[entry.name] = tar.extractfile(entry).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{archive} is corrupt or truncated: {error}; {remedy}") from error

    missing = [name for name in expected_members if name not in found]
    if missing:
        raise DatasetError(
            f"{archive} does not contain {', '.join(missing)}, so it is not the official "
            f"{layout.archive}; {remedy}"
        )
    return [(f"{archive} (member {name})", found[name]) for name in expected_members]


def _parse_cifar_batch(content: bytes, origin, label_key: bytes, remedy: str):
    try:
        batch = _BatchUnpickler(io.BytesIO(content), encoding="bytes").load()
    # Unpickling damaged bytes fails with many exception types (UnpicklingError, EOFError,
    # ValueError, struct.error, ...), so all are reported as a corrupt file.
    except Exception as error:
        raise DatasetError(f"{origin} is not a valid CIFAR batch: {error}; {remedy}") from error

    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetError(
            f"{origin} is not a CIFAR batch: expected a dict with keys b'data' and {label_key!r}, "
            f"found {keys}; {remedy}"
        )
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (3072,):
        shape = getattr(data, "shape", None)
        raise DatasetError(
            f"{origin} contains image data of shape {shape}, expected (N, 3072) uint8 rows of "
            f"32x32 pixels in 3 colour planes; {remedy}"
        )
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise DatasetError(
            f"{origin} contains labels that are not integers: {error}; {remedy}"
        ) from error
    if labels.shape != (len(data),):
        raise DatasetError(
            f"{origin} contains {labels.size} labels for {len(data)} images; {remedy}"
        )

    # Each row contains the red, then green, then blue 32x32 plane; Keras expects NHWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels
