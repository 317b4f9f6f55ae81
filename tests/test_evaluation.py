"""Tests of cnngen.evaluation on results stores written by cnngen.store.

The fast tests write trainings with known targets for sampled architectures; the slow ones
train tiny architectures on digits through the real training path first.
"""

import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from cnngen.energy import EnergyReading
from cnngen.errors import CNNGenError
from cnngen.evaluation import (
    BASELINES,
    MIN_ARCHITECTURES,
    TARGETS,
    compare_predictors,
    evaluable_architectures,
    evaluate_database,
    evaluate_frame,
    rank_correlations,
    read_results,
    run_evaluation,
    score_predictions,
    split_architectures,
    target_values,
)
from cnngen.features import architecture_features, stored_features
from cnngen.metrics import compute_metrics
from cnngen.sampling import sample_many
from cnngen.store import ArchitectureRecord, ResultsStore
from cnngen.training import TrainingResult

SUMMARY_METRICS = ["kendall_tau", "spearman", "mae", "within_10pct"]


def write_store(path, statuses, *, duplicates=0, accuracy=None, energy=None, epochs=2):
    """Write one training per status for architectures sampled on digits.

    Accuracy and energy default to functions of the architecture, so a tree can learn them.
    The first ``duplicates`` architectures are stored a second time under another id.
    """
    sampled = list(sample_many(11, len(statuses), (8, 8, 1), 10))
    with ResultsStore(path) as store:
        for index, ((seed, resolved), status) in enumerate(zip(sampled, statuses, strict=True)):
            metrics = compute_metrics(resolved)
            copies = 2 if index < duplicates else 1
            for copy in range(copies):
                arch_id = f"a{index:03d}" + ("b" * copy)
                store.add_architecture(
                    ArchitectureRecord(
                        arch_id, resolved.to_phrase(), seed, "digits", metrics.params,
                        metrics.flops, metrics.num_layers,
                    )
                )  # fmt: skip
                acc = (
                    0.3 + 0.5 * (metrics.params % 97) / 97 if accuracy is None else accuracy(index)
                )
                kwh = metrics.flops * epochs * 1e-12 if energy is None else energy(index)
                store.record_training(training_result(arch_id, status, acc, kwh, epochs))
    return path


def training_result(arch_id, status, accuracy, energy_kwh, epochs):
    failed = status == "failed"
    reading = EnergyReading(duration_s=2.0, energy_kwh=None if failed else energy_kwh)
    return TrainingResult(
        arch_id=arch_id,
        status=status,
        epochs=epochs,
        epochs_run=0 if failed else epochs,
        test_accuracy=None if failed else accuracy,
        energy=reading,
        error="ValueError: broken" if failed else None,
    )


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """Twelve ok trainings, two of them stored twice, plus one failed and one diverged."""
    statuses = ["ok"] * 12 + ["failed", "diverged"]
    return write_store(tmp_path_factory.mktemp("run") / "results.sqlite", statuses, duplicates=2)


@pytest.fixture(scope="module")
def evaluation(store_path):
    return run_evaluation(store_path, repetitions=4, seed=1)


CORRELATIONS = [
    ([1, 2, 3, 4], [10, 20, 30, 40], 1.0, 1.0, None),
    ([1, 2, 3, 4], [4, 3, 2, 1], -1.0, -1.0, None),
    ([1, 2, 3], [5, 5, 5], None, None, "undefined: constant prediction"),
    ([2, 2, 2], [1, 2, 3], None, None, "undefined: constant measured values"),
    ([0.5], [0.4], None, None, r"undefined: 1 test architecture\(s\), needs 2"),
    ([], [], None, None, r"undefined: 0 test architecture\(s\), needs 2"),
]


@pytest.mark.parametrize(("measured", "predicted", "tau", "rho", "note"), CORRELATIONS)
def test_rank_correlations(measured, predicted, tau, rho, note):
    got_tau, got_rho, got_note = rank_correlations(measured, predicted)
    assert got_tau == (None if tau is None else pytest.approx(tau))
    assert got_rho == (None if rho is None else pytest.approx(rho))
    if note is None:
        assert got_note is None
    else:
        assert re.fullmatch(note, got_note)


