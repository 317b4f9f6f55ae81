"""Held-out evaluation of the predictors on a run's own architectures.

This module owns the evaluation protocol:

* Rows: trainings with status ``ok`` by default; failed and diverged rows are counted and
  reported in :attr:`Evaluation.status_counts`, not silently dropped. A target that is missing
  for a row (energy of a failed measurement) excludes that row for that target only.
* Split: a seeded held-out split of the architectures, ``test_fraction`` of the distinct
  phrases in the test set. Rows with the same phrase are the same network trained again, so
  they always land on the same side.
* Repetitions: each repetition draws its own split and predictor seed from ``(seed, r)``, and
  every predictor and baseline of a repetition uses the same split. The summary gives the mean
  and sample standard deviation over repetitions.
* Metrics: Kendall's tau-b (which handles ties), Spearman's rho, the mean absolute error, and
  for energy targets the share of test architectures predicted within +-10% of the measured
  value. A rank correlation is undefined when the predictions or the measurements are
  constant, or fewer than two test architectures exist: it is reported as None with a note.
* Targets: ``test_accuracy``, ``energy_kwh`` and ``energy_kwh_per_epoch`` (energy divided by
  the epochs run), so that the epochs feature alone cannot make an energy ranking look good.
* Baselines: the parameter count and the FLOPs as rankings with no training (rank
  correlations only, no MAE).

Features come from :mod:`cnngen.features`, predictors from :mod:`cnngen.predictors`, and the
rows from :class:`cnngen.store.ResultsStore`.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnngen.errors import CNNGenError

logger = logging.getLogger(__name__)

TARGETS = ("test_accuracy", "energy_kwh", "energy_kwh_per_epoch")
ENERGY_TARGETS = ("energy_kwh", "energy_kwh_per_epoch")
BASELINES = ("params", "flops")
RELATIVE_TOLERANCE = 0.10
# Minimum number of architectures on each side of a split: two give a rank correlation, and
# three give a tree more than one split.
MIN_TEST_ARCHITECTURES = 2
MIN_TRAIN_ARCHITECTURES = 3
MIN_ARCHITECTURES = MIN_TEST_ARCHITECTURES + MIN_TRAIN_ARCHITECTURES

_METRICS = ("kendall_tau", "spearman", "mae", "within_10pct")
_IDENTITY_COLUMNS = ["arch_id", "phrase", "seed", "dataset"]


@dataclass
class Evaluation:
    """Results of :func:`run_evaluation`.

    Attributes:
        summary: One row per predictor (and baseline) and target, with means and standard
            deviations over repetitions; see :func:`summarise`.
        per_repetition: One row per repetition, predictor and target.
        predictions: Measured and predicted values of every test architecture of every
            repetition, for the trained predictors.
        status_counts: Number of stored trainings per status (ok, failed, diverged).
        statuses: The statuses that were evaluated.
    """

    summary: object
    per_repetition: object
    predictions: object
    status_counts: dict[str, int] = field(default_factory=dict)
    statuses: tuple[str, ...] = ("ok",)


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
        predicted: Predicted values (or a baseline's ranking values), in the same order.
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


def split_architectures(phrases, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into training and test positions, keeping rows of one phrase together.

    ``round(test_fraction * distinct phrases)`` phrases go to the test set, but at least
    :data:`MIN_TEST_ARCHITECTURES` and at most all but :data:`MIN_TRAIN_ARCHITECTURES`.

    Args:
        phrases: One phrase per row; equal phrases are duplicates of one network.
        test_fraction: Share of the distinct phrases in the test set, in (0, 1).
        seed: Seed of the split; the same seed and phrases give the same split.

    Returns:
        Sorted row positions of the training set and of the test set.

    Raises:
        CNNGenError: If test_fraction is outside (0, 1) or there are too few distinct phrases.
    """
    _check_fraction(test_fraction)
    phrases = np.asarray(list(phrases), dtype=object)
    distinct = np.array(sorted(set(phrases)), dtype=object)
    if len(distinct) < MIN_ARCHITECTURES:
        raise CNNGenError(
            f"a held-out split needs at least {MIN_ARCHITECTURES} distinct architectures, got "
            f"{len(distinct)}; train more architectures"
        )
    num_test = round(test_fraction * len(distinct))
    num_test = min(max(num_test, MIN_TEST_ARCHITECTURES), len(distinct) - MIN_TRAIN_ARCHITECTURES)
    test_phrases = set(np.random.default_rng(seed).permutation(distinct)[:num_test])
    in_test = np.array([phrase in test_phrases for phrase in phrases], dtype=bool)
    return np.flatnonzero(~in_test), np.flatnonzero(in_test)


