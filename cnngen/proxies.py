"""Zero-cost proxies: scores of an untrained network computed from one mini-batch.

This module owns three proxies, computed with Keras and ``tf.GradientTape`` on a network
built from its emitted source, with weights drawn from a fixed seed:

* ``synflow`` (Tanaka et al., 2020): every weight is replaced by its absolute value, the
  classifier's softmax by the identity, and an all-ones image is fed through the network in
  float64 with layers in inference mode. The score is the sum over all weights of
  ``|w * dR/dw|``, where R is the sum of the outputs. The column contains log10 of the score,
  because scores reach 1e30 and trees read features as float32.
* ``naswot`` (Mellor et al., "Neural Architecture Search without Training", 2021): each
  image of the mini-batch gets a binary code, 1 where a unit of a Conv2D or hidden Dense
  layer outputs a value > 0 (after its activation). The score is the log-determinant of the
  kernel matrix ``K[i, j] = number of units where images i and j agree``. It is missing
  (NaN) when K is singular, which happens when two images get the same code.
* ``grad_norm``: the sum over weight tensors of the L2 norm of the gradient of the mean
  cross-entropy of the mini-batch, in inference mode (no dropout, batch normalisation from
  its initial statistics).

:func:`cached_proxies` computes them once per architecture and keeps them in a Parquet file
(by default ``proxies.parquet`` next to a run's ``results.sqlite``), keyed by phrase, data
set, training split and settings, so that a later evaluation reads them back.
:func:`run_training_data` reloads a run's training images from the split recorded in its
store. TensorFlow is imported inside functions, so importing this module stays light.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnngen.errors import CNNGenError

logger = logging.getLogger(__name__)

PROXY_COLUMNS = ("synflow", "naswot", "grad_norm")
_CACHE_KEY = ["phrase", "dataset", "split_sha256", "batch_size", "proxy_seed"]


@dataclass(frozen=True)
class ProxyBatch:
    """The mini-batch the proxies are computed on, and what identifies it in the cache.

    Attributes:
        images: float32 images, shape (batch_size, height, width, channels).
        labels: int64 class numbers.
        dataset: Name of the data set.
        split_sha256: The ``split_sha256`` of the training split the images come from.
        seed: Seed of the image choice and of the networks' weights.
    """

    images: np.ndarray
    labels: np.ndarray
    dataset: str
    split_sha256: str
    seed: int


def proxy_batch(data, batch_size: int = 64, seed: int = 0) -> ProxyBatch:
    """Draw the proxies' mini-batch from the training images of a data set split.

    Args:
        data: A :class:`cnngen.datasets.DatasetSplits`.
        batch_size: Number of images, at least 2 and at most the training set's size.
        seed: Seed of the image choice; also the seed of the networks' weights.

    Raises:
        CNNGenError: If batch_size is not in that range.
    """
    num_train = len(data.x_train)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise CNNGenError(f"invalid batch_size {batch_size!r}: expected an integer")
    if not 2 <= batch_size <= num_train:
        raise CNNGenError(
            f"invalid batch_size {batch_size}: expected 2 to {num_train}, the number of "
            "training images"
        )
    chosen = np.sort(np.random.default_rng(seed).choice(num_train, batch_size, replace=False))
    split = data.summary()["split_sha256"]
    return ProxyBatch(data.x_train[chosen], data.y_train[chosen], data.info.name, split, seed)


def run_training_data(dataset_record: dict, data_dir: str | os.PathLike | None = None):
    """Load the data set split that a run recorded in its store's ``dataset`` metadata.

    Args:
        dataset_record: ``ResultsStore.run_metadata()["dataset"]``, the split summary.
        data_dir: Folder searched first for the data set's files.

    Returns:
        The :class:`cnngen.datasets.DatasetSplits`, checked against the stored split digest.

    Raises:
        CNNGenError: If the record lacks a field, or the reloaded split differs.
    """
    from cnngen.datasets import load_dataset

    fields = ("dataset", "split_seed", "test_fraction", "validation_fraction", "num_train")
    missing = [name for name in fields if name not in (dataset_record or {})]
    if missing:
        raise CNNGenError(
            f"the run's dataset record lacks {missing}; proxies need the training split that "
            "the run recorded when it trained"
        )
    data = load_dataset(
        dataset_record["dataset"],
        data_dir=data_dir,
        seed=dataset_record["split_seed"],
        test_fraction=dataset_record["test_fraction"],
        validation_fraction=dataset_record["validation_fraction"],
        max_train=dataset_record["num_train"],
        max_test=dataset_record.get("num_test"),
    )
    expected = dataset_record.get("split_sha256")
    if expected is not None and data.summary()["split_sha256"] != expected:
        raise CNNGenError(
            f"the reloaded {dataset_record['dataset']} split differs from the run's (digest "
            f"{data.summary()['split_sha256'][:12]} instead of {expected[:12]}); check that the "
            "data set files are the official ones"
        )
    return data


def architecture_proxies(resolved, batch: ProxyBatch) -> dict[str, float]:
    """Compute the proxies of :data:`PROXY_COLUMNS` of one architecture.

    Args:
        resolved: A :class:`cnngen.solver.ResolvedArchitecture` for the batch's data set.
        batch: The mini-batch of :func:`proxy_batch`.

    Returns:
        The proxies by name; a proxy that is undefined for the network is NaN.

    Raises:
        CNNGenError: If the architecture's input shape differs from the images'.
    """
    import keras

    if tuple(resolved.input_shape) != tuple(batch.images.shape[1:]):
        raise CNNGenError(
            f"the architecture takes inputs of shape {tuple(resolved.input_shape)} but the "
            f"batch holds images of shape {tuple(batch.images.shape[1:])}; solve it for "
            f"data set {batch.dataset!r}"
        )
    try:
        model = _build(resolved, batch.seed, "float32")
        scores = {"naswot": _naswot(model, batch.images)}
        scores["grad_norm"] = _grad_norm(model, batch.images, batch.labels)
        scores["synflow"] = _synflow(_build(resolved, batch.seed, "float64"))
    finally:
        keras.backend.clear_session()
    return {name: scores[name] for name in PROXY_COLUMNS}


def compute_proxies(resolved_list, batch: ProxyBatch, *, progress: bool = False):
    """Compute the proxies of several architectures as a table.

    Returns:
        A DataFrame with the columns of :data:`PROXY_COLUMNS`, one row per architecture.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    rows = [
        architecture_proxies(resolved, batch)
        for resolved in tqdm(resolved_list, desc="proxies", unit="arch", disable=not progress)
    ]
    return pd.DataFrame(rows, columns=list(PROXY_COLUMNS))


