"""Tests of cnngen.merge and ``cnngen merge`` on real SQLite stores in tmp_path."""

import dataclasses
import shutil

import pytest
from fixtures_store import DISCLOSURE, add_trained, make_architecture
from fixtures_training import FAST, build_small, item, load_digits_splits

from cnngen.batch import run_batch, shard_store_name
from cnngen.cli import main
from cnngen.errors import StoreError
from cnngen.merge import merge_stores
from cnngen.store import ResultsStore

CONFIG = {"epochs": 2, "batch_size": 64, "verbose": 0, "idle_duration_s": 5.0}


def make_store(path, arch_ids, *, statuses=None, config=CONFIG, shard=None, disclosure=None):
    """Write a store with one training per id, the given configuration and shard."""
    statuses = statuses or {}
    with ResultsStore(path) as store:
        store.record_run_metadata("training_config", config)
        store.record_run_metadata("dataset", {"dataset": "digits", "num_train": 1078})
        store.record_run_metadata("shard", shard)
        store.record_disclosure(disclosure or DISCLOSURE)
        for arch_id in arch_ids:
            add_trained(store, arch_id, statuses.get(arch_id, "ok"))
    return path


def test_merge_two_shards(tmp_path):
    first = make_store(tmp_path / "one.sqlite", ["a1", "a3"], shard={"index": 1, "count": 2})
    other_machine = dict(DISCLOSURE, cpu_model="Other CPU", idle_power_w=30.0)
    second = make_store(
        tmp_path / "two.sqlite",
        ["a2", "a4"],
        statuses={"a4": "diverged"},
        shard={"index": 2, "count": 2},
        disclosure=other_machine,
    )
    output = merge_stores(tmp_path / "merged.sqlite", [first, second])

    with ResultsStore(output, read_only=True) as merged:
        frame = merged.trainings_frame().set_index("arch_id")
        epochs = merged.epochs_frame()
        metadata = merged.run_metadata()
        problems = merged.integrity_check()
    assert sorted(frame.index) == ["a1", "a2", "a3", "a4"]
    assert frame.loc["a4", "status"] == "diverged"
    assert frame.loc["a2", "cpu_model"] == "Other CPU"
    assert frame.loc["a1", "cpu_model"] == "Test CPU"
    assert frame.loc["a3", "inference_latency_s"] == pytest.approx(0.004)
    assert len(epochs) == 8
    assert metadata["training_config"] == CONFIG
    assert metadata["disclosure"]["cpu_model"] == "Test CPU"
    assert "shard" not in metadata
    assert [entry["shard"] for entry in metadata["merged_from"]] == [
        {"index": 1, "count": 2},
        {"index": 2, "count": 2},
    ]
    assert metadata["merged_from"][1]["disclosure"]["cpu_model"] == "Other CPU"
    assert problems == []


def test_merge_keeps_untrained_architectures(tmp_path):
    registry = tmp_path / "results.sqlite"
    with ResultsStore(registry) as store:
        store.record_run_metadata("generation", {"dataset": "digits", "seed": 0})
        for arch_id in ("a1", "a2"):
            store.add_architecture(make_architecture(arch_id, code_path=f"{arch_id}.py"))
    shard = make_store(tmp_path / "shard.sqlite", ["a1"])
    output = merge_stores(tmp_path / "merged.sqlite", [registry, shard])

    with ResultsStore(output, read_only=True) as merged:
        architectures = {row["arch_id"]: row for row in merged.read_rows("architectures")}
        metadata = merged.run_metadata()
        counts = merged.status_counts()
    assert sorted(architectures) == ["a1", "a2"]
    assert architectures["a1"]["code_path"] == "a1.py"
    assert architectures["a1"]["num_layers"] == 4
    assert metadata["generation"] == {"dataset": "digits", "seed": 0}
    assert counts == {"ok": 1, "failed": 0, "diverged": 0}


def test_merge_same_training_twice(tmp_path):
    first = make_store(tmp_path / "one.sqlite", ["a1", "a2"])
    copy = tmp_path / "copy.sqlite"
    shutil.copy(first, copy)
    output = merge_stores(tmp_path / "merged.sqlite", [first, copy])

    with ResultsStore(output, read_only=True) as merged:
        assert merged.status_counts()["ok"] == 2
        assert len(merged.epochs_frame()) == 4


def test_merge_allows_other_verbosity(tmp_path):
    first = make_store(tmp_path / "one.sqlite", ["a1"])
    second = make_store(tmp_path / "two.sqlite", ["a2"], config=dict(CONFIG, verbose=2))
    output = merge_stores(tmp_path / "merged.sqlite", [first, second])

    with ResultsStore(output, read_only=True) as merged:
        assert merged.run_metadata()["training_config"]["verbose"] == 0