def target_values(frame, target: str):
    """Return one target per row of a results table, NaN where it is not known.

    ``energy_kwh_per_epoch`` is ``energy_kwh / epochs_run``, unknown for rows with no epoch run.

    Raises:
        CNNGenError: If the target is not one of :data:`TARGETS`.
    """
    import pandas as pd

    _check_names("target", [target], TARGETS)
    if target == "energy_kwh_per_epoch":
        epochs_run = pd.to_numeric(frame["epochs_run"], errors="coerce").astype(float)
        energy = pd.to_numeric(frame["energy_kwh"], errors="coerce").astype(float)
        return energy / epochs_run.where(epochs_run > 0)
    return pd.to_numeric(frame[target], errors="coerce").astype(float)


def evaluable_architectures(frame, statuses=("ok",)) -> int:
    """Return the number of distinct phrases among the trainings with one of the statuses.

    The evaluation needs at least :data:`MIN_ARCHITECTURES` of them.
    """
    return int(frame.loc[frame["status"].isin(list(statuses)), "phrase"].nunique())


def read_results(db_path: str | os.PathLike):
    """Return ``ResultsStore.trainings_frame()`` of a store opened read-only.

    Args:
        db_path: A ``results.sqlite`` file, or a run directory that contains one.

    Raises:
        CNNGenError: If the store is missing or unreadable.
    """
    from cnngen.store import ResultsStore

    if Path(db_path).is_dir():
        db_path = Path(db_path) / "results.sqlite"
    with ResultsStore(db_path, read_only=True) as store:
        return store.trainings_frame()


def evaluate_database(
    db_path: str | os.PathLike,
    *,
    predictors=("DT",),
    targets=TARGETS,
    test_fraction: float = 0.2,
    repetitions: int = 10,
    seed: int = 0,
    statuses=("ok",),
):
    """Evaluate predictors on the trainings of a results store.

    Args:
        db_path: The run's ``results.sqlite``, or the run directory.
        predictors: Short names of :data:`cnngen.predictors.PREDICTORS`.
        targets: Names of :data:`TARGETS`.
        test_fraction: Share of the distinct architectures held out, in (0, 1).
        repetitions: Number of seeded splits.
        seed: Seed of the repetitions.
        statuses: Training statuses to evaluate; failed and diverged rows are left out by
            default.

    Returns:
        The summary table of :func:`summarise`. ``summary.attrs["status_counts"]`` is the
        number of stored trainings per status.

    Raises:
        CNNGenError: If an argument is invalid, the store cannot be read, or fewer than
            :data:`MIN_ARCHITECTURES` distinct architectures have an evaluated status.
    """
    evaluation = run_evaluation(
        db_path, predictors=predictors, targets=targets, test_fraction=test_fraction,
        repetitions=repetitions, seed=seed, statuses=statuses,
    )  # fmt: skip
    summary = evaluation.summary
    summary.attrs["status_counts"] = evaluation.status_counts
    return summary


def run_evaluation(db_path: str | os.PathLike, **options) -> Evaluation:
    """Evaluate predictors on a results store, keeping per-repetition scores and predictions.

    Takes the keyword arguments of :func:`evaluate_database`.
    """
    return evaluate_frame(read_results(db_path), **options)


