"""Tests of cnngen.evaluation on results stores written by cnngen.store.

The fast tests write trainings with known targets for sampled architectures; the slow ones
train tiny architectures on digits through the real training path first.
"""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from fixtures_evaluation import write_store

from cnngen.cli import main as cli_main
from cnngen.errors import CNNGenError
from cnngen.evaluation import (
    BASELINES,
    MIN_ARCHITECTURES,
    TARGETS,
    evaluable_architectures,
    evaluate_database,
    evaluate_frame,
    read_results,
    run_evaluation,
    split_architectures,
    target_values,
)
from cnngen.evaluation_inputs import cheap_features, parse_train_sizes, predictor_inputs
from cnngen.features import architecture_features, stored_features
from cnngen.metrics import compute_metrics
from cnngen.proxies import PROXY_COLUMNS
from cnngen.sampling import sample_many
from cnngen.store import ResultsStore

SUMMARY_METRICS = ["kendall_tau", "spearman", "mae", "within_10pct"]
PREDICTORS = ("DT", "Py_code", "RF", "GB")
# Small ensembles keep the tests fast; the protocol is the same.
FAST = {
    "Py_code": {"n_estimators": 20},
    "RF": {"n_estimators": 10},
    "GB": {"n_estimators": 20},
}
SIZES = (5, 10, 50, "all")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """Twenty-four ok trainings, two of them stored twice, plus one failed and one diverged."""
    statuses = ["ok"] * 24 + ["failed", "diverged"]
    return write_store(tmp_path_factory.mktemp("run") / "results.sqlite", statuses, duplicates=2)


@pytest.fixture(scope="module")
def evaluation(store_path):
    return run_evaluation(
        store_path, predictors=PREDICTORS, train_sizes=SIZES, repetitions=3, seed=1,
        predictor_options=FAST,
    )  # fmt: skip


def test_split_keeps_duplicates_together():
    phrases = [f"p{i % 7}" for i in range(20)]  # seven networks, most trained several times
    for seed in range(30):
        train, test = split_architectures(phrases, 0.2, seed)
        train_phrases = {phrases[i] for i in train}
        test_phrases = {phrases[i] for i in test}
        assert not train_phrases & test_phrases
        assert len(train) + len(test) == len(phrases)


def test_split_is_seeded():
    phrases = [f"p{i}" for i in range(40)]
    first = split_architectures(phrases, 0.2, 3)
    again = split_architectures(phrases, 0.2, 3)
    other = split_architectures(phrases, 0.2, 4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize(
    ("num_phrases", "fraction", "num_test"),
    [(40, 0.2, 8), (10, 0.2, 2), (5, 0.2, 2), (5, 0.9, 2), (6, 0.5, 3)],
)
def test_split_sizes(num_phrases, fraction, num_test):
    train, test = split_architectures([f"p{i}" for i in range(num_phrases)], fraction, 0)
    assert len(test) == num_test
    assert len(train) == num_phrases - num_test


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.2, "0.2", True, None])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(CNNGenError, match="invalid test_fraction"):
        split_architectures([f"p{i}" for i in range(10)], fraction, 0)


def test_split_rejects_too_few_phrases():
    with pytest.raises(CNNGenError, match="needs at least 5 distinct architectures, got 4"):
        split_architectures(["a", "b", "c", "d", "d"], 0.2, 0)


def test_energy_per_epoch_target():
    frame = pd.DataFrame(
        {"energy_kwh": [2e-5, 3e-5, None], "epochs_run": pd.array([2, 0, 1], dtype="Int64")}
    )
    values = target_values(frame, "energy_per_epoch_kwh")
    assert values[0] == pytest.approx(1e-5)
    assert math.isnan(values[1])
    assert math.isnan(values[2])


@pytest.mark.parametrize(
    ("given", "expected"),
    [(["10", "all"], (10, "all")), ([25, "50"], (25, 50)), ([], ())],
)
def test_parse_train_sizes(given, expected):
    assert parse_train_sizes(given) == expected


