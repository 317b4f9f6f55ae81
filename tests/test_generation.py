"""Tests of a run's architecture generation: determinism, files, store rows and bad input."""

from __future__ import annotations

import sqlite3

import pytest

from cnngen.errors import CNNGenError, DatasetError, ParameterError
from cnngen.generation import (
    COLUMNS,
    SAMPLING_CONFIGS,
    generate_architectures,
    has_registered_architectures,
    registered_architectures,
    sampling_config,
)
from cnngen.keras_source import load_build_model
from cnngen.parameters import PARAMETERS
from cnngen.sampling import SamplingConfig

PINNED = (
    "input conv(filters=16, kernel=3, stride=1, padding=same, activation=relu) flatten "
    "dense(units=10, activation=softmax) output"
)
BARE = "input conv max_pooling conv global_avg_pooling dense output"


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory):
    """A run directory with three sampled digits architectures, and the returned table."""
    run_dir = tmp_path_factory.mktemp("run")
    frame = generate_architectures(run_dir, "digits", 3, 11, progress=False)
    return run_dir, frame


def _stored_rows(run_dir):
    with sqlite3.connect(run_dir / "results.sqlite") as connection:
        return connection.execute(
            "SELECT arch_id, phrase, seed, dataset, params, flops, num_layers, code_path, "
            "image_path FROM architectures ORDER BY arch_id"
        ).fetchall()


def _file_bytes(run_dir):
    folder = run_dir / "architectures"
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.slow
def test_same_seed_gives_identical_run(sampled_run, tmp_path):
    run_dir, frame = sampled_run
    again = generate_architectures(tmp_path, "digits", 3, 11, progress=False)
    assert list(again["phrase"]) == list(frame["phrase"])
    assert list(again["seed"]) == list(frame["seed"])
    assert _file_bytes(tmp_path) == _file_bytes(run_dir)


@pytest.mark.slow
def test_other_seed_gives_other_phrases(sampled_run, tmp_path):
    _, frame = sampled_run
    other = generate_architectures(tmp_path, "digits", 3, 12, progress=False)
    assert list(other["phrase"]) != list(frame["phrase"])


@pytest.mark.slow
def test_table_columns_and_ids(sampled_run):
    _, frame = sampled_run
    assert list(frame.columns) == COLUMNS
    assert list(frame["arch_id"]) == ["a0001", "a0002", "a0003"]
    assert set(frame["dataset"]) == {"digits"}
    assert frame["duplicate_of"].isna().all()