def test_kendall_tau_b_with_ties():
    measured, predicted = [1, 2, 2, 3, 4], [1, 1, 2, 3, 3]
    tau, _, _ = rank_correlations(measured, predicted)
    assert tau == pytest.approx(kendalltau(measured, predicted, variant="b").statistic)
    assert tau != pytest.approx(kendalltau(measured, predicted, variant="c").statistic)


def test_score_predictions_energy():
    scores = score_predictions([1, 2, 4, 10], [1.05, 2.5, 4.0, 8.0], relative=True)
    assert scores["mae"] == pytest.approx((0.05 + 0.5 + 0 + 2) / 4)
    assert scores["within_10pct"] == pytest.approx(0.5)
    assert scores["kendall_tau"] == pytest.approx(1.0)
    assert scores["note"] is None


def test_score_predictions_accuracy_has_no_relative_error():
    scores = score_predictions([0.2, 0.5], [0.3, 0.4], relative=False)
    assert scores["within_10pct"] is None
    assert scores["mae"] == pytest.approx(0.1)


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
    values = target_values(frame, "energy_kwh_per_epoch")
    assert values[0] == pytest.approx(1e-5)
    assert math.isnan(values[1])
    assert math.isnan(values[2])


def test_summary_has_every_predictor_and_target(evaluation):
    summary = evaluation.summary
    pairs = set(zip(summary["predictor"], summary["target"], strict=True))
    assert pairs == {(p, t) for p in ["DT", *BASELINES] for t in TARGETS}
    assert (summary["repetitions"] == 4).all()
    assert set(summary.loc[summary["predictor"] == "DT", "kind"]) == {"predictor"}
    assert set(summary.loc[summary["predictor"].isin(BASELINES), "kind"]) == {"baseline"}


def test_summary_values_are_numbers_or_none(evaluation):
    for column in [f"{m}_{s}" for m in SUMMARY_METRICS for s in ("mean", "std")]:
        for value in evaluation.summary[column]:
            assert value is None or (isinstance(value, float) and math.isfinite(value)), column


def test_baselines_have_no_mae(evaluation):
    baselines = evaluation.summary[evaluation.summary["kind"] == "baseline"]
    assert all(value is None for value in baselines["mae_mean"])
    assert all(value is not None for value in baselines["kendall_tau_mean"])


def test_energy_targets_report_relative_error(evaluation):
    rows = evaluation.summary[evaluation.summary["predictor"] == "DT"].set_index("target")
    assert rows.loc["test_accuracy", "within_10pct_mean"] is None
    for target in ("energy_kwh", "energy_kwh_per_epoch"):
        assert 0.0 <= rows.loc[target, "within_10pct_mean"] <= 1.0


def test_failed_and_diverged_left_out_and_counted(evaluation):
    assert evaluation.status_counts == {"ok": 14, "failed": 1, "diverged": 1}
    assert evaluation.statuses == ("ok",)
    used = evaluation.summary["n_train"] + evaluation.summary["n_test"]
    assert (used == 14).all()


def test_duplicates_never_on_both_sides(evaluation, store_path):
    frame = read_results(store_path)
    phrase_of = dict(zip(frame["arch_id"], frame["phrase"], strict=True))
    groups = frame[frame["status"] == "ok"].groupby("phrase")["arch_id"].apply(set)
    predictions = evaluation.predictions
    for (repetition, target), rows in predictions.groupby(["repetition", "target"]):
        test_ids = set(rows["arch_id"])
        for test_id in test_ids:
            assert groups[phrase_of[test_id]] <= test_ids, (repetition, target, test_id)


def test_predictions_cover_test_architectures(evaluation):
    predictions = evaluation.predictions
    assert set(predictions["predictor"]) == {"DT"}
    assert set(predictions["target"]) == set(TARGETS)
    per_split = predictions.groupby(["repetition", "target"]).size()
    assert (per_split >= 2).all()


def test_same_seed_same_scores(store_path, evaluation):
    again = run_evaluation(store_path, repetitions=4, seed=1)
    pd.testing.assert_frame_equal(again.per_repetition, evaluation.per_repetition)
    other = run_evaluation(store_path, repetitions=4, seed=2)
    assert not other.predictions["arch_id"].equals(evaluation.predictions["arch_id"])


