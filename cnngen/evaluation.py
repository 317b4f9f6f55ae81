"""Held-out evaluation of the predictors on a run's own architectures.

This module owns the evaluation protocol:

* Rows: trainings with status ``ok`` by default; failed and diverged rows are counted and
  reported in :attr:`Evaluation.status_counts`, not silently dropped. A target that is missing
  for a row (energy of a failed measurement) excludes that row for that target only.
* Test split: one fixed held-out split, drawn from ``seed``, with ``test_fraction`` of the
  distinct phrases in the test set. Rows with the same phrase are the same network trained
  again, so they always land on the same side. Every predictor, training size and repetition
  is scored on this test set.
* Training sizes: each size of ``train_sizes`` (by default 10, 25, 50, 100, 200, 400 and
  ``"all"``) is a number of distinct architectures drawn from the training pool, with all
  their rows. A size larger than the pool is skipped and reported in
  :attr:`Evaluation.skipped_sizes`.
* Repetitions: each repetition of a size draws its own subsample and predictor seed from
  ``(seed, size, repetition)``; every predictor of a repetition gets the same subsample.
* Metrics (:mod:`cnngen.scores`): Kendall's tau-b, Spearman's rho, the MAE, and for energy
  targets the share of test architectures within +-10%. The summary gives the mean and
  sample standard deviation over repetitions, and a two-sided Mann-Whitney U test of each
  predictor against the best one.
  An undefined tau is reported as None with a note, never NaN or 0.
* Targets: ``test_accuracy``, ``energy_kwh`` and ``energy_per_epoch_kwh`` (energy divided by
  the epochs run), so that the epochs feature alone cannot make an energy ranking look good.
* Rankings with no training: the parameter count, the FLOPs and, when proxies are given,
  the zero-cost proxies of :mod:`cnngen.proxies`. They are scored once on the test set (no
  MAE) and repeated on every training size's rows so that tables and plots show them.

Reading stores and Parquet exports, and building the predictors' input table, is left to
:mod:`cnngen.evaluation_inputs`, predictors to :mod:`cnngen.predictors`, and scores to
:mod:`cnngen.scores`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from cnngen.errors import CNNGenError
from cnngen.evaluation_inputs import (
    BASELINES,
    ENERGY_TARGETS,
    MIN_ARCHITECTURES,
    MIN_TEST_ARCHITECTURES,
    MIN_TRAIN_ARCHITECTURES,
    TARGETS,
    check_fraction,
    check_names,
    check_protocol,
    predictor_inputs,
    read_results,
    results_proxies,
)
from cnngen.scores import METRICS, compare_predictors, score_predictions, summarise, with_none

logger = logging.getLogger(__name__)

__all__ = [
    "BASELINES", "DEFAULT_PREDICTORS", "ENERGY_TARGETS", "Evaluation", "MIN_ARCHITECTURES",
    "TARGETS", "TRAIN_SIZES", "compare_predictors", "evaluable_architectures",
    "evaluate_database", "evaluate_frame", "read_results", "run_evaluation",
    "split_architectures", "target_values",
]  # fmt: skip

TRAIN_SIZES = (10, 25, 50, 100, 200, 400, "all")
DEFAULT_PREDICTORS = ("DT", "Py_code", "RF", "GB")


@dataclass
class Evaluation:
    """Results of :func:`run_evaluation` and :func:`evaluate_frame`.

    Attributes:
        summary: One row per predictor (or ranking), target and training size, with means
            and standard deviations over repetitions; see :func:`cnngen.scores.summarise`.
        per_repetition: One row per repetition, predictor, target and training size.
        predictions: Measured and predicted values of every test architecture of every
            repetition, for the trained predictors.
        status_counts: Number of stored trainings per status (ok, failed, diverged).
        statuses: The statuses that were evaluated.
        skipped_sizes: Per target, the requested training sizes larger than its training
            pool, with the pool's size: ``{target: {size: pool}}``.
        test_arch_ids: The ``arch_id`` of every row of the fixed test set.
    """

    summary: object
    per_repetition: object
    predictions: object
    status_counts: dict[str, int] = field(default_factory=dict)
    statuses: tuple[str, ...] = ("ok",)
    skipped_sizes: dict = field(default_factory=dict)
    test_arch_ids: tuple[str, ...] = ()


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
    check_fraction(test_fraction)
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

    ``energy_per_epoch_kwh`` is ``energy_kwh / epochs_run``, unknown for rows with no epoch run.

    Raises:
        CNNGenError: If the target is not one of :data:`TARGETS`.
    """
    import pandas as pd

    check_names("target", [target], TARGETS)
    if target == "energy_per_epoch_kwh":
        epochs_run = pd.to_numeric(frame["epochs_run"], errors="coerce").astype(float)
        energy = pd.to_numeric(frame["energy_kwh"], errors="coerce").astype(float)
        return energy / epochs_run.where(epochs_run > 0)
    return pd.to_numeric(frame[target], errors="coerce").astype(float)