@pytest.mark.slow
def test_every_file_exists(sampled_run):
    run_dir, frame = sampled_run
    for row in frame.itertuples():
        assert row.code_path == f"architectures/{row.arch_id}.py"
        assert row.image_path == f"architectures/{row.arch_id}.png"
        assert (run_dir / row.code_path).stat().st_size > 0
        assert (run_dir / row.image_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_params_equal_keras_count(sampled_run):
    import keras

    run_dir, frame = sampled_run
    for row in frame.itertuples():
        model = load_build_model(run_dir / row.code_path)()
        assert model.count_params() == row.params, row.arch_id
        assert len(model.layers) == row.num_layers, row.arch_id
        keras.backend.clear_session()


@pytest.mark.slow
def test_store_rows_match_table(sampled_run):
    run_dir, frame = sampled_run
    rows = _stored_rows(run_dir)
    assert [row[0] for row in rows] == list(frame["arch_id"])
    assert [row[1] for row in rows] == list(frame["phrase"])
    assert [row[2] for row in rows] == list(frame["seed"])
    assert {row[3] for row in rows} == {"digits"}
    assert [row[4] for row in rows] == list(frame["params"])
    assert [row[7] for row in rows] == list(frame["code_path"])


@pytest.mark.slow
def test_registered_architectures_read_back(sampled_run):
    run_dir, frame = sampled_run
    assert has_registered_architectures(run_dir)
    registered = registered_architectures(run_dir, dataset="digits")
    assert registered.to_dict("records") == frame.to_dict("records")


@pytest.mark.slow
def test_rerun_registers_nothing_new(sampled_run):
    run_dir, frame = sampled_run
    before_files = _file_bytes(run_dir)
    before_rows = _stored_rows(run_dir)
    again = generate_architectures(run_dir, "digits", 3, 11, progress=False)
    assert again.to_dict("records") == frame.to_dict("records")
    assert _stored_rows(run_dir) == before_rows
    assert _file_bytes(run_dir) == before_files


@pytest.mark.slow
def test_larger_count_extends_run(tmp_path):
    first = generate_architectures(tmp_path, "digits", 2, 5, progress=False)
    extended = generate_architectures(tmp_path, "digits", 3, 5, progress=False)
    assert list(extended["phrase"][:2]) == list(first["phrase"])
    assert len(_stored_rows(tmp_path)) == 3
    assert len(registered_architectures(tmp_path)) == 3


@pytest.mark.slow
def test_given_phrases_keep_pins_and_flag_duplicates(tmp_path):
    frame = generate_architectures(
        tmp_path, "digits", 1, 0, phrases=[PINNED, BARE, PINNED, BARE], progress=False
    )
    assert list(frame["phrase"][[0, 2]]) == [PINNED, PINNED]
    # pandas stores the missing ids of a text column as NaN.
    assert frame["duplicate_of"].fillna("-").tolist() == ["-", "-", "a0001", "-"]
    assert frame["bare_duplicate_of"].fillna("-").tolist() == ["-", "-", "a0001", "a0002"]
    assert frame["bare_phrase"][1] == BARE
    assert len(_stored_rows(tmp_path)) == 4


@pytest.mark.slow
def test_original_effective_sampling_differs(tmp_path):
    frame = generate_architectures(
        tmp_path, "digits", 2, 0, sampling=SamplingConfig.original_effective(), progress=False
    )
    configured = generate_architectures(tmp_path / "other", "digits", 2, 0, progress=False)
    assert list(frame["bare_phrase"]) != list(configured["bare_phrase"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"num_architectures": 0}, ParameterError, r"invalid num_architectures 0"),
        ({"num_architectures": True}, ParameterError, r"invalid num_architectures True"),
        ({"num_architectures": 2.0}, ParameterError, r"invalid num_architectures 2\.0"),
        ({"seed": -3}, ParameterError, r"invalid seed -3"),
        ({"dataset": "mnist"}, DatasetError, r"unknown data set 'mnist'"),
        ({"phrases": [PINNED, 3]}, ParameterError, r"invalid phrases .*list of strings"),
        (
            {"phrases": [PINNED, "input conv flatten dense"]},
            ParameterError,
            r"invalid phrases\[1\]: line 1, column 24: unexpected end of phrase",
        ),
        (
            {"phrases": ["input conv(kernel=20, padding=valid) flatten dense output"]},
            ParameterError,
            r"invalid phrases\[0\]: it cannot be solved for data set 'digits' .*kernel 20",
        ),
    ],
)
def test_invalid_argument_is_rejected(tmp_path, arguments, error, message):
    values = {"dataset": "digits", "num_architectures": 2, "seed": 0, **arguments}
    phrases = values.pop("phrases", None)
    with pytest.raises(error, match=message):
        generate_architectures(tmp_path, **values, phrases=phrases, progress=False)
    assert not (tmp_path / "architectures").exists() or not any(
        (tmp_path / "architectures").iterdir()
    )


@pytest.mark.slow
def test_other_arguments_in_same_directory_are_rejected(sampled_run):
    run_dir, _ = sampled_run
    with pytest.raises(ParameterError, match=r"was generated with seed=11; use the same values"):
        generate_architectures(run_dir, "digits", 3, 12, progress=False)
    with pytest.raises(ParameterError, match=r"was generated with phrases=None"):
        generate_architectures(run_dir, "digits", 1, 11, phrases=[PINNED], progress=False)


@pytest.mark.slow
def test_training_on_other_dataset_is_rejected(sampled_run):
    run_dir, _ = sampled_run
    with pytest.raises(ParameterError, match=r"were solved for 'digits'; use dataset 'digits'"):
        registered_architectures(run_dir, dataset="cifar10")


def test_empty_directory_has_no_architectures(tmp_path):
    assert not has_registered_architectures(tmp_path)
    with pytest.raises(CNNGenError, match=r"no architectures registered in .*; generate them"):
        registered_architectures(tmp_path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("configured", SamplingConfig()),
        ("original_effective", SamplingConfig.original_effective()),
    ],
)
def test_sampling_config_names(name, expected):
    assert sampling_config(name) == expected


def test_sampling_names_match_parameter_choices():
    assert PARAMETERS["sampling"].choices == tuple(SAMPLING_CONFIGS)


def test_unknown_sampling_name_is_rejected():
    with pytest.raises(ParameterError, match=r"invalid sampling 'random': expected one of"):
        sampling_config("random")
