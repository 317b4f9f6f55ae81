"""Tests of cnngen.datasets, cnngen.dataset_lookup and cnngen.dataset_formats.

Official-format files are built small in tmp_path by fixtures_datasets and read by the real
parsers. One group reads the real Fashion-MNIST files of the Debian package when installed.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from fixtures_datasets import (
    FASHION_MNIST_FILES,
    idx_bytes,
    write_bytes,
    write_cifar_archive,
    write_cifar_folder,
    write_fashion_mnist,
)

from cnngen import dataset_lookup
from cnngen.datasets import DATASETS, DatasetSplits, get_dataset_info, load_dataset
from cnngen.errors import DatasetError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_locations(tmp_path, monkeypatch):
    """Point every default location into tmp_path, so no test reads the user's files."""
    monkeypatch.delenv("CNNGEN_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(dataset_lookup, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no_debian")


def pool_of(splits: DatasetSplits) -> tuple[np.ndarray, np.ndarray]:
    """Return all indices and labels of the three splits, concatenated."""
    indices = np.concatenate([splits.train_index, splits.val_index, splits.test_index])
    labels = np.concatenate([splits.y_train, splits.y_val, splits.y_test])
    return indices, labels


def assert_split_matches_pool(splits: DatasetSplits, images: np.ndarray, labels: np.ndarray):
    """Check every split against the images and labels that the fixture wrote."""
    for x, y, index in (
        (splits.x_train, splits.y_train, splits.train_index),
        (splits.x_val, splits.y_val, splits.val_index),
        (splits.x_test, splits.y_test, splits.test_index),
    ):
        assert x.dtype == np.float32
        assert np.array_equal(x, images[index].astype(np.float32) / np.float32(255))
        assert np.array_equal(y, labels[index])


# The table of data sets.


@pytest.mark.parametrize(
    ("name", "input_shape", "num_classes"),
    [
        ("digits", (8, 8, 1), 10),
        ("fashion_mnist", (28, 28, 1), 10),
        ("cifar10", (32, 32, 3), 10),
        ("cifar100", (32, 32, 3), 100),
    ],
)
def test_dataset_info_table(name, input_shape, num_classes):
    info = get_dataset_info(name)
    assert info is DATASETS[name]
    assert info.name == name
    assert info.input_shape == input_shape
    assert info.num_classes == num_classes
    assert info.description


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("fashion-mnist", r"unknown data set 'fashion-mnist'; .* Did you mean 'fashion_mnist'\?"),
        ("CIFAR10", r"unknown data set 'CIFAR10'; .* Did you mean 'cifar10'\?"),
        ("cifar_100", r"Did you mean 'cifar100'\?"),
        (
            "imagenet",
            r"^unknown data set 'imagenet'; expected one of: cifar10, cifar100, digits, "
            r"fashion_mnist$",
        ),
        ("", r"unknown data set ''"),
        (3, r"data set name must be a string, got 3 \(int\)"),
        (None, r"data set name must be a string, got None"),
    ],
)
def test_dataset_info_rejects(name, match):
    with pytest.raises(DatasetError, match=match):
        get_dataset_info(name)


def test_import_stays_light():
    """Importing the data set modules must not pull in TensorFlow, Keras or scikit-learn."""
    code = (
        "import sys, cnngen.datasets, cnngen.dataset_lookup, cnngen.dataset_formats; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# Digits and the split protocol.


def test_digits_shapes_and_values():
    splits = load_dataset("digits")
    assert splits.source == "scikit-learn bundled"
    assert len(splits.x_train) + len(splits.x_val) + len(splits.x_test) == 1797
    for x, y in (
        (splits.x_train, splits.y_train),
        (splits.x_val, splits.y_val),
        (splits.x_test, splits.y_test),
    ):
        assert x.shape[1:] == (8, 8, 1)
        assert x.dtype == np.float32
        assert y.dtype == np.int64
        assert len(x) == len(y)
        assert x.min() == 0.0
        assert x.max() == 1.0
        assert set(np.unique(y)) == set(range(10))


def test_split_sizes_follow_fractions():
    splits = load_dataset("digits", test_fraction=0.2, validation_fraction=0.2)
    # scikit-learn rounds the test side up: ceil(0.2 * 1797) = 360, ceil(0.2 * 1437) = 288.
    assert len(splits.test_index) == 360
    assert len(splits.val_index) == 288
    assert len(splits.train_index) == 1797 - 360 - 288


def test_split_sha256_is_stable():
    """A change of this value means runs before and after it used different digits splits."""
    summary = load_dataset("digits", seed=0).summary()
    # Recorded with scikit-learn 1.9.1, whose train_test_split draws the stratified splits.
    assert summary["split_sha256"] == (
        "17a920310e321ece44c9c709b56fe0088bac99eecf88fc740cd015aa6bf75c34"
    )


@pytest.mark.parametrize(
    "options", [{}, {"max_train": 200, "max_test": 50}, {"test_fraction": 0.3}]
)
def test_same_seed_same_arrays(options):
    first = load_dataset("digits", seed=7, **options)
    second = load_dataset("digits", seed=7, **options)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "test_index"):
        assert np.array_equal(getattr(first, field), getattr(second, field)), field
    assert first.summary() == second.summary()