def evaluable_architectures(frame, statuses=("ok",)) -> int:
    """Return the number of distinct phrases among the trainings with one of the statuses.

    The evaluation needs at least :data:`MIN_ARCHITECTURES` of them.
    """
    return int(frame.loc[frame["status"].isin(list(statuses)), "phrase"].nunique())


def evaluate_database(path: str | os.PathLike, **options):
    """Evaluate predictors on the trainings of a results store or of its Parquet export.

    Args:
        path: A run's ``results.sqlite``, the run directory, a ``results.parquet`` written by
            ``scripts/export_reference.py``, or the folder that contains it.
        **options: The keyword arguments of :func:`run_evaluation`.

    Returns:
        The summary table of :func:`cnngen.scores.summarise`. ``summary.attrs`` contains
        ``status_counts`` (stored trainings per status) and ``skipped_sizes``.

    Raises:
        CNNGenError: If an argument is invalid, the results cannot be read, or fewer than
            :data:`MIN_ARCHITECTURES` distinct architectures have an evaluated status.
    """
    evaluation = run_evaluation(path, **options)
    summary = evaluation.summary
    summary.attrs["status_counts"] = evaluation.status_counts
    summary.attrs["skipped_sizes"] = evaluation.skipped_sizes
    return summary


def fit_on_results(
    path: str | os.PathLike,
    name: str,
    target: str,
    *,
    statuses=("ok",),
    random_state: int | None = 0,
    progress: bool = False,
    **options,
):
    """Fit one feature predictor on every evaluated training of stored results.

    This is the predictor to save and use for scoring new architectures: unlike the
    evaluation, it holds out nothing. The features are computed as the evaluation computes
    them, the code features from the stored files when the run directory has them.

    Args:
        path: As in :func:`evaluate_database`.
        name: ``DT``, ``Py_code``, ``RF`` or ``GB``. The PyTorch predictors are fitted from
            Python, with their own inputs.
        target: One of :data:`TARGETS`.
        statuses: Training statuses to fit on.
        random_state: Seed of the predictor.
        progress: Show progress bars while computing features.
        **options: Other hyper-parameters of the predictor.

    Returns:
        The fitted predictor and the number of trainings it was fitted on.

    Raises:
        CNNGenError: If a name, target, status or option is invalid, the results cannot be
            read, or fewer than 2 trainings have the statuses and a known target.
    """
    from cnngen.predictors import TORCH_PREDICTORS, make_predictor
    from cnngen.store import STATUSES

    if target not in TARGETS:
        raise CNNGenError(f"invalid target {target!r}: expected one of {', '.join(TARGETS)}")
    check_names("status", list(statuses), STATUSES)
    if name in TORCH_PREDICTORS:
        raise CNNGenError(
            f"predictor {name!r} needs PyTorch and its own inputs; fit DT, Py_code, RF or GB "
            "here, and Neural or Img from Python (see docs/predictors.md)"
        )
    predictor = make_predictor(name, random_state=random_state, **options)
    frame = read_results(path)
    rows = frame[frame["status"].isin(list(statuses))]
    values = target_values(rows, target).to_numpy()
    known = np.isfinite(values)
    if int(known.sum()) < 2:
        raise CNNGenError(
            f"only {int(known.sum())} trainings with status {', '.join(statuses)} have a "
            f"known {target} in {os.fspath(path)!r}; a predictor needs at least 2"
        )
    rows = rows[known].reset_index(drop=True)
    inputs = predictor_inputs(rows, run_dir=frame.attrs.get("run_dir"), progress=progress)
    return predictor.fit(inputs, values[known]), len(rows)