def cached_proxies(rows, batch: ProxyBatch, cache_path: str | os.PathLike, *, progress=True):
    """Return the proxies of stored rows, computing only those not yet in the cache file.

    Args:
        rows: A table with ``arch_id``, ``phrase``, ``seed`` and ``dataset`` columns, such as
            ``ResultsStore.trainings_frame()``.
        batch: The mini-batch of :func:`proxy_batch`.
        cache_path: The Parquet file of computed proxies; it is created or extended.
        progress: Show a tqdm progress bar while computing.

    Returns:
        A DataFrame of :data:`PROXY_COLUMNS` indexed by ``arch_id``, in the order of rows.

    Raises:
        CNNGenError: If the cache file cannot be read or written, or a phrase cannot be
            rebuilt.
    """
    import pandas as pd

    from cnngen.features import resolve_stored

    rows = rows.reset_index(drop=True)
    cache_path = Path(cache_path)
    keys = (
        rows[["phrase", "dataset"]]
        .astype(str)
        .assign(
            split_sha256=batch.split_sha256, batch_size=len(batch.images), proxy_seed=batch.seed
        )
    )
    cache = _read_cache(cache_path)
    known = _look_up(keys, cache)
    todo = known[known["_merge"] == "left_only"].drop_duplicates(["phrase", "dataset"])
    if len(todo):
        logger.info("computing proxies of %d architectures into %s", len(todo), cache_path)
        resolved = [
            resolve_stored(row["phrase"], _seed(row["seed"]), row["dataset"])
            for row in rows.loc[todo.index].to_dict("records")
        ]
        computed = compute_proxies(resolved, batch, progress=progress)
        new = pd.concat([todo[_CACHE_KEY].reset_index(drop=True), computed], axis=1)
        cache = pd.concat([cache, new], ignore_index=True) if len(cache) else new
        _write_cache(cache, cache_path)
        known = _look_up(keys, cache)
    result = known[list(PROXY_COLUMNS)].astype(float)
    result.index = pd.Index(rows["arch_id"].to_list(), name="arch_id")
    return result