def test_evaluate_database_returns_summary(store_path):
    summary = evaluate_database(store_path, repetitions=2, targets=("energy_kwh",))
    assert set(summary["target"]) == {"energy_kwh"}
    assert summary.attrs["status_counts"]["failed"] == 1


def test_evaluate_database_accepts_run_directory(store_path):
    summary = evaluate_database(store_path.parent, repetitions=2, targets=("test_accuracy",))
    assert len(summary) == 1 + len(BASELINES)


def test_including_diverged_rows(store_path):
    evaluation = run_evaluation(store_path, repetitions=2, statuses=("ok", "diverged"))
    used = evaluation.summary["n_train"] + evaluation.summary["n_test"]
    assert (used == 15).all()


def test_constant_accuracy_gives_undefined_tau(tmp_path):
    """Only one network has another accuracy, so every split has a constant side."""
    path = write_store(
        tmp_path / "results.sqlite", ["ok"] * 10, accuracy=lambda i: 0.9 if i == 0 else 0.5
    )
    summary = evaluate_database(path, repetitions=5, targets=("test_accuracy",))
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
        tmp_path / "results.sqlite", ["ok"] * 8, energy=lambda i: 1e-5 if i < 3 else None
    )
    summary = evaluate_database(path, repetitions=2)
    energy = summary[summary["target"] == "energy_kwh"]
    assert energy["note"].str.contains("only 3 architectures have energy_kwh").all()
    assert all(value is None for value in energy["kendall_tau_mean"])
    accuracy = summary[summary["target"] == "test_accuracy"]
    assert all(value is not None for value in accuracy["mae_mean"][accuracy["kind"] == "predictor"])


BAD_OPTIONS = [
    ({"predictors": ["XGB"]}, "invalid predictor names"),
    ({"predictors": []}, "invalid predictor names"),
    ({"targets": ["accuracy"]}, "invalid target names"),
    ({"statuses": ["done"]}, "invalid status names"),
    ({"test_fraction": 1.0}, "invalid test_fraction"),
    ({"repetitions": 0}, "invalid repetitions"),
    ({"repetitions": 2.0}, "invalid repetitions"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_options_rejected(store_path, options, message):
    with pytest.raises(CNNGenError, match=message):
        evaluate_database(store_path, **options)


def test_missing_store_rejected(tmp_path):
    with pytest.raises(CNNGenError, match="not found"):
        evaluate_database(tmp_path / "results.sqlite")


def test_compare_predictors(evaluation):
    p_value = compare_predictors(evaluation.per_repetition, "energy_kwh", "DT", "flops")
    assert p_value is None or 0.0 <= p_value <= 1.0
    assert compare_predictors(evaluation.per_repetition, "energy_kwh", "DT", "GCN") is None


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
    evaluation = evaluate_frame(frame, repetitions=3, seed=0)
    summary = evaluation.summary.set_index(["predictor", "target"])
    assert sum(evaluation.status_counts.values()) == 8
    assert 0.0 <= summary.loc[("DT", "test_accuracy"), "mae_mean"] <= 1.0
    assert summary.loc[("DT", "energy_kwh"), "mae_mean"] >= 0.0
    for target in TARGETS:
        tau = summary.loc[("flops", target), "kendall_tau_mean"]
        assert tau is None or -1.0 <= tau <= 1.0
    measured = evaluation.predictions["measured"]
    assert (measured[evaluation.predictions["target"] != "test_accuracy"] > 0).all()


def test_precomputed_features_used(store_path):
    frame = read_results(store_path)
    features = stored_features(frame[frame["status"] == "ok"])
    evaluation = evaluate_frame(frame, features=features, repetitions=2, seed=1)
    expected = run_evaluation(store_path, repetitions=2, seed=1)
    pd.testing.assert_frame_equal(evaluation.per_repetition, expected.per_repetition)


def test_precomputed_features_missing_rows(store_path):
    frame = read_results(store_path)
    features = stored_features(frame[frame["status"] == "ok"]).iloc[1:]
    with pytest.raises(CNNGenError, match="features table lacks 1 evaluated architectures"):
        evaluate_frame(frame, features=features)