def run_evaluation(
    path: str | os.PathLike,
    *,
    proxies: bool = False,
    proxy_cache: str | os.PathLike | None = None,
    **options,
) -> Evaluation:
    """Evaluate predictors on stored results, keeping per-repetition scores and predictions.

    Args:
        path: As in :func:`evaluate_database`.
        proxies: Compute (or read from the cache) the zero-cost proxies, score them as
            rankings and give them to the RF and GB predictors as features. This needs
            TensorFlow and the run's data set.
        proxy_cache: The proxies' Parquet cache; None uses ``proxies.parquet`` beside the
            results.
        **options: The keyword arguments of :func:`evaluate_frame` except ``features``,
            ``proxies`` and ``run_dir``.
    """
    frame = read_results(path)
    table = None
    if proxies:
        statuses = options.get("statuses", ("ok",))
        table = results_proxies(frame, frame[frame["status"].isin(list(statuses))], proxy_cache)
    return evaluate_frame(frame, proxies=table, run_dir=frame.attrs.get("run_dir"), **options)


def evaluate_frame(
    frame,
    *,
    predictors=DEFAULT_PREDICTORS,
    targets=TARGETS,
    train_sizes=TRAIN_SIZES,
    test_fraction: float = 0.2,
    repetitions: int = 10,
    seed: int = 0,
    statuses=("ok",),
    features=None,
    proxies=None,
    run_dir=None,
    predictor_options: dict | None = None,
    predictor_train_sizes: dict | None = None,
    progress: bool = False,
) -> Evaluation:
    """Evaluate predictors on a results table such as ``ResultsStore.trainings_frame()``.

    Args:
        frame: One row per training.
        predictors: Short names of :data:`cnngen.predictors.PREDICTORS`.
        targets: Names of :data:`TARGETS`.
        train_sizes: Numbers of distinct training architectures, and ``"all"``.
        test_fraction: Share of the distinct architectures held out, in (0, 1).
        repetitions: Number of subsamples (and predictor seeds) per training size.
        seed: Seed of the test split and of the repetitions.
        statuses: Training statuses to evaluate; failed and diverged rows are left out by
            default.
        features: A precomputed table of the cheap features (structural and code) indexed
            by ``arch_id``, or None to compute it.
        proxies: A table of :data:`cnngen.proxies.PROXY_COLUMNS` indexed by ``arch_id``, or
            None to evaluate without proxies.
        run_dir: The run directory that relative code and picture paths are read from.
        predictor_options: Keyword arguments per predictor name, such as
            ``{"Neural": {"epochs": 50}}``.
        predictor_train_sizes: Training sizes per predictor name, each a subset of
            ``train_sizes``, for predictors too slow to fit at every size (such as
            ``{"Img": [10, 25]}``). The other predictors use ``train_sizes``.
        progress: Show a tqdm progress bar over targets, sizes and repetitions.

    Raises:
        CNNGenError: If an argument is invalid, or fewer than :data:`MIN_ARCHITECTURES`
            distinct architectures have an evaluated status.
    """
    from cnngen.store import STATUSES

    protocol = check_protocol(
        predictors, targets, train_sizes, test_fraction, repetitions, seed, statuses,
        proxies, predictor_options, predictor_train_sizes,
    )  # fmt: skip
    statuses = tuple(statuses)
    counts = {status: int((frame["status"] == status).sum()) for status in STATUSES}
    rows = frame[frame["status"].isin(statuses)].reset_index(drop=True)
    _check_enough(rows, counts, statuses)
    inputs = predictor_inputs(rows, features, proxies, run_dir, progress=progress)

    # One test split for every target, predictor, size and repetition.
    train, test = split_architectures(rows["phrase"], test_fraction, seed)
    records, predictions, skipped = [], [], {}
    for target in targets:
        values = target_values(rows, target).to_numpy()
        known = np.isfinite(values)
        target_train, target_test = train[known[train]], test[known[test]]
        skipped[target] = _evaluate_target(
            protocol, inputs, values, (target_train, target_test), target, records, predictions,
            progress,
        )  # fmt: skip
    evaluation = _build_evaluation(records, predictions, counts, statuses)
    evaluation.skipped_sizes = {target: sizes for target, sizes in skipped.items() if sizes}
    evaluation.test_arch_ids = tuple(rows["arch_id"].iloc[test])
    return evaluation


