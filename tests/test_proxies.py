"""Tests of cnngen.proxies with Keras on digits: values, seeding, the cache and its checks."""

import math

import numpy as np
import pandas as pd
import pytest

from cnngen import proxies
from cnngen.datasets import load_dataset
from cnngen.errors import CNNGenError
from cnngen.proxies import (
    PROXY_COLUMNS,
    architecture_proxies,
    cached_proxies,
    compute_proxies,
    proxy_batch,
    run_training_data,
)
from cnngen.sampling import sample_many


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def batch(data):
    return proxy_batch(data, batch_size=16, seed=0)


@pytest.fixture(scope="module")
def sampled():
    return list(sample_many(3, 3, (8, 8, 1), 10))


@pytest.fixture(scope="module")
def table(sampled, batch):
    return compute_proxies([resolved for _, resolved in sampled], batch)


def rows_of(sampled):
    return pd.DataFrame(
        {
            "arch_id": [f"a{i}" for i in range(len(sampled))],
            "phrase": [resolved.to_phrase() for _, resolved in sampled],
            "seed": [seed for seed, _ in sampled],
            "dataset": "digits",
        }
    )


def test_every_proxy_is_finite(table):
    assert list(table.columns) == list(PROXY_COLUMNS)
    assert np.isfinite(table.to_numpy()).all()
    assert (table["grad_norm"] > 0).all()


def test_naswot_undefined_for_identical_images(sampled, batch):
    """Two equal images get equal codes, so the kernel matrix is singular."""
    images = np.repeat(batch.images[:1], 4, axis=0)
    twins = proxies.ProxyBatch(images, batch.labels[:4], "digits", batch.split_sha256, 0)
    scores = architecture_proxies(sampled[0][1], twins)
    assert math.isnan(scores["naswot"])
    assert math.isfinite(scores["synflow"])


def test_same_seed_same_proxies(sampled, batch, table):
    again = compute_proxies([resolved for _, resolved in sampled], batch)
    pd.testing.assert_frame_equal(again, table)


def test_batch_is_seeded(data):
    first, again = proxy_batch(data, 8, seed=1), proxy_batch(data, 8, seed=1)
    other = proxy_batch(data, 8, seed=2)
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)
    assert first.split_sha256 == data.summary()["split_sha256"]


@pytest.mark.parametrize("size", [1, 10**6, 8.0, True])
def test_bad_batch_size_rejected(data, size):
    with pytest.raises(CNNGenError, match="invalid batch_size"):
        proxy_batch(data, size)


def test_other_input_shape_rejected(batch):
    _, resolved = next(iter(sample_many(0, 1, (28, 28, 1), 10)))
    with pytest.raises(CNNGenError, match=r"takes inputs of shape \(28, 28, 1\)"):
        architecture_proxies(resolved, batch)


def test_cache_computes_each_architecture_once(sampled, batch, table, tmp_path, monkeypatch):
    cache = tmp_path / "proxies.parquet"
    rows = rows_of(sampled)
    first = cached_proxies(rows.iloc[:2], batch, cache, progress=False)
    np.testing.assert_allclose(first.to_numpy(), table.iloc[:2].to_numpy())

    # The third architecture is new; the first two must come from the cache.
    computed = []
    original = proxies.compute_proxies
    monkeypatch.setattr(
        proxies,
        "compute_proxies",
        lambda resolved, *a, **k: computed.append(len(resolved)) or original(resolved, *a, **k),
    )
    second = cached_proxies(rows, batch, cache, progress=False)
    assert computed == [1]
    assert list(second.index) == ["a0", "a1", "a2"]
    np.testing.assert_allclose(second.to_numpy(), table.to_numpy())
    assert len(pd.read_parquet(cache)) == 3


def test_cache_keys_on_the_batch(sampled, batch, data, tmp_path):
    cache = tmp_path / "proxies.parquet"
    rows = rows_of(sampled).iloc[:1]
    cached_proxies(rows, batch, cache, progress=False)
    cached_proxies(rows, proxy_batch(data, batch_size=8, seed=0), cache, progress=False)
    assert sorted(pd.read_parquet(cache)["batch_size"]) == [8, 16]


def test_unreadable_cache_rejected(sampled, batch, tmp_path):
    cache = tmp_path / "proxies.parquet"
    cache.write_text("not parquet")
    with pytest.raises(CNNGenError, match="delete it to compute the proxies again"):
        cached_proxies(rows_of(sampled), batch, cache)


def test_run_training_data_matches_record(data):
    record = data.summary()
    reloaded = run_training_data(record)
    np.testing.assert_array_equal(reloaded.x_train, data.x_train)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"split_sha256": "0" * 64}, "split differs from the run's"),
        ({"split_seed": None}, "lacks"),
    ],
    ids=["digest", "missing field"],
)
def test_run_training_data_rejects_other_split(data, change, message):
    record = {**data.summary(), **change}
    if change.get("split_seed", 0) is None:
        del record["split_seed"]
    with pytest.raises(CNNGenError, match=message):
        run_training_data(record)