def test_other_seed_other_split():
    first = load_dataset("digits", seed=0)
    second = load_dataset("digits", seed=1)
    assert not np.array_equal(np.sort(first.test_index), np.sort(second.test_index))
    assert first.summary()["split_sha256"] != second.summary()["split_sha256"]


def test_splits_are_disjoint_and_cover_pool():
    splits = load_dataset("digits", seed=3)
    indices, _ = pool_of(splits)
    assert len(np.unique(indices)) == len(indices)
    assert np.array_equal(np.sort(indices), np.arange(1797))


def test_splits_are_stratified():
    splits = load_dataset("digits", seed=5)
    _, labels = pool_of(splits)
    pool_counts = np.bincount(labels, minlength=10)
    train_part_counts = pool_counts - np.bincount(splits.y_test, minlength=10)
    expected = {
        "test": pool_counts * 0.2,
        "val": train_part_counts * 0.2,
    }
    actual = {
        "test": np.bincount(splits.y_test, minlength=10),
        "val": np.bincount(splits.y_val, minlength=10),
    }
    for part in ("test", "val"):
        assert np.all(np.abs(actual[part] - expected[part]) <= 1), part


@pytest.mark.parametrize(
    ("max_train", "max_test", "num_train", "num_val", "num_test"),
    [
        (100, 50, 100, 25, 50),
        (10, 10, 10, 10, 10),  # the validation cap never falls below one image per class
        (1001, None, 1001, 251, 360),
        (10**6, 10**6, 1149, 288, 360),  # caps above the split sizes keep every image
    ],
)
def test_max_train_and_max_test(max_train, max_test, num_train, num_val, num_test):
    full = load_dataset("digits", seed=2)
    capped = load_dataset("digits", seed=2, max_train=max_train, max_test=max_test)
    assert len(capped.x_train) == num_train
    assert len(capped.x_val) == num_val
    assert len(capped.x_test) == num_test

    # A quick run uses subsets of the full run's splits, so its test images were never trained on.
    assert set(capped.train_index) <= set(full.train_index)
    assert set(capped.val_index) <= set(full.val_index)
    assert set(capped.test_index) <= set(full.test_index)

    # Each class keeps its share of the full split, rounded up or down.
    for part in ("y_train", "y_val", "y_test"):
        full_counts = np.bincount(getattr(full, part), minlength=10)
        counts = np.bincount(getattr(capped, part), minlength=10)
        expected = full_counts * counts.sum() / full_counts.sum()
        assert np.all(np.abs(counts - expected) < 1), part
        assert counts.min() >= 1, part


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"test_fraction": 0}, r"test_fraction must be a number strictly between 0 and 1, got 0"),
        ({"test_fraction": 1.0}, r"test_fraction .* got 1\.0"),
        ({"test_fraction": 1.5}, r"test_fraction .* got 1\.5"),
        ({"test_fraction": -0.1}, r"test_fraction .* got -0\.1"),
        ({"test_fraction": "0.2"}, r"test_fraction .* got '0\.2'"),
        ({"test_fraction": True}, r"test_fraction .* got True"),
        ({"test_fraction": float("nan")}, r"test_fraction .* got nan"),
        ({"validation_fraction": 0.0}, r"validation_fraction must be a number strictly between"),
        ({"validation_fraction": 2}, r"validation_fraction .* got 2"),
        ({"validation_fraction": None}, r"validation_fraction .* got None"),
        ({"max_train": 0}, r"max_train must be a positive integer or None, got 0"),
        ({"max_train": -5}, r"max_train .* got -5"),
        ({"max_train": 2.5}, r"max_train .* got 2\.5"),
        ({"max_train": True}, r"max_train .* got True"),
        ({"max_train": "100"}, r"max_train .* got '100'"),
        ({"max_test": 0}, r"max_test must be a positive integer or None, got 0"),
        ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*32\), got -1"),
        ({"seed": 2**32}, r"seed .* got 4294967296"),
        ({"seed": 1.5}, r"seed .* got 1\.5"),
        ({"seed": True}, r"seed .* got True"),
        ({"seed": None}, r"seed .* got None"),
    ],
)
def test_bad_arguments_are_rejected(options, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset("digits", **options)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"max_train": 5},
            r"max_train=5 is smaller than the number of classes \(10\).*max_train >= 10",
        ),
        ({"max_test": 9}, r"max_test=9 is smaller than the number of classes \(10\)"),
        (
            {"test_fraction": 0.001},
            r"cannot make a stratified split of 1797 images of 10 classes with test_fraction",
        ),
        (
            {"test_fraction": 0.999},
            r"cannot make a stratified split of 1797 images .* with test_fraction",
        ),
    ],
)
def test_impossible_split_is_rejected(options, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset("digits", **options)


def test_summary_is_json():
    summary = load_dataset("digits", seed=np.int64(4), max_train=np.int64(300)).summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary == {
        "dataset": "digits",
        "input_shape": [8, 8, 1],
        "num_classes": 10,
        "num_train": 300,
        "num_val": 75,
        "num_test": 360,
        "split_seed": 4,
        "test_fraction": 0.2,
        "validation_fraction": 0.2,
        "source": "scikit-learn bundled",
        "split_sha256": summary["split_sha256"],
    }
    assert len(summary["split_sha256"]) == 64


# Fashion-MNIST files in the official format.


@pytest.mark.parametrize("compressed", [True, False])
def test_fashion_mnist_reads_idx_files(tmp_path, compressed):
    pool = write_fashion_mnist(tmp_path / "fm", compressed=compressed)
    splits = load_dataset("fashion_mnist", data_dir=pool.path, verify_checksums=False)
    assert splits.source == str(pool.path)
    assert splits.x_train.shape[1:] == (28, 28, 1)
    assert sum(len(x) for x in (splits.x_train, splits.x_val, splits.x_test)) == 80
    assert_split_matches_pool(splits, pool.images, pool.labels)


def test_fashion_mnist_in_subfolder(tmp_path):
    pool = write_fashion_mnist(tmp_path / "data" / "fashion-mnist")
    splits = load_dataset("fashion_mnist", data_dir=tmp_path / "data", verify_checksums=False)
    assert splits.source == str(pool.path)


def _replace(folder: Path, stem: str, content: bytes) -> None:
    write_bytes(folder / f"{stem}.gz", content)


def _wrong_image_magic(folder):
    images = np.zeros((60, 28, 28), np.uint8)
    _replace(folder, "train-images-idx3-ubyte", idx_bytes(images, magic=b"\0\0\x08\x01"))


def _wrong_label_magic(folder):
    labels = np.zeros(20, np.uint8)
    _replace(folder, "t10k-labels-idx1-ubyte", idx_bytes(labels, magic=b"\x1f\x8b\x08\x01"))


def _truncated_content(folder):
    content = idx_bytes(np.zeros((60, 28, 28), np.uint8))
    _replace(folder, "train-images-idx3-ubyte", content[:-100])


def _header_claims_more(folder):
    content = idx_bytes(np.zeros((20, 28, 28), np.uint8))
    header = b"\0\0\x08\x03" + np.asarray([21, 28, 28], ">u4").tobytes()
    _replace(folder, "t10k-images-idx3-ubyte", header + content[16:])


def _truncated_gzip(folder):
    path = folder / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])


