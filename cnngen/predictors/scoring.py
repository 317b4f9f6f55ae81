"""Scoring many candidate architectures with fitted predictors, without building models.

A search samples candidates once and scores them many times: for accuracy and for energy,
at several epoch counts, after each refit. :class:`CandidatePool` keeps the candidates,
solved for one data set, and computes each one's structural and code features once, when it
is added. The features are read from the architecture object
(:func:`cnngen.features.architecture_features` and
:func:`cnngen.code_features.architecture_code_features`): no source is emitted and nothing
imports TensorFlow. Scoring with DT, Py_code, RF or GB is then one prediction over the
pool's feature matrix. PyTorch predictors receive the resolved architectures.

:func:`score_phrases` builds a pool from phrases or architectures and scores it once. Fitting
is left to the predictors, and parsing to :mod:`cnngen.grammar`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np

from cnngen.errors import CNNGenError, checked_integer

logger = logging.getLogger(__name__)

_CHUNK_SIZE = 5_000


class CandidatePool:
    """Architectures solved for one data set, with their cheap features computed once.

    Args:
        dataset: The data set the candidates are solved for, such as ``"fashion_mnist"``.
        seed: Seed of the values that an added phrase or architecture leaves open.

    Raises:
        CNNGenError: If the data set is unknown or the seed is not a non-negative integer.

    Example:
        >>> pool = CandidatePool.sample(1000, "fashion_mnist", seed=7)
        >>> energy = pool.score(energy_predictor, epochs=2)
        >>> cheapest = [pool.phrases()[i] for i in np.argsort(energy)[:10]]
    """

    def __init__(self, dataset: str, *, seed: int = 0):
        from cnngen.datasets import get_dataset_info

        self.info = get_dataset_info(dataset)
        self.seed = checked_integer("seed", seed, 0)
        self._architectures: list = []
        self._blocks: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None

    @classmethod
    def sample(
        cls,
        count: int,
        dataset: str,
        *,
        seed: int = 0,
        sampling: str = "configured",
        progress: bool = False,
    ) -> CandidatePool:
        """Sample ``count`` architectures, as a run with this seed and sampling draws them.

        Args:
            count: Number of candidates, a non-negative integer.
            dataset: The data set they are solved for.
            seed: The run seed, from which each candidate's seed is derived.
            sampling: A sampling preset of :func:`cnngen.generation.sampling_config`.
            progress: Show a tqdm progress bar.

        Raises:
            CNNGenError: If the count, data set or preset is invalid.
        """
        from cnngen.generation import sampling_config
        from cnngen.sampling import architecture_seeds, sample_resolved

        count = checked_integer("count", count, 0)
        pool = cls(dataset, seed=seed)
        config = sampling_config(sampling)
        shape, classes = pool.info.input_shape, pool.info.num_classes
        resolved = (
            sample_resolved(arch_seed, shape, classes, config)
            for arch_seed in architecture_seeds(pool.seed, count)
        )
        pool.add(resolved, progress=progress, total=count)
        return pool

    def add(self, items: Iterable, *, progress: bool = False, total: int | None = None) -> None:
        """Solve items for the pool's data set and compute their features.

        Args:
            items: Phrases, :class:`cnngen.architecture.Architecture` or
                :class:`cnngen.solver.ResolvedArchitecture` objects, in any mix.
            progress: Show a tqdm progress bar.
            total: The number of items, for the progress bar when items is a generator.

        Raises:
            CNNGenError: If a phrase is invalid, an item is of another type, or a resolved
                architecture was solved for another data set. Items before the bad one stay
                in the pool.
        """
        from tqdm.auto import tqdm

        if isinstance(items, str):
            raise CNNGenError(
                f"items is one string ({items[:40]!r}); pass a list of phrases, such as "
                "pool.add([phrase])"
            )
        if not isinstance(items, Iterable):
            raise CNNGenError(
                f"items is a {type(items).__name__}; pass a list of phrases, Architecture or "
                "ResolvedArchitecture objects"
            )
        if total is None and hasattr(items, "__len__"):
            total = len(items)
        bar = tqdm(total=total, desc="candidates", unit="arch", disable=not progress)
        chunk: list = []
        try:
            for item in items:
                chunk.append(_resolve(item, self.info, self.seed))
                if len(chunk) == _CHUNK_SIZE:
                    self._append(chunk)
                    bar.update(len(chunk))
                    chunk = []
        finally:
            if chunk:
                self._append(chunk)
                bar.update(len(chunk))
            bar.close()

    def __len__(self) -> int:
        return len(self._architectures)

    @property
    def architectures(self) -> list:
        """The resolved architectures, in the order they were added."""
        return list(self._architectures)

    def phrases(self) -> list[str]:
        """Return the fully pinned phrase of each candidate."""
        return [resolved.to_phrase() for resolved in self._architectures]

    def feature_frame(self, epochs: int | Sequence[int]):
        """Return every cheap feature of the candidates as a DataFrame, one row each.

        Args:
            epochs: The epoch count of all candidates, or one per candidate.
        """
        import pandas as pd

        from cnngen.predictors.tabular import CHEAP_FEATURES

        matrix = self._feature_matrix(CHEAP_FEATURES, _epochs_column(epochs, len(self)))
        return pd.DataFrame(matrix, columns=CHEAP_FEATURES)

    def score(self, predictor, epochs: int | Sequence[int]) -> np.ndarray:
        """Predict the target of every candidate with a fitted predictor.

        Args:
            predictor: A fitted predictor of :data:`cnngen.predictors.PREDICTORS`.
            epochs: The epochs the candidates would be trained for (a feature of DT, RF and
                GB), for all of them or one per candidate.

        Returns:
            One prediction per candidate, in the order they were added. A warning is logged
            when the pool's data set or the epochs lie outside those the predictor was
            fitted on, because tree predictors do not extrapolate.

        Raises:
            CNNGenError: If the predictor is not fitted or uses proxies, or epochs is invalid.
        """
        from cnngen.predictors.tabular import FeatureRegressor

        check_scorable(predictor)
        epochs_column = _epochs_column(epochs, len(self))
        if not self._architectures:
            return np.zeros(0)
        if isinstance(predictor, FeatureRegressor):
            names = list(predictor.feature_names_in_)
            _warn_extrapolation(predictor, self.info.name, epochs_column, names)
            return predictor.predict(self._feature_matrix(names, epochs_column))
        return np.asarray(predictor.predict(self._architectures), dtype=float)

    def _append(self, resolved_list: list) -> None:
        from cnngen.code_features import architecture_code_features
        from cnngen.features import architecture_features

        # The epochs column is filled when scoring, so it is 1 here.
        rows = [
            [*architecture_features(resolved, 1).values(),
             *architecture_code_features(resolved).values()]
            for resolved in resolved_list
        ]  # fmt: skip
        self._blocks.append(np.array(rows, dtype=float))
        self._architectures.extend(resolved_list)
        self._matrix = None

    def _feature_matrix(self, names: Sequence[str], epochs_column: np.ndarray) -> np.ndarray:
        from cnngen.predictors.tabular import CHEAP_FEATURES

        # Callers pass cheap features only: score() has checked the predictor's columns.
        if self._matrix is None:
            width = len(CHEAP_FEATURES)
            self._matrix = np.concatenate(self._blocks) if self._blocks else np.zeros((0, width))
            self._blocks = [self._matrix]
        index = {name: position for position, name in enumerate(CHEAP_FEATURES)}
        matrix = self._matrix[:, [index[name] for name in names]]
        if "epochs" in names:
            matrix[:, list(names).index("epochs")] = epochs_column
        return matrix


def score_phrases(
    predictor,
    phrases_or_architectures: Iterable,
    dataset: str,
    epochs: int | Sequence[int],
    *,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Predict the target of many architectures with a fitted predictor.

    Builds a :class:`CandidatePool` and scores it once; a search that scores the same
    candidates again should keep the pool.

    Args:
        predictor: A fitted predictor of :data:`cnngen.predictors.PREDICTORS`.
        phrases_or_architectures: Phrases, :class:`cnngen.architecture.Architecture` or
            :class:`cnngen.solver.ResolvedArchitecture` objects, in any mix.
        dataset: The data set they are solved for, such as ``"fashion_mnist"``.
        epochs: The epochs they would be trained for (a feature of DT, RF and GB), for all
            of them or one per item.
        seed: Seed of the values that a phrase or architecture leaves open.
        progress: Show a tqdm progress bar while the features are computed.

    Returns:
        One prediction per item, in input order.

    Raises:
        CNNGenError: If the predictor is not fitted or uses proxies, a phrase is invalid, a
            resolved architecture was solved for another data set, or the data set is unknown.
    """
    # Fail before computing features for an unusable predictor.
    check_scorable(predictor)
    pool = CandidatePool(dataset, seed=seed)
    pool.add(phrases_or_architectures, progress=progress)
    return pool.score(predictor, epochs)