def test_parse_train_sizes_rejects_text():
    with pytest.raises(CNNGenError, match="invalid training size 'ten'"):
        parse_train_sizes(["ten"])


def test_summary_has_every_predictor_target_and_size(evaluation):
    summary = evaluation.summary
    triples = set(zip(summary["predictor"], summary["target"], summary["train_size"], strict=True))
    # 24 ok networks and 2 duplicates: 19 training and 5 test networks.
    expected_sizes = {5, 10, 19}
    names = [*PREDICTORS, *BASELINES]
    assert triples == {(p, t, s) for p in names for t in TARGETS for s in expected_sizes}
    trained = summary[summary["kind"] == "predictor"]
    assert (trained["repetitions"] == 3).all()
    assert set(summary.loc[summary["predictor"].isin(BASELINES), "kind"]) == {"ranking"}


def test_sizes_larger_than_pool_skipped_and_reported(evaluation):
    assert evaluation.skipped_sizes == {target: {50: 19} for target in TARGETS}


def test_training_sets_have_the_requested_size(evaluation):
    trained = evaluation.per_repetition[evaluation.per_repetition["kind"] == "predictor"]
    for size, rows in trained.groupby("train_size"):
        # Two networks are stored twice, so a training set has size to size + 2 rows.
        assert rows["n_train"].between(size, size + 2).all(), size


def test_one_test_set_for_every_predictor_size_and_repetition(evaluation, store_path):
    test_ids = set(evaluation.test_arch_ids)
    for _, rows in evaluation.predictions.groupby(
        ["target", "train_size", "repetition", "predictor"]
    ):
        assert set(rows["arch_id"]) == test_ids
    frame = read_results(store_path).set_index("arch_id")
    assert frame.loc[sorted(test_ids), "phrase"].nunique() == 5


def test_subsamples_differ_between_repetitions(store_path):
    per_repetition = run_evaluation(
        store_path, predictors=("DT",), targets=("test_accuracy",), train_sizes=(5,),
        repetitions=4, seed=1,
    ).per_repetition  # fmt: skip
    taus = per_repetition.loc[per_repetition["predictor"] == "DT", "kendall_tau"]
    assert len(set(taus)) > 1


def test_summary_values_are_numbers_or_none(evaluation):
    for column in [f"{m}_{s}" for m in SUMMARY_METRICS for s in ("mean", "std")]:
        for value in evaluation.summary[column]:
            assert value is None or (isinstance(value, float) and math.isfinite(value)), column


def test_rankings_have_no_mae_and_one_score(evaluation):
    rankings = evaluation.summary[evaluation.summary["kind"] == "ranking"]
    assert all(value is None for value in rankings["mae_mean"])
    assert all(value is not None for value in rankings["kendall_tau_mean"])
    assert (rankings["repetitions"] == 1).all()
    for _, rows in rankings.groupby(["predictor", "target"]):
        assert rows["kendall_tau_mean"].nunique() == 1


def test_energy_targets_report_relative_error(evaluation):
    rows = evaluation.summary[evaluation.summary["predictor"] == "DT"]
    accuracy = rows[rows["target"] == "test_accuracy"]
    assert all(value is None for value in accuracy["within_10pct_mean"])
    for target in ("energy_kwh", "energy_per_epoch_kwh"):
        values = rows.loc[rows["target"] == target, "within_10pct_mean"]
        assert all(0.0 <= value <= 1.0 for value in values)


def test_best_predictor_named_per_target_and_size(evaluation):
    trained = evaluation.summary[evaluation.summary["kind"] == "predictor"]
    for _, rows in trained.groupby(["target", "train_size"]):
        best = rows["best"].iloc[0]
        assert best in PREDICTORS
        assert rows.loc[rows["predictor"] == best, "p_vs_best"].iloc[0] is None
        others = rows.loc[rows["predictor"] != best, "p_vs_best"]
        assert all(p is None or 0.0 <= p <= 1.0 for p in others)


