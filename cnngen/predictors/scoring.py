"""Scoring many candidate architectures with a fitted predictor, without building models.

:func:`score_phrases` takes phrases, :class:`cnngen.architecture.Architecture` objects (as a
search keeps them) or resolved architectures, solves them for a data set, computes the
predictor's features, and predicts. For the predictors over feature tables (DT, Py_code, RF,
GB without proxies) nothing imports TensorFlow: the features come from the solver's layer
graph and from the emitted source text parsed with ``ast``. PyTorch predictors receive the
resolved architectures. Fitting is left to the predictors, and parsing to
:mod:`cnngen.grammar`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from cnngen.errors import CNNGenError

logger = logging.getLogger(__name__)

_CHUNK_SIZE = 5_000


def score_phrases(
    predictor,
    phrases_or_architectures: Iterable,
    dataset: str,
    epochs: int,
    *,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Predict the target of many architectures with a fitted predictor.

    Args:
        predictor: A fitted predictor of :data:`cnngen.predictors.PREDICTORS`.
        phrases_or_architectures: Phrases, :class:`cnngen.architecture.Architecture` or
            :class:`cnngen.solver.ResolvedArchitecture` objects, in any mix.
        dataset: The data set they are solved for, such as ``"fashion_mnist"``.
        epochs: The epochs they would be trained for (a feature of DT, RF and GB).
        seed: Seed of the values that a phrase or architecture leaves open.
        progress: Show a tqdm progress bar over chunks of architectures.

    Returns:
        One prediction per item, in input order.

    Raises:
        CNNGenError: If the predictor is not fitted or uses proxies, a phrase is invalid, a
            resolved architecture was solved for another data set, or the data set is unknown.
    """
    from sklearn.exceptions import NotFittedError
    from tqdm.auto import tqdm

    from cnngen.datasets import get_dataset_info
    from cnngen.predictors.tabular import FeatureRegressor

    info = get_dataset_info(dataset)
    items = list(phrases_or_architectures)
    chunks = [items[i : i + _CHUNK_SIZE] for i in range(0, len(items), _CHUNK_SIZE)]
    scores = []
    for chunk in tqdm(chunks, desc="scoring", unit="chunk", disable=not progress):
        resolved = [_resolve(item, info, seed) for item in chunk]
        try:
            if isinstance(predictor, FeatureRegressor):
                scores.append(predictor.predict(predictor.features(resolved, epochs)))
            else:
                scores.append(np.asarray(predictor.predict(resolved), dtype=float))
        except NotFittedError:
            raise CNNGenError(
                f"the {type(predictor).__name__} is not fitted; fit it or load a saved one "
                "before scoring"
            ) from None
    return np.concatenate(scores) if scores else np.zeros(0)


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