def _not_gzip(folder):
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"this is not a gzip stream")


def _wrong_image_size(folder):
    _replace(folder, "train-images-idx3-ubyte", idx_bytes(np.zeros((60, 32, 32), np.uint8)))


def _label_count(folder):
    _replace(folder, "train-labels-idx1-ubyte", idx_bytes(np.zeros(59, np.uint8)))


def _label_value(folder):
    _replace(folder, "t10k-labels-idx1-ubyte", idx_bytes(np.full(20, 12, np.uint8)))


def _missing_file(folder):
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (
            _wrong_image_magic,
            r"train-images-idx3-ubyte.gz is not an IDX file of unsigned bytes with 3 "
            r"dimensions: its magic number is 0x00000801, expected 0x00000803",
        ),
        (
            _wrong_label_magic,
            r"t10k-labels-idx1-ubyte.gz is not an IDX file .* 0x1f8b0801, expected 0x00000801",
        ),
        (
            _truncated_content,
            r"train-images-idx3-ubyte.gz is corrupt or truncated: expected 47056 bytes .* "
            r"shape \(60, 28, 28\), found 46956 bytes; delete it and reinstall "
            r"dataset-fashion-mnist",
        ),
        (
            _header_claims_more,
            r"t10k-images-idx3-ubyte.gz is corrupt or truncated: expected 16480 bytes",
        ),
        (_truncated_gzip, r"train-labels-idx1-ubyte.gz is corrupt or truncated: "),
        (_not_gzip, r"train-labels-idx1-ubyte.gz is corrupt or truncated: .*gzip"),
        (
            _wrong_image_size,
            r"train-images-idx3-ubyte.gz contains images of 32x32 pixels, expected 28x28",
        ),
        (
            _label_count,
            r"train-labels-idx1-ubyte.gz contains 59 labels for the 60 images of .*"
            r"train-images-idx3-ubyte.gz",
        ),
        (_label_value, r"t10k-labels-idx1-ubyte.gz contains label 12, expected 0 to 9"),
        (
            _missing_file,
            r"Fashion-MNIST folder .* is incomplete: t10k-labels-idx1-ubyte.gz not found",
        ),
    ],
)
def test_fashion_mnist_bad_files(tmp_path, damage, match):
    pool = write_fashion_mnist(tmp_path / "fm")
    damage(pool.path)
    with pytest.raises(DatasetError, match=match):
        load_dataset("fashion_mnist", data_dir=pool.path, verify_checksums=False)