def test_failed_and_diverged_left_out_and_counted(evaluation):
    assert evaluation.status_counts == {"ok": 26, "failed": 1, "diverged": 1}
    assert evaluation.statuses == ("ok",)
    trained = evaluation.per_repetition[evaluation.per_repetition["kind"] == "predictor"]
    assert (trained["n_test"] + trained["n_train"] <= 26).all()


def test_duplicates_never_on_both_sides(evaluation, store_path):
    frame = read_results(store_path)
    phrase_of = dict(zip(frame["arch_id"], frame["phrase"], strict=True))
    test_phrases = {phrase_of[arch_id] for arch_id in evaluation.test_arch_ids}
    duplicated = frame[frame["phrase"].duplicated(keep=False) & (frame["status"] == "ok")]
    for phrase, rows in duplicated.groupby("phrase"):
        in_test = set(rows["arch_id"]) & set(evaluation.test_arch_ids)
        assert in_test in (set(), set(rows["arch_id"])), phrase
    assert test_phrases


def test_same_seed_same_scores(store_path, evaluation):
    again = run_evaluation(
        store_path, predictors=PREDICTORS, train_sizes=SIZES, repetitions=3, seed=1,
        predictor_options=FAST,
    )  # fmt: skip
    pd.testing.assert_frame_equal(again.per_repetition, evaluation.per_repetition)


def test_other_seed_other_test_set(store_path, evaluation):
    other = run_evaluation(
        store_path, predictors=("DT",), targets=("test_accuracy",), train_sizes=(5,), seed=2,
        repetitions=1,
    )  # fmt: skip
    assert set(other.test_arch_ids) != set(evaluation.test_arch_ids)


def test_evaluate_database_returns_summary(store_path):
    summary = evaluate_database(
        store_path, predictors=("DT",), repetitions=2, targets=("energy_kwh",), train_sizes=(5,)
    )
    assert set(summary["target"]) == {"energy_kwh"}
    assert summary.attrs["status_counts"]["failed"] == 1
    assert summary.attrs["skipped_sizes"] == {}


def test_evaluate_database_accepts_run_directory(store_path):
    summary = evaluate_database(
        store_path.parent, predictors=("DT",), repetitions=2, targets=("test_accuracy",),
        train_sizes=(5,),
    )  # fmt: skip
    assert len(summary) == 1 + len(BASELINES)


def test_including_diverged_rows(store_path):
    evaluation = run_evaluation(
        store_path, predictors=("DT",), repetitions=1, statuses=("ok", "diverged"),
        train_sizes=("all",), targets=("test_accuracy",),
    )  # fmt: skip
    dt = evaluation.summary[evaluation.summary["predictor"] == "DT"].iloc[0]
    assert dt["n_train"] + dt["n_test"] == 27


def test_predictor_train_sizes_limit_a_predictor(store_path):
    evaluation = run_evaluation(
        store_path, predictors=("DT", "RF"), targets=("test_accuracy",), train_sizes=(5, 10),
        repetitions=1, predictor_options={"RF": {"n_estimators": 5}},
        predictor_train_sizes={"RF": (5,)},
    )  # fmt: skip
    trained = evaluation.summary[evaluation.summary["kind"] == "predictor"]
    assert set(trained.loc[trained["predictor"] == "DT", "train_size"]) == {5, 10}
    assert set(trained.loc[trained["predictor"] == "RF", "train_size"]) == {5}


def test_constant_accuracy_gives_undefined_tau(tmp_path):
    """Only one network has another accuracy, so every test set has a constant side."""
    path = write_store(
        tmp_path / "results.sqlite", ["ok"] * 10, accuracy=lambda i: 0.9 if i == 0 else 0.5
    )
    summary = evaluate_database(
        path, predictors=("DT",), repetitions=5, targets=("test_accuracy",), train_sizes=(3,)
    )
    row = summary[summary["predictor"] == "DT"].iloc[0]
    assert row["tau_undefined"] == 5
    assert row["kendall_tau_mean"] is None
    assert row["spearman_mean"] is None
    assert "undefined: constant" in row["note"]
    assert "of 5 repetitions" in row["note"]
    assert row["mae_mean"] is not None