def _look_up(keys, cache):
    """Return keys joined with their cached proxies, in key order, with a ``_merge`` column."""
    if not len(cache):
        missing = dict.fromkeys(PROXY_COLUMNS, math.nan)
        return keys.assign(**missing, _merge="left_only")
    cache = cache.drop_duplicates(_CACHE_KEY, keep="last").astype(
        {"phrase": str, "dataset": str, "split_sha256": str, "batch_size": int, "proxy_seed": int}
    )
    return keys.merge(cache, on=_CACHE_KEY, how="left", indicator=True)


def _seed(value) -> int | None:
    import pandas as pd

    return None if value is None or pd.isna(value) else int(value)


def _build(resolved, seed: int, dtype: str):
    """Build the emitted Keras model with weights drawn from seed, in the given float type."""
    import keras

    from cnngen.keras_source import emit_source

    namespace: dict = {}
    exec(compile(emit_source(resolved), "<cnngen architecture>", "exec"), namespace)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        keras.utils.set_random_seed(seed)
        return namespace["build_model"]()
    finally:
        keras.config.set_dtype_policy(previous)


def _synflow(model) -> float:
    import keras
    import tensorflow as tf

    for weight in model.trainable_weights:
        weight.assign(tf.abs(weight))
    model.layers[-1].activation = keras.activations.linear
    ones = tf.ones((1, *model.input_shape[1:]), dtype=tf.float64)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(model(ones, training=False))
    gradients = tape.gradient(total, model.trainable_weights)
    score = sum(
        float(tf.reduce_sum(tf.abs(weight * gradient)))
        for weight, gradient in zip(model.trainable_weights, gradients, strict=True)
        if gradient is not None
    )
    return math.log10(score) if score > 0 and math.isfinite(score) else math.nan


def _naswot(model, images: np.ndarray) -> float:
    import keras

    # The classifier's softmax is positive everywhere, so its units carry no code.
    units = [layer for layer in model.layers if type(layer).__name__ in ("Conv2D", "Dense")]
    units = units[:-1]
    if not units:
        return math.nan
    probe = keras.Model(model.input, [layer.output for layer in units])
    outputs = probe(images, training=False)
    outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
    kernel = np.zeros((len(images), len(images)))
    for output in outputs:
        codes = (np.asarray(output).reshape(len(images), -1) > 0).astype(np.float32)
        kernel += codes @ codes.T + (1 - codes) @ (1 - codes).T
    sign, log_determinant = np.linalg.slogdet(kernel)
    return float(log_determinant) if sign > 0 else math.nan


def _grad_norm(model, images: np.ndarray, labels: np.ndarray) -> float:
    import keras
    import tensorflow as tf

    loss_function = keras.losses.SparseCategoricalCrossentropy()
    with tf.GradientTape() as tape:
        loss = loss_function(labels, model(images, training=False))
    gradients = tape.gradient(loss, model.trainable_weights)
    return float(sum(float(tf.norm(g)) for g in gradients if g is not None))


def _read_cache(path: Path):
    import pandas as pd

    if not path.is_file():
        return pd.DataFrame(columns=[*_CACHE_KEY, *PROXY_COLUMNS])
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise CNNGenError(
            f"could not read the proxy cache {str(path)!r} ({error}); delete it to compute the "
            "proxies again"
        ) from None


def _write_cache(cache, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        cache.to_parquet(temporary, index=False)
        os.replace(temporary, path)
    except OSError as error:
        raise CNNGenError(f"could not write the proxy cache {str(path)!r}: {error}") from None
    finally:
        temporary.unlink(missing_ok=True)
