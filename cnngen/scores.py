"""Scores of predictions against measurements, their summaries and the paper-style tables.

This module owns the metrics of the evaluation: Kendall's tau-b (which handles ties),
Spearman's rho, the mean absolute error, and for energy the share of architectures predicted
within +-10%. A rank correlation is undefined when fewer than two values are given or one side
is constant, so it is then None with a note saying why, never NaN or 0. The module also
aggregates per-repetition scores into means and sample standard deviations, tests each
predictor against the best one with a two-sided Mann-Whitney U test, and lays the summary out
as the CNNGen paper's tables (predictors as rows, tau and MAE as "mean ± std").

Splits and repetitions are left to :mod:`cnngen.evaluation`.
"""

from __future__ import annotations

import math

import numpy as np

RELATIVE_TOLERANCE = 0.10
METRICS = ("kendall_tau", "spearman", "mae", "within_10pct")
_GROUP = ["predictor", "target", "train_size"]


def rank_correlations(measured, predicted) -> tuple[float | None, float | None, str | None]:
    """Compute Kendall's tau-b and Spearman's rho, or explain why they are undefined.

    Returns:
        ``(tau, rho, note)``: the two correlations and None, or None, None and the reason when
        fewer than two values are given or one side is constant.
    """
    from scipy.stats import kendalltau, spearmanr

    measured = np.asarray(measured, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    if len(measured) < 2:
        return None, None, f"undefined: {len(measured)} test architecture(s), needs 2"
    if np.ptp(predicted) == 0:
        return None, None, "undefined: constant prediction"
    if np.ptp(measured) == 0:
        return None, None, "undefined: constant measured values"
    tau = kendalltau(measured, predicted, variant="b").statistic
    rho = spearmanr(measured, predicted).statistic
    return float(tau), float(rho), None


def score_predictions(measured, predicted, *, relative: bool) -> dict:
    """Score predictions against measurements.

    Args:
        measured: Measured values of the test architectures.
        predicted: Predicted values (or a ranking's scores), in the same order.
        relative: Also compute ``within_10pct``, the share of predictions within
            :data:`RELATIVE_TOLERANCE` of a non-zero measured value (for energy targets).

    Returns:
        ``kendall_tau``, ``spearman``, ``mae``, ``within_10pct`` (None when not computed) and
        ``note`` (why a correlation is undefined, or None).
    """
    measured = np.asarray(measured, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    tau, rho, note = rank_correlations(measured, predicted)
    within = None
    if relative:
        nonzero = measured != 0
        error = np.abs(predicted[nonzero] - measured[nonzero]) / np.abs(measured[nonzero])
        within = float(np.mean(error <= RELATIVE_TOLERANCE)) if nonzero.any() else None
    mae = float(np.mean(np.abs(predicted - measured))) if len(measured) else None
    return {"kendall_tau": tau, "spearman": rho, "mae": mae, "within_10pct": within, "note": note}


def summarise(per_repetition):
    """Aggregate per-repetition scores into one row per predictor, target and training size.

    Args:
        per_repetition: One row per score, with ``predictor``, ``kind``, ``target``,
            ``train_size``, ``repetition``, ``n_train``, ``n_test``, the metrics and ``note``.

    Returns:
        A DataFrame with ``predictor``, ``target``, ``train_size``, ``kind``,
        ``repetitions``, mean ``n_train`` and ``n_test``, ``<metric>_mean`` and
        ``<metric>_std`` for each metric, ``tau_undefined`` (repetitions whose tau is
        undefined), ``note``, ``best`` (the trained predictor with the highest mean tau for
        the target and size) and ``p_vs_best`` (see :func:`add_tests_against_best`). A mean
        is None when no repetition defines the metric, and a standard deviation when fewer
        than two do.
    """
    import pandas as pd

    rows = []
    for keys, group in per_repetition.groupby(_GROUP, sort=False, dropna=False):
        row = dict(zip(_GROUP, keys, strict=True))
        row["kind"] = group["kind"].iloc[0]
        row["repetitions"] = len(group)
        row["n_train"] = float(group["n_train"].mean())
        row["n_test"] = float(group["n_test"].mean())
        for metric in METRICS:
            defined = _defined(group[metric])
            row[f"{metric}_mean"] = float(np.mean(defined)) if defined else None
            row[f"{metric}_std"] = float(np.std(defined, ddof=1)) if len(defined) > 1 else None
        row["tau_undefined"] = int(sum(v is None or _is_nan(v) for v in group["kendall_tau"]))
        row["note"] = _summary_note(group)
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary = add_tests_against_best(summary, per_repetition)
    columns = [c for c in summary.columns if c.endswith(("_mean", "_std"))]
    return with_none(summary, [*columns, "note", "best", "p_vs_best"])


def add_tests_against_best(summary, per_repetition, metric: str = "kendall_tau"):
    """Add ``best`` and ``p_vs_best`` columns: each trained predictor against the best one.

    For each target and training size, the best predictor is the trained one (kind
    ``predictor``) with the highest mean of the metric. ``p_vs_best`` is the two-sided
    Mann-Whitney U p-value of a predictor's scores over repetitions against the best one's:
    None for the best itself, for rankings (one score, no repetitions), and when either side
    has fewer than two defined scores.
    """
    summary = summary.copy()
    summary["best"] = None
    summary["p_vs_best"] = None
    trained = summary[summary["kind"] == "predictor"]
    for (target, size), group in trained.groupby(["target", "train_size"], sort=False):
        means = group[f"{metric}_mean"].astype(float)
        if means.isna().all():
            continue
        best = group.loc[means.idxmax(), "predictor"]
        same = ((summary["target"] == target) & (summary["train_size"] == size)).fillna(False)
        summary.loc[same, "best"] = best
        for index in group.index:
            name = summary.loc[index, "predictor"]
            if name != best:
                p = compare_predictors(per_repetition, target, name, best, metric, size)
                summary.loc[index, "p_vs_best"] = p
    return summary


def compare_predictors(
    per_repetition, target: str, first: str, second: str, metric="kendall_tau", train_size=None
):
    """Test whether two predictors' scores over repetitions differ (two-sided Mann-Whitney U).

    Args:
        per_repetition: The per-repetition scores of an evaluation.
        target: The target whose scores are compared.
        first: One predictor's name.
        second: The other's.
        metric: The score compared.
        train_size: The training size compared, or None for every size's scores together.

    Returns:
        The p-value, or None when either predictor has fewer than two defined scores.
    """
    from scipy.stats import mannwhitneyu

    def scores(name):
        selected = per_repetition[
            (per_repetition["predictor"] == name) & (per_repetition["target"] == target)
        ]
        if train_size is not None:
            selected = selected[selected["train_size"] == train_size]
        return _defined(selected[metric])

    a, b = scores(first), scores(second)
    if len(a) < 2 or len(b) < 2:
        return None
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def paper_table(summary, target: str, train_size, metrics=("kendall_tau", "mae")):
    """Lay out the scores of one target and training size as the CNNGen paper's tables.

    Args:
        summary: The summary of :func:`summarise`.
        target: The target, such as ``test_accuracy`` (Table 1) or ``energy_kwh`` (Table 2).
        train_size: The training size of the rows to show.
        metrics: The metrics to show as columns.

    Returns:
        A DataFrame indexed by predictor (trained predictors first, then rankings) with one
        column per metric holding "mean ± std" text, "undefined" when no repetition defines
        it, and "—" when it does not apply (a ranking has no MAE); plus ``p_vs_best``.
    """
    import pandas as pd

    rows = summary[(summary["target"] == target) & (summary["train_size"] == train_size)]
    rows = rows.sort_values("kind", key=lambda kind: kind != "predictor", kind="stable")
    table = {}
    for _, row in rows.iterrows():
        cells = {metric: _cell(row, metric) for metric in metrics}
        p = row.get("p_vs_best")
        cells["p_vs_best"] = "best" if row["predictor"] == row.get("best") else _number(p)
        table[row["predictor"]] = cells
    frame = pd.DataFrame.from_dict(table, orient="index")
    frame.index.name = "predictor"
    return frame


def with_none(frame, columns):
    """Return frame with missing values of the columns as None in object columns, never NaN."""
    for column in columns:
        values = frame[column].astype(object)
        frame[column] = values.where(values.notna(), None)
    return frame


def _cell(row, metric: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if mean is None or _is_nan(mean):
        if metric == "mae" and row["kind"] != "predictor":
            return "—"
        return "undefined"
    return f"{_number(mean)} ± {_number(std)}" if std is not None else _number(mean)


def _number(value) -> str:
    if value is None or _is_nan(value):
        return "—"
    return f"{value:.2g}" if abs(value) >= 0.01 or value == 0 else f"{value:.1e}"


def _summary_note(group) -> str | None:
    notes = [note for note in group["note"] if isinstance(note, str)]
    if not notes:
        return None
    distinct = sorted(set(notes))
    if len(group) == 1 or group["repetition"].isna().all():
        return "; ".join(distinct)
    return f"tau {'; '.join(distinct)} in {len(notes)} of {len(group)} repetitions"


def _defined(values) -> list[float]:
    return [float(v) for v in values if v is not None and not _is_nan(v)]


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