def test_merge_rejects_two_trainings(tmp_path):
    first = make_store(tmp_path / "one.sqlite", ["a1", "a2"])
    second = make_store(tmp_path / "two.sqlite", ["a2"], statuses={"a2": "failed"})

    with pytest.raises(StoreError, match="'a2' has two different trainings: status 'ok' in"):
        merge_stores(tmp_path / "merged.sqlite", [first, second])
    assert not (tmp_path / "merged.sqlite").exists()


def test_merge_rejects_other_phrase(tmp_path):
    first = make_store(tmp_path / "one.sqlite", ["a1"])
    second = tmp_path / "two.sqlite"
    with ResultsStore(second) as store:
        store.add_architecture(make_architecture("a1", phrase="input dense output"))

    with pytest.raises(StoreError, match="'a1' has phrase .* but 'input dense output' in"):
        merge_stores(tmp_path / "merged.sqlite", [first, second])


def test_merge_rejects_other_protocol(tmp_path):
    first = make_store(tmp_path / "one.sqlite", ["a1"])
    second = make_store(tmp_path / "two.sqlite", ["a2"], config=dict(CONFIG, epochs=36))

    with pytest.raises(StoreError, match="'training_config' differs between the inputs \\(epochs"):
        merge_stores(tmp_path / "merged.sqlite", [first, second])


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no inputs", "no results stores to merge"),
        ("output exists", "already exists; remove it or choose another path"),
        ("output is input", "is also an input"),
        ("missing input", "results store .*absent.sqlite' not found"),
        ("repeated input", "given more than once"),
    ],
)
def test_merge_invalid_paths(tmp_path, case, message):
    store = make_store(tmp_path / "one.sqlite", ["a1"])
    output, inputs = tmp_path / "merged.sqlite", [store]
    if case == "no inputs":
        inputs = []
    elif case == "output exists":
        output.write_text("")
    elif case == "output is input":
        output, inputs = store, [store, make_store(tmp_path / "two.sqlite", ["a2"])]
    elif case == "missing input":
        inputs = [store, tmp_path / "absent.sqlite"]
    elif case == "repeated input":
        inputs = [store, tmp_path / "." / "one.sqlite"]

    with pytest.raises(StoreError, match=message):
        merge_stores(output, inputs)


def test_cli_merge(tmp_path, capsys):
    first = make_store(tmp_path / "one.sqlite", ["a1"])
    second = make_store(tmp_path / "two.sqlite", ["a2"], statuses={"a2": "failed"})
    status = main(["merge", str(tmp_path / "merged.sqlite"), str(first), str(second)])
    output = capsys.readouterr().out.splitlines()

    assert status == 0
    assert output == [str(tmp_path / "merged.sqlite"), "ok 1, failed 1, diverged 0"]


def test_cli_merge_conflict(tmp_path, capsys):
    first = make_store(tmp_path / "one.sqlite", ["a1"])
    second = make_store(tmp_path / "two.sqlite", ["a1"], statuses={"a1": "failed"})
    status = main(["merge", str(tmp_path / "merged.sqlite"), str(first), str(second)])
    error = capsys.readouterr().err

    assert status == 2
    assert error.startswith("cnngen merge: architecture 'a1' has two different trainings")


def test_cli_run_invalid_shard(tmp_path, capsys):
    # The shard is checked before the parameters file is read.
    params = str(tmp_path / "params.yaml")
    status = main(["run", params, "--output", str(tmp_path / "run"), "--shard", "3/2"])

    assert status == 2
    assert "invalid shard '3/2': expected INDEX/COUNT" in capsys.readouterr().err


@pytest.mark.slow
def test_trained_shards_merge_into_whole_run(tmp_path):
    digits = load_digits_splits()
    items = [item(f"a{i}") for i in range(1, 5)]
    config = dataclasses.replace(FAST, inference_batches=0)
    paths = []
    for shard in ((1, 2), (2, 2)):
        paths.append(tmp_path / shard_store_name(shard))
        with ResultsStore(paths[-1]) as store:
            run_batch(
                items, digits, config, store, build_model_for=lambda _: build_small,
                progress=False, shard=shard,
            )  # fmt: skip
    output = merge_stores(tmp_path / "results.sqlite", paths)

    with ResultsStore(output, read_only=True) as merged:
        frame = merged.trainings_frame()
        problems = merged.integrity_check()
    assert sorted(frame["arch_id"]) == ["a1", "a2", "a3", "a4"]
    assert set(frame["status"]) == {"ok"}
    assert problems == []