def test_too_few_trained_architectures(tmp_path):
    statuses = ["ok"] * 4 + ["failed"] * 2 + ["diverged"] * 2
    path = write_store(tmp_path / "results.sqlite", statuses)
    message = (
        r"needs at least 5 distinct architectures with status ok, but the results contain 4 "
        r"\(stored trainings: 4 ok, 2 failed, 2 diverged\); train more architectures"
    )
    with pytest.raises(CNNGenError, match=message):
        evaluate_database(path)


def test_duplicates_do_not_count_twice(tmp_path):
    path = write_store(tmp_path / "results.sqlite", ["ok"] * 4, duplicates=4)
    assert evaluable_architectures(read_results(path)) == 4
    with pytest.raises(CNNGenError, match="results contain 4"):
        evaluate_database(path)


def test_target_known_for_too_few_architectures(tmp_path):
    path = write_store(
        tmp_path / "results.sqlite", ["ok"] * 8, energy=lambda i: 1e-5 if i < 2 else None
    )
    summary = evaluate_database(path, predictors=("DT",), repetitions=2, train_sizes=(3,))
    energy = summary[summary["target"] == "energy_kwh"]
    assert energy["note"].str.contains("training and .* test architectures have energy_kwh").all()
    assert all(value is None for value in energy["kendall_tau_mean"])
    accuracy = summary[summary["target"] == "test_accuracy"]
    assert all(value is not None for value in accuracy["mae_mean"][accuracy["kind"] == "predictor"])


