"""Tests of cnngen.scores: correlations, undefined taus, summaries and the paper's tables."""

import math
import re

import pandas as pd
import pytest
from scipy.stats import kendalltau

from cnngen.scores import (
    compare_predictors,
    paper_table,
    rank_correlations,
    score_predictions,
    summarise,
)

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


def record(predictor, repetition, tau, *, kind="predictor", size=10, mae=0.1, note=None):
    return {
        "predictor": predictor, "kind": kind, "target": "test_accuracy", "train_size": size,
        "repetition": repetition, "n_train": size, "n_test": 5, "kendall_tau": tau,
        "spearman": tau, "mae": mae, "within_10pct": None, "note": note,
    }  # fmt: skip


@pytest.fixture
def per_repetition():
    rows = [record("good", r, tau) for r, tau in enumerate([0.6, 0.7, 0.65, 0.72])]
    rows += [record("poor", r, tau) for r, tau in enumerate([0.1, 0.0, 0.05, 0.12])]
    rows += [record("flat", r, None, note="undefined: constant prediction") for r in range(3)] + [
        record("flat", 3, 0.2)
    ]
    rows.append(record("flops", None, 0.3, kind="ranking", mae=None))
    return pd.DataFrame(rows)


def test_summary_means_and_stds(per_repetition):
    summary = summarise(per_repetition).set_index("predictor")
    assert summary.loc["good", "kendall_tau_mean"] == pytest.approx(0.6675)
    assert summary.loc["good", "kendall_tau_std"] == pytest.approx(
        pd.Series([0.6, 0.7, 0.65, 0.72]).std()
    )
    assert summary.loc["good", "repetitions"] == 4


def test_summary_undefined_tau_is_counted_not_nan(per_repetition):
    flat = summarise(per_repetition).set_index("predictor").loc["flat"]
    assert flat["tau_undefined"] == 3
    assert flat["kendall_tau_mean"] == pytest.approx(0.2)
    assert flat["kendall_tau_std"] is None
    assert flat["note"] == "tau undefined: constant prediction in 3 of 4 repetitions"


def test_summary_has_no_nan(per_repetition):
    summary = summarise(per_repetition)
    for column in [c for c in summary.columns if c.endswith(("_mean", "_std"))]:
        for value in summary[column]:
            assert value is None or (isinstance(value, float) and math.isfinite(value)), column


def test_best_and_p_values(per_repetition):
    summary = summarise(per_repetition).set_index("predictor")
    assert set(summary["best"]) == {"good"}
    assert summary.loc["good", "p_vs_best"] is None
    assert 0.0 < summary.loc["poor", "p_vs_best"] < 0.05
    assert summary.loc["flat", "p_vs_best"] is None  # one defined tau
    assert summary.loc["flops", "p_vs_best"] is None  # a ranking has no repetitions


def test_compare_predictors(per_repetition):
    p_value = compare_predictors(per_repetition, "test_accuracy", "good", "poor")
    assert 0.0 < p_value < 0.05
    assert compare_predictors(per_repetition, "test_accuracy", "good", "absent") is None
    assert (
        compare_predictors(per_repetition, "test_accuracy", "good", "poor", train_size=25) is None
    )


def test_paper_table_layout(per_repetition):
    table = paper_table(summarise(per_repetition), "test_accuracy", 10)
    assert list(table.index) == ["good", "poor", "flat", "flops"]
    assert list(table.columns) == ["kendall_tau", "mae", "p_vs_best"]
    assert re.fullmatch(r"0\.67 ± 0\.0\d+", table.loc["good", "kendall_tau"])
    assert table.loc["good", "p_vs_best"] == "best"
    assert table.loc["flat", "kendall_tau"] == "0.2"
    assert table.loc["flops", "mae"] == "—"
    assert table.loc["flops", "kendall_tau"] == "0.3"


def test_paper_table_undefined_everywhere():
    rows = pd.DataFrame(
        [record("flat", r, None, note="undefined: constant prediction") for r in range(2)]
    )
    table = paper_table(summarise(rows), "test_accuracy", 10)
    assert table.loc["flat", "kendall_tau"] == "undefined"
    assert table.loc["flat", "mae"] == "0.1 ± 0"