def test_fashion_mnist_checksum_mismatch(tmp_path):
    pool = write_fashion_mnist(tmp_path / "fm")
    with pytest.raises(
        DatasetError,
        match=r"train-images-idx3-ubyte.gz is corrupt or truncated: its content has SHA-256 "
        r"[0-9a-f]{64}, expected c59f468a2f672dc8",
    ):
        load_dataset("fashion_mnist", data_dir=pool.path)


# Look-up order and missing files.


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        (["data_dir", "env", "keras_home", "home", "debian"], "data_dir"),
        (["env", "keras_home", "home", "debian"], "env"),
        (["keras_home", "home", "debian"], "keras_home"),
        (["home", "debian"], "home"),
        (["debian"], "debian"),
    ],
)
def test_lookup_order(tmp_path, monkeypatch, present, expected):
    locations = {
        "data_dir": tmp_path / "explicit",
        "env": tmp_path / "from_env",
        "keras_home": tmp_path / "keras_home" / "datasets" / "fashion-mnist",
        "home": tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist",
        "debian": tmp_path / "debian" / "fashion-mnist",
    }
    for seed, name in enumerate(present):
        write_fashion_mnist(locations[name], seed=seed)
    if "env" in present:
        monkeypatch.setenv("CNNGEN_DATA_DIR", str(locations["env"]))
    monkeypatch.setattr(dataset_lookup, "DEBIAN_FASHION_MNIST_DIR", locations["debian"])
    data_dir = locations["data_dir"] if "data_dir" in present else None

    splits = load_dataset("fashion_mnist", data_dir=data_dir, verify_checksums=False)
    assert splits.source == str(locations[expected])