BAD_OPTIONS = [
    ({"predictors": ["XGB"]}, "invalid predictor names"),
    ({"predictors": []}, "invalid predictor names"),
    ({"targets": ["energy_kwh_per_epoch"]}, "invalid target names"),
    ({"statuses": ["done"]}, "invalid status names"),
    ({"test_fraction": 1.0}, "invalid test_fraction"),
    ({"repetitions": 0}, "invalid repetitions"),
    ({"repetitions": 2.0}, "invalid repetitions"),
    ({"train_sizes": [2]}, "invalid train_sizes"),
    ({"train_sizes": []}, "invalid train_sizes"),
    ({"train_sizes": ["10"]}, "invalid train_sizes"),
    ({"predictor_options": {"XGB": {}}}, "invalid predictor_options names"),
    ({"predictor_options": {"DT": {"depth": 3}}}, r"invalid options \['depth'\]"),
    ({"predictor_train_sizes": {"DT": [7]}}, "not a subset of train_sizes"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_options_rejected(store_path, options, message):
    with pytest.raises(CNNGenError, match=message):
        evaluate_database(store_path, **{"train_sizes": (5,), **options})


def test_missing_store_rejected(tmp_path):
    with pytest.raises(CNNGenError, match="not found"):
        evaluate_database(tmp_path / "results.sqlite")


def test_folder_without_results_rejected(tmp_path):
    with pytest.raises(CNNGenError, match="no results.sqlite or results.parquet"):
        evaluate_database(tmp_path)


def test_parquet_gives_same_scores_as_store(store_path, tmp_path):
    frame = read_results(store_path)
    frame.to_parquet(tmp_path / "results.parquet", index=False)
    options = {"predictors": ("DT",), "train_sizes": (5,), "repetitions": 2}
    from_parquet = evaluate_database(tmp_path, **options)
    from_store = evaluate_database(store_path, **options)
    pd.testing.assert_frame_equal(from_parquet, from_store)


def test_parquet_missing_column_rejected(store_path, tmp_path):
    read_results(store_path).drop(columns=["epochs_run"]).to_parquet(tmp_path / "r.parquet")
    with pytest.raises(CNNGenError, match=r"lacks the columns \['epochs_run'\]"):
        evaluate_database(tmp_path / "r.parquet")


def proxies_for(rows, missing_naswot=0):
    """Return a proxies table that ranks like the FLOPs, with some NASWOT scores missing."""
    table = pd.DataFrame(index=pd.Index(rows["arch_id"], name="arch_id"))
    flops = rows["flops"].astype(float).to_numpy()
    for offset, name in enumerate(PROXY_COLUMNS):
        table[name] = np.log10(flops) + offset
    table.iloc[:missing_naswot, table.columns.get_loc("naswot")] = np.nan
    return table


def test_proxies_ranked_and_used_as_features(store_path):
    frame = read_results(store_path)
    rows = frame[frame["status"] == "ok"]
    evaluation = evaluate_frame(
        frame, predictors=("RF",), targets=("energy_kwh",), train_sizes=(10,), repetitions=1,
        proxies=proxies_for(rows), predictor_options={"RF": {"n_estimators": 5}},
    )  # fmt: skip
    summary = evaluation.summary.set_index("predictor")
    for name in PROXY_COLUMNS:
        assert summary.loc[name, "kind"] == "ranking"
        assert summary.loc[name, "kendall_tau_mean"] == pytest.approx(
            summary.loc["flops", "kendall_tau_mean"]
        )


def test_incomplete_proxy_ranked_on_defined_rows(store_path, caplog):
    frame = read_results(store_path)
    rows = frame[frame["status"] == "ok"].reset_index(drop=True)
    evaluation = evaluate_frame(
        frame, predictors=("DT",), targets=("energy_kwh",), train_sizes=(10,), repetitions=1,
        proxies=proxies_for(rows, missing_naswot=len(rows) - 1),
    )  # fmt: skip
    naswot = evaluation.summary.set_index("predictor").loc["naswot"]
    assert "left out of the predictors' features" in caplog.text
    assert naswot["kendall_tau_mean"] is None
    assert "undefined for" in naswot["note"]


def test_precomputed_features_used(store_path):
    frame = read_results(store_path)
    options = {"predictors": ("DT", "Py_code"), "train_sizes": (5,), "repetitions": 2}
    features = cheap_features(frame[frame["status"] == "ok"])
    evaluation = evaluate_frame(frame, features=features, predictor_options=FAST, **options)
    expected = run_evaluation(store_path, predictor_options=FAST, **options)
    pd.testing.assert_frame_equal(evaluation.per_repetition, expected.per_repetition)


def test_precomputed_features_missing_rows(store_path):
    frame = read_results(store_path)
    features = cheap_features(frame[frame["status"] == "ok"]).iloc[1:]
    with pytest.raises(CNNGenError, match="features table lacks 1 evaluated architectures"):
        evaluate_frame(frame, features=features)


def test_cli_evaluate_prints_counts_and_table(store_path, tmp_path, capsys):
    output = tmp_path / "summary.csv"
    status = cli_main([
        "evaluate", str(store_path), "--predictors", "DT", "--targets", "test_accuracy",
        "--sizes", "5", "50", "--repetitions", "2", "--output", str(output),
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 0
    assert "stored trainings: ok 26, failed 1, diverged 1" in printed
    assert "skipped test_accuracy training size 50: the training pool has 19" in printed
    assert len(pd.read_csv(output)) == 1 + len(BASELINES)


def test_cli_evaluate_rejects_bad_size(store_path, capsys):
    assert cli_main(["evaluate", str(store_path), "--sizes", "ten"]) == 2
    assert "invalid training size 'ten'" in capsys.readouterr().err


# Real trainings: tiny sampled architectures on digits, through run_batch and CodeCarbon.


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from cnngen.datasets import load_dataset
    from cnngen.keras_source import load_build_model, write_source
    from cnngen.training import TrainingConfig, run_batch

    run_dir = tmp_path_factory.mktemp("trained")
    data = load_dataset("digits", seed=0)
    items, resolved_by_id = [], {}
    for seed, resolved in sample_many(5, 8, data.info.input_shape, data.info.num_classes):
        arch_id = f"s{seed}"
        metrics = compute_metrics(resolved)
        code_path = write_source(resolved, run_dir / "architectures" / f"{arch_id}.py")
        items.append(
            SimpleNamespace(
                arch_id=arch_id, phrase=resolved.to_phrase(), seed=seed, params=metrics.params,
                flops=metrics.flops, code_path=str(code_path), image_path=None, dataset="digits",
            )
        )  # fmt: skip
        resolved_by_id[arch_id] = resolved
    # With one epoch, 4 of 7 such networks stayed at chance level (diverged) in a trial run, so
    # they train for three.
    config = TrainingConfig(epochs=3, measure_power_secs=0.5, idle_duration_s=0.5)
    with ResultsStore(run_dir / "results.sqlite") as store:
        build = lambda item: load_build_model(item.code_path)  # noqa: E731
        run_batch(items, data, config, store, build_model_for=build, progress=False)
    return SimpleNamespace(path=run_dir / "results.sqlite", resolved=resolved_by_id)


@pytest.mark.slow
def test_real_run_features_match_trained_networks(trained_run):
    frame = read_results(trained_run.path)
    features = stored_features(frame)
    for arch_id, resolved in trained_run.resolved.items():
        expected = architecture_features(resolved, 3)
        assert features.loc[arch_id].to_dict() == pytest.approx(expected), arch_id


@pytest.mark.slow
def test_real_run_evaluation(trained_run):
    frame = read_results(trained_run.path)
    assert evaluable_architectures(frame) >= MIN_ARCHITECTURES, frame["status"].tolist()
    evaluation = evaluate_frame(
        frame, repetitions=3, seed=0, train_sizes=("all",), predictor_options=FAST,
        run_dir=trained_run.path.parent,
    )  # fmt: skip
    summary = evaluation.summary.set_index(["predictor", "target"])
    assert sum(evaluation.status_counts.values()) == 8
    for name in PREDICTORS:
        assert 0.0 <= summary.loc[(name, "test_accuracy"), "mae_mean"] <= 1.0
        assert summary.loc[(name, "energy_kwh"), "mae_mean"] >= 0.0
    for target in TARGETS:
        tau = summary.loc[("flops", target), "kendall_tau_mean"]
        assert tau is None or -1.0 <= tau <= 1.0
    measured = evaluation.predictions["measured"]
    assert (measured[evaluation.predictions["target"] != "test_accuracy"] > 0).all()


def test_cli_evaluate_fits_torch_predictors_at_their_sizes(store_path, tmp_path):
    pytest.importorskip("torch")
    output = tmp_path / "summary.csv"
    status = cli_main([
        "evaluate", str(store_path), "--predictors", "DT", "Neural", "--targets", "energy_kwh",
        "--sizes", "5", "10", "--torch-sizes", "5", "--neural-epochs", "2", "--repetitions", "1",
        "--output", str(output),
    ])  # fmt: skip
    assert status == 0
    summary = pd.read_csv(output)
    sizes = summary.groupby("predictor")["train_size"].apply(lambda s: sorted(s.astype(str)))
    assert sizes["DT"] == ["10", "5"]
    assert sizes["Neural"] == ["5"]


def test_cli_evaluate_rejects_bad_neural_epochs(store_path, capsys):
    pytest.importorskip("torch")
    status = cli_main([
        "evaluate", str(store_path), "--predictors", "Neural", "--targets", "energy_kwh",
        "--sizes", "5", "--neural-epochs", "0", "--repetitions", "1",
    ])  # fmt: skip
    assert status == 2
    assert "epochs" in capsys.readouterr().err


def test_predictor_inputs_name_each_column_once(store_path):
    rows = read_results(store_path)
    inputs = predictor_inputs(rows[rows["status"] == "ok"].reset_index(drop=True))
    assert not inputs.columns.duplicated().any()
    assert "epochs" in inputs.columns


def test_fitted_predictor_predicts_on_plain_feature_table(store_path):
    """A predictor fitted on the evaluation's inputs reads the same columns elsewhere."""
    from cnngen.predictors import DecisionTreePredictor

    rows = read_results(store_path)
    rows = rows[rows["status"] == "ok"].reset_index(drop=True)
    inputs = predictor_inputs(rows)
    predictor = DecisionTreePredictor(random_state=0).fit(inputs, rows["energy_kwh"])
    plain = inputs[list(predictor.feature_names_in_)]
    np.testing.assert_array_equal(predictor.predict(plain), predictor.predict(inputs))