def pareto_front(accuracy, energy) -> np.ndarray:
    """Return which candidates no other candidate beats on both accuracy and energy.

    A candidate is on the front when every candidate with lower or equal energy has lower
    accuracy. Of several candidates with the same accuracy and energy, the first is kept.

    Args:
        accuracy: One predicted (or measured) accuracy per candidate; higher is better.
        energy: One predicted (or measured) energy per candidate; lower is better.

    Returns:
        A boolean array, True for the candidates on the front.

    Raises:
        CNNGenError: If the arrays differ in length, are not one-dimensional, or contain
            missing or infinite values.
    """
    try:
        accuracy = np.asarray(accuracy, dtype=float)
        energy = np.asarray(energy, dtype=float)
    except (TypeError, ValueError):
        raise CNNGenError(
            "accuracy and energy must be numbers, one of each per candidate"
        ) from None
    if accuracy.ndim != 1 or accuracy.shape != energy.shape:
        raise CNNGenError(
            f"accuracy has shape {accuracy.shape} and energy {energy.shape}; pass one value "
            "of each per candidate"
        )
    if not (np.all(np.isfinite(accuracy)) and np.all(np.isfinite(energy))):
        raise CNNGenError("accuracy or energy contains missing or infinite values; drop them first")
    # Cheapest first and, at equal energy, most accurate first. lexsort is stable, so of
    # identical candidates the first comes first and the others do not beat it.
    order = np.lexsort((-accuracy, energy))
    ranked = accuracy[order]
    best_before = np.maximum.accumulate(np.concatenate(([-np.inf], ranked)))[:-1]
    on_front = np.zeros(len(accuracy), dtype=bool)
    on_front[order] = ranked > best_before
    return on_front