def _evaluate_target(protocol, inputs, values, split, target, records, predictions, progress):
    """Append the score records and predictions of one target; return its skipped sizes."""
    from tqdm.auto import tqdm

    train, test = split
    pool = np.array(sorted(set(inputs["phrase"].iloc[train])), dtype=object)
    num_test = len(set(inputs["phrase"].iloc[test]))
    sizes, skipped = _sizes_in_pool(protocol.train_sizes, len(pool))
    for size, pool_size in skipped.items():
        logger.warning("skipped %s training size %s: the pool has %d", target, size, pool_size)
    if len(pool) < MIN_TRAIN_ARCHITECTURES or num_test < MIN_TEST_ARCHITECTURES:
        note = f"only {len(pool)} training and {num_test} test architectures have {target}"
        logger.warning("target %s not evaluated: %s", target, note)
        for name, kind in _all_names(protocol):
            records.append(_empty_record(name, kind, target, note))
        return skipped

    measured = values[test]
    relative = target in ENERGY_TARGETS
    for name in protocol.rankings:
        column = name if name in inputs.columns else f"ranking_{name}"
        scores = _ranking_scores(inputs[column].to_numpy(dtype=float)[test], measured)
        for size in sizes:
            record = _record(name, "ranking", target, size, None, 0, len(test))
            records.append({**record, **scores})
    steps = [(size, r) for size in sizes for r in range(protocol.repetitions)]
    for size, repetition in tqdm(steps, desc=target, unit="fit", disable=not progress):
        chosen, model_seed = _subsample(pool, size, protocol.seed, repetition)
        rows = train[np.isin(inputs["phrase"].iloc[train].to_numpy(), chosen)]
        for name in protocol.predictors:
            if size not in _sizes_in_pool(protocol.sizes_of(name), len(pool))[0]:
                continue
            predicted = _fit_predict(
                name, model_seed, protocol.predictor_options.get(name, {}),
                inputs.iloc[rows], values[rows], inputs.iloc[test],
            )  # fmt: skip
            common = _record(name, "predictor", target, size, repetition, len(rows), len(test))
            records.append({**common, **score_predictions(measured, predicted, relative=relative)})
            predictions.extend(
                {**common, "arch_id": arch_id, "measured": m, "predicted": p}
                for arch_id, m, p in zip(
                    inputs["arch_id"].iloc[test], measured, predicted, strict=True
                )
            )
    return skipped


def _sizes_in_pool(train_sizes, pool_size: int):
    sizes, skipped = [], {}
    for size in train_sizes:
        number = pool_size if size == "all" else size
        if number > pool_size:
            skipped[size] = pool_size
        elif number not in sizes:
            sizes.append(number)
    return sizes, skipped


def _subsample(pool: np.ndarray, size: int, seed: int, repetition: int):
    rng = np.random.default_rng([seed, size, repetition])
    chosen = rng.choice(pool, size=size, replace=False)
    return chosen, int(rng.integers(0, 2**31))


def _ranking_scores(scores: np.ndarray, measured: np.ndarray) -> dict:
    defined = np.isfinite(scores.astype(float))
    result = score_predictions(measured[defined], scores[defined], relative=False)
    result["mae"] = None
    if not defined.all():
        missing = f"undefined for {int((~defined).sum())} of {len(scores)} test architectures"
        result["note"] = "; ".join(filter(None, [result["note"], missing]))
    return result


def _fit_predict(name, random_state, options, train_inputs, train_targets, test_inputs):
    from cnngen.predictors import make_predictor

    model = make_predictor(name, random_state=random_state, **options)
    return np.asarray(model.fit(train_inputs, train_targets).predict(test_inputs), dtype=float)


def _record(name, kind, target, size, repetition, n_train, n_test) -> dict:
    return {
        "predictor": name, "kind": kind, "target": target, "train_size": size,
        "repetition": repetition, "n_train": n_train, "n_test": n_test,
    }  # fmt: skip


def _empty_record(name, kind, target, note) -> dict:
    return {**_record(name, kind, target, None, None, 0, 0), **dict.fromkeys(METRICS), "note": note}


def _all_names(protocol):
    kinds = [(name, "predictor") for name in protocol.predictors]
    return kinds + [(name, "ranking") for name in protocol.rankings]


def _build_evaluation(records, predictions, counts, statuses) -> Evaluation:
    import pandas as pd

    per_repetition = with_none(pd.DataFrame(records), [*METRICS, "note"])
    per_repetition["train_size"] = per_repetition["train_size"].astype("Int64")
    columns = [
        "target", "train_size", "repetition", "predictor", "arch_id", "measured", "predicted",
    ]  # fmt: skip
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