def test_missing_data_dir_is_rejected(tmp_path):
    with pytest.raises(
        DatasetError, match=r"data_dir '.*no_such_folder' is not an existing folder"
    ):
        load_dataset("fashion_mnist", data_dir=tmp_path / "no_such_folder")


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("fashion_mnist", "Install the Debian package dataset-fashion-mnist"),
        ("cifar10", "Download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/"),
        ("cifar100", "Download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/"),
    ],
)
def test_not_found_lists_searched_paths(tmp_path, monkeypatch, name, hint):
    monkeypatch.setenv("CNNGEN_DATA_DIR", str(tmp_path / "env"))
    searched = dataset_lookup.candidate_paths(name, tmp_path)
    with pytest.raises(DatasetError) as raised:
        load_dataset(name, data_dir=tmp_path)
    message = str(raised.value)
    assert message.startswith(f"{name} files not found. Searched:")
    assert hint in message
    assert "pass download=True" in message
    for path in searched:
        assert f"\n  {path}\n" in message
    assert str(tmp_path / "env") in message
    assert str(tmp_path / "keras_home" / "datasets") in message
    assert str(tmp_path / "home" / ".keras" / "datasets") in message


@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10", "cifar100"])
def test_download_failure_is_reported(monkeypatch, name):
    """Keras's loader fails as it does without network; the error names what was searched."""
    keras = pytest.importorskip("keras")

    def load_data_without_network(**options):
        raise OSError("network is unreachable")

    monkeypatch.setattr(getattr(keras.datasets, name), "load_data", load_data_without_network)
    with pytest.raises(
        DatasetError,
        match=rf"(?s){name} files not found. Searched:.*"
        rf"keras.datasets.{name}.load_data\(\) also failed: network is unreachable",
    ):
        load_dataset(name, download=True)


@pytest.mark.parametrize(
    ("name", "train_shape", "test_shape", "label_shape", "num_classes"),
    [
        ("fashion_mnist", (80, 28, 28), (20, 28, 28), (-1,), 10),
        ("cifar10", (80, 32, 32, 3), (20, 32, 32, 3), (-1, 1), 10),
        ("cifar100", (600, 32, 32, 3), (200, 32, 32, 3), (-1, 1), 100),
    ],
)
def test_download_pools_keras_arrays(
    monkeypatch, name, train_shape, test_shape, label_shape, num_classes
):
    """Without network, load_data returns arrays shaped as Keras documents them instead."""
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, size=train_shape, dtype=np.uint8)
    x_test = rng.integers(0, 256, size=test_shape, dtype=np.uint8)
    y_train = (np.arange(train_shape[0]) % num_classes).astype(np.uint8).reshape(label_shape)
    y_test = (np.arange(test_shape[0]) % num_classes).astype(np.uint8).reshape(label_shape)
    requested_options = []

    def load_data(**options):
        requested_options.append(options)
        return (x_train, y_train), (x_test, y_test)

    monkeypatch.setattr(getattr(keras.datasets, name), "load_data", load_data)
    splits = load_dataset(name, download=True)

    assert splits.source == f"keras.datasets.{name}.load_data() download"
    assert requested_options == [{"label_mode": "fine"} if name == "cifar100" else {}]
    images = np.concatenate([x_train, x_test]).reshape(-1, *DATASETS[name].input_shape)
    labels = np.concatenate([y_train, y_test]).reshape(-1)
    assert_split_matches_pool(splits, images, labels)


@pytest.mark.parametrize(
    ("x_shape", "y_shape", "y_value", "match"),
    [
        (
            (20, 32, 32, 3),
            (20,),
            0,
            r"contains images of shape \(32, 32, 3\), expected \(28, 28, 1\)",
        ),
        ((20, 28, 28), (19,), 0, r"contains 40 images but 38 labels"),
        ((20, 28, 28), (20,), 11, r"contains labels from 11 to 11, expected 0 to 9"),
    ],
)
def test_download_with_wrong_arrays(monkeypatch, x_shape, y_shape, y_value, match):
    keras = pytest.importorskip("keras")
    x = np.zeros(x_shape, np.uint8)
    y = np.full(y_shape, y_value, np.uint8)
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", lambda: ((x, y), (x, y)))
    with pytest.raises(DatasetError, match=r"keras.datasets.fashion_mnist.load_data\(\) " + match):
        load_dataset("fashion_mnist", download=True)