def check_scorable(predictor) -> None:
    """Raise unless the predictor is a fitted CNNGen predictor that a pool can score with.

    Raises:
        CNNGenError: If it is another kind of object, is not fitted, or reads proxies, which
            a pool cannot compute.
    """
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    from cnngen.predictors import PREDICTORS
    from cnngen.predictors.tabular import FeatureRegressor, check_cheap_features

    if not isinstance(predictor, tuple(PREDICTORS.values())):
        raise CNNGenError(
            f"cannot score with a {type(predictor).__name__}; pass a fitted predictor of "
            "cnngen.predictors.PREDICTORS"
        )
    try:
        check_is_fitted(predictor)
    except NotFittedError:
        raise CNNGenError(
            f"the {type(predictor).__name__} is not fitted; fit it or load a saved one "
            "before scoring"
        ) from None
    if isinstance(predictor, FeatureRegressor):
        check_cheap_features(predictor.feature_names_in_)


def _epochs_column(epochs, count: int) -> np.ndarray:
    """Return one epoch count per candidate, or raise if a count is not a positive integer."""
    if isinstance(epochs, np.ndarray) and epochs.ndim == 0:
        epochs = epochs.item()
    if isinstance(epochs, Iterable) and not isinstance(epochs, str):
        values = list(epochs)
        if len(values) != count:
            raise CNNGenError(
                f"got {len(values)} epoch counts for {count} candidates; pass one count per "
                "candidate or a single count for all"
            )
    else:
        values = [epochs]
    column = np.asarray([checked_integer("epochs", value, 1) for value in values], dtype=float)
    return column if len(values) == count else np.full(count, column[0])


def _warn_extrapolation(predictor, dataset: str, epochs: np.ndarray, names: list[str]) -> None:
    """Log a warning when candidates lie outside the data sets or epochs of the fit."""
    name = type(predictor).__name__
    datasets = getattr(predictor, "fit_datasets_", None)
    if datasets and dataset not in datasets:
        logger.warning(
            "%s was fitted on trainings on %s and these candidates are solved for %s: its "
            "predictions extrapolate and may be meaningless; fit it on trainings on %s",
            name, ", ".join(datasets), dataset, dataset,
        )  # fmt: skip
    fitted = getattr(predictor, "fit_epochs_", None)
    if not fitted or "epochs" not in names:
        return
    outside = sorted({int(value) for value in epochs} - set(fitted))
    if outside:
        logger.warning(
            "%s was fitted on trainings of %s epochs, so it does not tell %s epochs apart "
            "from those (trees do not extrapolate); fit it on trainings of those epoch counts",
            name, "/".join(map(str, fitted)), "/".join(map(str, outside[:5])),
        )  # fmt: skip


def _resolve(item, info, seed: int):
    from cnngen.architecture import Architecture
    from cnngen.grammar import parse
    from cnngen.solver import ResolvedArchitecture, solve

    if isinstance(item, ResolvedArchitecture):
        if (
            tuple(item.input_shape) != tuple(info.input_shape)
            or item.num_classes != info.num_classes
        ):
            raise CNNGenError(
                f"an architecture was solved for input shape {tuple(item.input_shape)} and "
                f"{item.num_classes} classes, not for data set {info.name!r}; pass its phrase "
                "or Architecture to solve it again"
            )
        return item
    if isinstance(item, str):
        item = parse(item)
    if not isinstance(item, Architecture):
        raise CNNGenError(
            f"cannot score a {type(item).__name__}; pass phrases, Architecture or "
            "ResolvedArchitecture objects"
        )
    return solve(item, info.input_shape, info.num_classes, seed)