def evaluate_frame(
    frame,
    *,
    predictors=("DT",),
    targets=TARGETS,
    test_fraction: float = 0.2,
    repetitions: int = 10,
    seed: int = 0,
    statuses=("ok",),
    features=None,
) -> Evaluation:
    """Evaluate predictors on a results table such as ``ResultsStore.trainings_frame()``.

    Takes the arguments of :func:`evaluate_database`, and ``features``: a precomputed
    :func:`cnngen.features.stored_features` table indexed by ``arch_id``, or None to compute it.
    """
    import pandas as pd

    from cnngen.features import stored_features
    from cnngen.predictors import PREDICTORS
    from cnngen.store import STATUSES

    predictors, targets, statuses = list(predictors), list(targets), tuple(statuses)
    _check_names("predictor", predictors, PREDICTORS)
    _check_names("target", targets, TARGETS)
    _check_names("status", list(statuses), STATUSES)
    _check_fraction(test_fraction)
    if isinstance(repetitions, bool) or not isinstance(repetitions, int) or repetitions < 1:
        raise CNNGenError(f"invalid repetitions {repetitions!r}: expected an integer >= 1")

    # Keep the evaluated statuses and check that enough distinct architectures remain.
    counts = {status: int((frame["status"] == status).sum()) for status in STATUSES}
    rows = frame[frame["status"].isin(statuses)].reset_index(drop=True)
    _check_enough(rows, counts, statuses)
    if features is None:
        features = stored_features(rows, progress=len(rows) > 200)
    missing = sorted(set(rows["arch_id"]) - set(features.index))
    if missing:
        raise CNNGenError(
            f"the features table lacks {len(missing)} evaluated architectures, such as "
            f"{missing[0]!r}; compute it with cnngen.features.stored_features on the same rows"
        )
    # Predictors receive the features and the columns that identify each network, so that a
    # predictor reading phrases instead of features gets what it needs from the same table.
    features = pd.concat(
        [rows[_IDENTITY_COLUMNS], features.loc[rows["arch_id"]].reset_index(drop=True)], axis=1
    )

    protocol = _Protocol(predictors, test_fraction, repetitions, seed)
    records, predictions = [], []
    for target in targets:
        values = target_values(rows, target)
        usable = np.flatnonzero(np.isfinite(values.to_numpy()))
        subset = (rows.iloc[usable], features.iloc[usable], values.iloc[usable])
        _evaluate_target(protocol, *subset, target, records, predictions)
    return _build_evaluation(records, predictions, counts, statuses)


def summarise(per_repetition):
    """Aggregate per-repetition scores into one row per predictor and target.

    Returns:
        A DataFrame with ``predictor``, ``target``, ``kind`` (``predictor`` or ``baseline``),
        ``repetitions``, mean ``n_train`` and ``n_test``, ``<metric>_mean`` and ``<metric>_std``
        for each metric, ``tau_undefined`` (repetitions whose tau is undefined) and ``note``.
        A mean is None when no repetition defines the metric, and a standard deviation when
        fewer than two do.
    """
    import pandas as pd

    rows = []
    for (predictor, target), group in per_repetition.groupby(["predictor", "target"], sort=False):
        row = {"predictor": predictor, "target": target, "kind": group["kind"].iloc[0]}
        row["repetitions"] = len(group)
        row["n_train"] = float(group["n_train"].mean())
        row["n_test"] = float(group["n_test"].mean())
        for metric in _METRICS:
            defined = [v for v in group[metric] if v is not None and not _is_nan(v)]
            row[f"{metric}_mean"] = float(np.mean(defined)) if defined else None
            row[f"{metric}_std"] = float(np.std(defined, ddof=1)) if len(defined) > 1 else None
        row["tau_undefined"] = int(sum(v is None for v in group["kendall_tau"]))
        row["note"] = _summary_note(group)
        rows.append(row)
    summary = pd.DataFrame(rows)
    columns = [c for c in summary.columns if c.endswith(("_mean", "_std"))]
    return _with_none(summary, [*columns, "note"])


def compare_predictors(per_repetition, target: str, first: str, second: str, metric="kendall_tau"):
    """Test whether two predictors' scores over repetitions differ (two-sided Mann-Whitney U).

    Returns:
        The p-value, or None when either predictor has fewer than two defined scores.
    """
    from scipy.stats import mannwhitneyu

    def scores(name):
        selected = per_repetition[
            (per_repetition["predictor"] == name) & (per_repetition["target"] == target)
        ]
        return [v for v in selected[metric] if v is not None and not _is_nan(v)]

    a, b = scores(first), scores(second)
    if len(a) < 2 or len(b) < 2:
        return None
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class _Protocol:
    predictors: list[str]
    test_fraction: float
    repetitions: int
    seed: int