# CIFAR files in the official formats.


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("layout", ["folder", "archive"])
def test_cifar_reads_official_formats(tmp_path, name, layout):
    write = write_cifar_folder if layout == "folder" else write_cifar_archive
    pool = write(tmp_path / "data", name)
    splits = load_dataset(name, data_dir=tmp_path / "data", verify_checksums=False)
    assert splits.source == str(pool.path)
    assert splits.x_train.shape[1:] == (32, 32, 3)
    assert sum(len(x) for x in (splits.x_train, splits.x_val, splits.x_test)) == len(pool.images)
    assert_split_matches_pool(splits, pool.images, pool.labels)


def test_cifar100_uses_fine_labels(tmp_path):
    write_cifar_folder(tmp_path, "cifar100")
    splits = load_dataset("cifar100", data_dir=tmp_path, verify_checksums=False)
    _, labels = pool_of(splits)
    # The fixture's coarse labels are fine // 5, so they stop at 19.
    assert set(np.unique(labels)) == set(range(100))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_pickle_protocols(tmp_path, protocol):
    pool = write_cifar_folder(tmp_path, "cifar10", protocol=protocol)
    splits = load_dataset("cifar10", data_dir=tmp_path, verify_checksums=False)
    assert_split_matches_pool(splits, pool.images, pool.labels)


@pytest.mark.parametrize(
    ("name", "cache_folder"),
    [
        ("cifar10", "cifar-10-batches-py-target"),
        ("cifar100", "cifar-100-python-target"),
    ],
)
def test_cifar_keras_cache_layout(tmp_path, name, cache_folder):
    """Keras 3 extracts its CIFAR downloads into ~/.keras/datasets/<name>-target/."""
    pool = write_cifar_folder(tmp_path / "keras_home" / "datasets" / cache_folder, name)
    splits = load_dataset(name, verify_checksums=False)
    assert splits.source == str(pool.path)


def _rewrite_batch(folder: Path, member: str, change) -> None:
    path = folder / member
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    path.write_bytes(pickle.dumps(change(batch), protocol=2))


class _RunsShellCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (
            lambda folder: (folder / "data_batch_3").unlink(),
            r"CIFAR folder .*cifar-10-batches-py is incomplete: data_batch_3 not found",
        ),
        (
            lambda folder: (folder / "test_batch").write_bytes(b"garbage"),
            r"test_batch is not a valid CIFAR batch",
        ),
        (
            lambda folder: _rewrite_batch(folder, "data_batch_1", lambda b: {b"labels": []}),
            r"data_batch_1 is not a CIFAR batch: expected a dict with keys b'data' and "
            r"b'labels', found \[b'labels'\]",
        ),
        (
            lambda folder: _rewrite_batch(
                folder, "data_batch_2", lambda b: {**b, b"data": b[b"data"][:, :1024]}
            ),
            r"data_batch_2 contains image data of shape \(20, 1024\), expected \(N, 3072\) uint8",
        ),
        (
            lambda folder: _rewrite_batch(
                folder, "data_batch_4", lambda b: {**b, b"labels": b[b"labels"][:-1]}
            ),
            r"data_batch_4 contains 19 labels for 20 images",
        ),
        (
            lambda folder: _rewrite_batch(
                folder, "data_batch_5", lambda b: {**b, b"labels": ["cat"] * 20}
            ),
            r"data_batch_5 contains labels that are not integers",
        ),
        (
            lambda folder: _rewrite_batch(
                folder, "test_batch", lambda b: {**b, b"labels": [10] * 20}
            ),
            r"cifar-10-batches-py contains labels from 0 to 10, expected 0 to 9 for cifar10",
        ),
    ],
)
def test_cifar_bad_folder_files(tmp_path, damage, match):
    pool = write_cifar_folder(tmp_path, "cifar10")
    damage(pool.path)
    with pytest.raises(DatasetError, match=match):
        load_dataset("cifar10", data_dir=tmp_path, verify_checksums=False)


