"""Where the files of the supported data sets are searched, and the optional download.

This module owns the look-up order of data set files and the fallback to ``keras.datasets``. It
returns pooled uint8 images and int64 labels, the official training images first. Parsing and
checking the official file formats is left to :mod:`cnngen.dataset_formats`; the table of data
sets, the argument checks and the split protocol to :mod:`cnngen.datasets`.

Locations searched, in order (the first one that contains the data set is used):

1. the ``data_dir`` argument, then ``$CNNGEN_DATA_DIR``: the folder itself and the usual
   subfolder or archive inside it (``fashion-mnist/``, ``cifar-10-batches-py/``,
   ``cifar-10-python.tar.gz``, ``cifar-100-python/``, ``cifar-100-python.tar.gz``);
2. ``$KERAS_HOME/datasets`` when ``KERAS_HOME`` is set, then ``~/.keras/datasets``: the same
   subfolders and archives, plus the Keras 3 cache folders ``cifar-10-batches-py-target/`` and
   ``cifar-100-python-target/``;
3. for Fashion-MNIST only, ``/usr/share/datasets/fashion-mnist`` (Debian package
   ``dataset-fashion-mnist``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnngen import dataset_formats
from cnngen.errors import DatasetError

if TYPE_CHECKING:
    from cnngen.datasets import DatasetInfo

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "CNNGEN_DATA_DIR"

# The folder that the Debian package dataset-fashion-mnist installs the four .gz files into.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_HOW_TO_OBTAIN = {
    "fashion_mnist": (
        "Install the Debian package dataset-fashion-mnist, or put the four files "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz from https://github.com/zalandoresearch/fashion-mnist into one "
        "of these folders"
    ),
    "cifar10": (
        "Download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
        "place the archive, or the cifar-10-batches-py folder extracted from it, at one of these "
        "paths"
    ),
    "cifar100": (
        "Download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
        "place the archive, or the cifar-100-python folder extracted from it, at one of these "
        "paths"
    ),
}


def load_pool(info: DatasetInfo, data_dir, download: bool, verify_checksums: bool):
    """Find and read a data set, pooling the official training images before the test images.

    Args:
        info: The data set to load.
        data_dir: Folder searched first, or None.
        download: Whether to try ``keras.datasets`` when no location contains the files.
        verify_checksums: Whether to compare the files with the official checksums.

    Returns:
        A tuple (images, labels, source): uint8 images of shape (N, *info.input_shape), int64
        labels, and where they were read from.

    Raises:
        DatasetError: If the files are missing, corrupt or contain arrays of the wrong shape.
    """
    if info.name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = digits.images.astype(np.uint8)[..., np.newaxis]
        return images, digits.target.astype(np.int64), "scikit-learn bundled"

    searched = candidate_paths(info.name, data_dir)
    for path in searched:
        if not dataset_formats.contains_files(info.name, path):
            continue
        images, labels = dataset_formats.read_files(info.name, path, verify_checksums)
        check_pool(info, images, labels, path)
        return images, labels, str(path)

    if download:
        return _download_with_keras(info, searched)
    raise DatasetError(_not_found_message(info.name, searched))


def candidate_paths(name: str, data_dir) -> list[Path]:
    """List the folders and archives searched for a data set, in look-up order."""
    if name == "fashion_mnist":
        subpaths = ["fashion-mnist"]
    else:
        layout = dataset_formats.CIFAR_LAYOUTS[name]
        subpaths = [layout.folder, f"{layout.folder}-target/{layout.folder}", layout.archive]

    user_roots = []
    if data_dir is not None:
        explicit = Path(data_dir).expanduser()
        if not explicit.is_dir():
            raise DatasetError(
                f"data_dir {str(explicit)!r} is not an existing folder; pass the folder that "
                f"contains the {name} files, or omit data_dir to search the default locations"
            )
        user_roots.append(explicit)
    if os.environ.get(DATA_DIR_ENV):
        user_roots.append(Path(os.environ[DATA_DIR_ENV]).expanduser())
    keras_roots = [Path("~/.keras/datasets").expanduser()]
    if os.environ.get("KERAS_HOME"):
        keras_roots.insert(0, Path(os.environ["KERAS_HOME"]).expanduser() / "datasets")

    paths = []
    for root in user_roots:
        paths += [root] + [root / subpath for subpath in subpaths]
    for root in keras_roots:
        paths += [root / subpath for subpath in subpaths]
    if name == "fashion_mnist":
        paths.append(DEBIAN_FASHION_MNIST_DIR)
    # The same path can come twice, for example when KERAS_HOME is ~/.keras.
    return list(dict.fromkeys(paths))


def check_pool(info: DatasetInfo, images: np.ndarray, labels: np.ndarray, origin) -> None:
    """Raise a DatasetError naming ``origin`` unless the arrays fit the data set's shape."""
    if images.ndim != 4 or images.shape[1:] != info.input_shape:
        raise DatasetError(
            f"{origin} contains images of shape {images.shape[1:]}, expected {info.input_shape} "
            f"for {info.name}; replace it with the official files"
        )
    if labels.shape != (len(images),):
        raise DatasetError(
            f"{origin} contains {len(images)} images but {labels.size} labels; "
            f"replace it with the official files"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise DatasetError(
            f"{origin} contains labels from {labels.min()} to {labels.max()}, expected 0 to "
            f"{info.num_classes - 1} for {info.name}; replace it with the official files"
        )


def _not_found_message(name: str, searched: list[Path]) -> str:
    paths = "\n".join(f"  {path}" for path in searched)
    return (
        f"{name} files not found. Searched:\n{paths}\n{_HOW_TO_OBTAIN[name]}, or set "
        f"{DATA_DIR_ENV} or data_dir to the folder that contains them, or pass download=True to "
        f"fetch them with keras.datasets (needs network access)."
    )


def _download_with_keras(info: DatasetInfo, searched: list[Path]):
    """Fetch the data set with keras.datasets and pool it like the file readers do."""
    loader = f"keras.datasets.{info.name}.load_data()"
    logger.info("%s files not found locally; trying %s", info.name, loader)
    try:
        import keras

        module = getattr(keras.datasets, info.name)
        options = {"label_mode": "fine"} if info.name == "cifar100" else {}
        (x_train, y_train), (x_test, y_test) = module.load_data(**options)
    # Keras reports a missing network, a refused server or a broken download with many
    # exception types (URLError, OSError, ValueError, tarfile errors), so all are caught here.
    except Exception as error:
        raise DatasetError(
            f"{_not_found_message(info.name, searched)}\n{loader} also failed: {error}"
        ) from error

    images = np.concatenate([x_train, x_test])
    if images.ndim == 3:
        images = images[..., np.newaxis]
    labels = np.concatenate([y_train, y_test]).reshape(-1).astype(np.int64)
    check_pool(info, images, labels, loader)
    return images, labels, f"{loader} download"