def _evaluate_target(protocol: _Protocol, rows, features, values, target: str, out, preds):
    """Append the score records (to out) and predictions (to preds) of one target."""
    phrases = rows["phrase"].to_numpy()
    if len(set(phrases)) < MIN_ARCHITECTURES:
        logger.warning("target %s is known for %d architectures only", target, len(set(phrases)))
        note = f"only {len(set(phrases))} architectures have {target}; needs {MIN_ARCHITECTURES}"
        for name in [*protocol.predictors, *BASELINES]:
            kind = "baseline" if name in BASELINES else "predictor"
            record = {"predictor": name, "kind": kind, "target": target, "repetition": None}
            out.append(
                {**record, "n_train": 0, "n_test": 0, "note": note, **dict.fromkeys(_METRICS)}
            )
        return
    for repetition in range(protocol.repetitions):
        rng = np.random.default_rng([protocol.seed, repetition])
        split_seed, model_seed = (int(v) for v in rng.integers(0, 2**31, size=2))
        train, test = split_architectures(phrases, protocol.test_fraction, split_seed)
        common = {"target": target, "repetition": repetition}
        common.update(n_train=len(train), n_test=len(test))
        split = (features.iloc[train], values.to_numpy()[train], features.iloc[test])
        measured = values.to_numpy()[test]
        for name in protocol.predictors:
            predicted = _fit_predict(name, model_seed, *split)
            scores = score_predictions(measured, predicted, relative=target in ENERGY_TARGETS)
            out.append({"predictor": name, "kind": "predictor", **common, **scores})
            arch_ids = rows["arch_id"].to_numpy()[test]
            preds.extend(
                {**common, "predictor": name, "arch_id": arch_id, "measured": m, "predicted": p}
                for arch_id, m, p in zip(arch_ids, measured, predicted, strict=True)
            )
        for name in BASELINES:
            scores = score_predictions(measured, features[name].to_numpy()[test], relative=False)
            out.append({"predictor": name, "kind": "baseline", **common, **scores, "mae": None})


def _fit_predict(name: str, random_state: int, train_inputs, train_targets, test_inputs):
    from cnngen.predictors import make_predictor

    model = make_predictor(name, random_state=random_state)
    return model.fit(train_inputs, train_targets).predict(test_inputs)


def _build_evaluation(records, predictions, counts, statuses) -> Evaluation:
    import pandas as pd

    per_repetition = _with_none(pd.DataFrame(records), [*_METRICS, "note"])
    columns = ["repetition", "predictor", "target", "arch_id", "measured", "predicted"]
    predictions = pd.DataFrame(predictions, columns=columns)
    for status, count in counts.items():
        if count and status not in statuses:
            logger.info("left out %d %s trainings of the evaluation", count, status)
    return Evaluation(summarise(per_repetition), per_repetition, predictions, counts, statuses)


def _check_enough(rows, counts: dict[str, int], statuses) -> None:
    distinct = evaluable_architectures(rows, statuses)
    if distinct < MIN_ARCHITECTURES:
        stored = ", ".join(f"{count} {status}" for status, count in counts.items())
        raise CNNGenError(
            f"the evaluation needs at least {MIN_ARCHITECTURES} distinct architectures with "
            f"status {' or '.join(statuses)}, but the results contain {distinct} (stored "
            f"trainings: {stored}); train more architectures, then evaluate again"
        )


def _summary_note(group) -> str | None:
    notes = [note for note in group["note"] if isinstance(note, str)]
    if not notes:
        return None
    distinct = sorted(set(notes))
    if group["repetition"].isna().all():
        return distinct[0]
    return f"tau {'; '.join(distinct)} in {len(notes)} of {len(group)} repetitions"


def _with_none(frame, columns):
    """Return frame with missing values of the columns as None in object columns, never NaN."""
    for column in columns:
        values = frame[column].astype(object)
        frame[column] = values.where(values.notna(), None)
    return frame


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _check_fraction(test_fraction) -> None:
    number = not isinstance(test_fraction, bool) and isinstance(test_fraction, int | float)
    if not number or not 0 < test_fraction < 1:
        raise CNNGenError(f"invalid test_fraction {test_fraction!r}: expected a number in (0, 1)")


def _check_names(kind: str, names, known) -> None:
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise CNNGenError(
            f"invalid {kind} names {names!r}: expected one or more of {', '.join(known)}"
        )