def test_cifar_pickle_cannot_run_code(tmp_path):
    pool = write_cifar_folder(tmp_path, "cifar10")
    marker = tmp_path / "code_ran"
    batch = {b"data": _RunsShellCommand(marker), b"labels": []}
    (pool.path / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(
        DatasetError,
        match=r"data_batch_1 is not a valid CIFAR batch: it refers to posix.system, which a "
        r"CIFAR batch never does",
    ):
        load_dataset("cifar10", data_dir=tmp_path, verify_checksums=False)
    assert not marker.exists()


def _archive_without_test_batch(archive: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    with tarfile.open(archive, "w:gz") as tar:
        for member, content in members:
            if not member.name.endswith("test_batch"):
                tar.addfile(member, fileobj=io.BytesIO(content))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (
            lambda archive: archive.write_bytes(
                archive.read_bytes()[: archive.stat().st_size // 2]
            ),
            r"cifar-10-python.tar.gz is corrupt or truncated: .*delete it and download "
            r"cifar-10-python.tar.gz again",
        ),
        (
            lambda archive: archive.write_bytes(b"not an archive"),
            r"cifar-10-python.tar.gz is corrupt or truncated",
        ),
        (
            _archive_without_test_batch,
            r"cifar-10-python.tar.gz does not contain cifar-10-batches-py/test_batch",
        ),
    ],
)
def test_cifar_bad_archives(tmp_path, damage, match):
    pool = write_cifar_archive(tmp_path, "cifar10")
    damage(pool.path)
    with pytest.raises(DatasetError, match=match):
        load_dataset("cifar10", data_dir=tmp_path, verify_checksums=False)


@pytest.mark.parametrize(
    ("name", "layout", "match"),
    [
        (
            "cifar10",
            "archive",
            r"cifar-10-python.tar.gz is corrupt or truncated: its MD5 is [0-9a-f]{32}, expected "
            r"c58f30108f718f92721af3b95e74349a for the official archive",
        ),
        (
            "cifar100",
            "archive",
            r"cifar-100-python.tar.gz is corrupt or truncated: .* expected "
            r"eb9058c3a382ffc7106e4002c42a8d85",
        ),
        (
            "cifar10",
            "folder",
            r"data_batch_1 is corrupt or truncated: its MD5 is [0-9a-f]{32}, expected "
            r"c99cafc152244af753f735de768cd75f for the official data_batch_1",
        ),
        (
            "cifar100",
            "folder",
            r"cifar-100-python/train is corrupt or truncated: .* expected "
            r"16019d7e3df5f24257cddd939b257f8d",
        ),
    ],
)
def test_cifar_checksum_mismatch(tmp_path, name, layout, match):
    write = write_cifar_folder if layout == "folder" else write_cifar_archive
    write(tmp_path, name)
    with pytest.raises(DatasetError, match=match):
        load_dataset(name, data_dir=tmp_path)


# The real Fashion-MNIST files of the Debian package.

requires_debian_files = pytest.mark.skipif(
    not all((DEBIAN_DIR / f"{stem}.gz").is_file() for stem in FASHION_MNIST_FILES),
    reason=f"{DEBIAN_DIR} does not contain the four Fashion-MNIST files "
    "(install the Debian package dataset-fashion-mnist to run this test)",
)


@requires_debian_files
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.setattr(dataset_lookup, "DEBIAN_FASHION_MNIST_DIR", DEBIAN_DIR)
    splits = load_dataset("fashion_mnist")
    assert splits.source == str(DEBIAN_DIR)
    sizes = [len(splits.x_train), len(splits.x_val), len(splits.x_test)]
    assert sizes == [44800, 11200, 14000]
    assert sum(sizes) == 70000
    assert splits.x_train.shape[1:] == (28, 28, 1)
    _, labels = pool_of(splits)
    assert np.array_equal(np.bincount(labels), np.full(10, 7000))
    assert np.bincount(splits.y_test).tolist() == [1400] * 10


@requires_debian_files
def test_real_fashion_mnist_modified_label(tmp_path):
    """A file with a valid header but one changed label fails the checksum."""
    folder = tmp_path / "fm"
    folder.mkdir()
    for stem in FASHION_MNIST_FILES[:3]:
        (folder / f"{stem}.gz").symlink_to(DEBIAN_DIR / f"{stem}.gz")
    content = bytearray(gzip.decompress((DEBIAN_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    content[8] = (content[8] + 1) % 10
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(
        DatasetError,
        match=r"t10k-labels-idx1-ubyte.gz is corrupt or truncated: its content has SHA-256 .* "
        r"expected 0402a96d",
    ):
        load_dataset("fashion_mnist", data_dir=folder)
