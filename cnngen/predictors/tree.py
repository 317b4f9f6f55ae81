"""The decision-tree predictor of the CNNGen paper, as a scikit-learn estimator.

Gratia et al., "CNNGen: A Generator and a Dataset for Energy-Aware Neural Architecture
Search", predict accuracy and energy with a decision tree on four features: the Keras layer
count, the epochs, the FLOPs and the parameters. :class:`DecisionTreePredictor` wraps
scikit-learn's ``DecisionTreeRegressor`` and fits it on those features by default, or on any
columns of :data:`cnngen.features.FEATURE_COLUMNS`. It follows scikit-learn's estimator rules,
so ``clone``, ``GridSearchCV`` and pipelines work with it, and it saves to and loads from a
joblib file whose header records the format version.

Computing features is left to :mod:`cnngen.features`, and scoring to :mod:`cnngen.evaluation`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils.validation import check_is_fitted

from cnngen import __version__
from cnngen.errors import CNNGenError
from cnngen.features import FEATURE_COLUMNS, PAPER_FEATURES, feature_frame

logger = logging.getLogger(__name__)

FILE_FORMAT = "cnngen-predictor"
FILE_FORMAT_VERSION = 1


class DecisionTreePredictor(RegressorMixin, BaseEstimator):
    """Decision-tree regressor of an architecture's accuracy or energy from its features.

    ``fit`` and ``predict`` take a pandas DataFrame that contains the ``feature_names`` columns
    (other columns are ignored), or an array whose columns are those features in that order.
    :meth:`features` builds such a frame from resolved architectures.

    Args:
        feature_names: The columns of :data:`cnngen.features.FEATURE_COLUMNS` to fit on;
            defaults to :data:`cnngen.features.PAPER_FEATURES`.
        max_depth: Maximum depth of the tree, or None to grow it until leaves are pure.
        min_samples_leaf: Minimum number of architectures in a leaf.
        random_state: Seed of the tree's tie-breaking between equally good splits.

    Attributes:
        tree_: The fitted ``sklearn.tree.DecisionTreeRegressor``, which predicts the target
            divided by ``target_scale_``.
        target_scale_: The largest absolute training target (1 when all are 0).
        n_features_in_: Number of features seen by ``fit``.
        feature_names_in_: Names of those features.
    """

    def __init__(
        self,
        feature_names: Sequence[str] = PAPER_FEATURES,
        max_depth: int | None = None,
        min_samples_leaf: int = 1,
        random_state: int | None = None,
    ):
        self.feature_names = feature_names
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def fit(self, X, y) -> DecisionTreePredictor:  # noqa: N803 (scikit-learn's argument name)
        """Fit the tree on features X and targets y.

        Args:
            X: A DataFrame holding the ``feature_names`` columns, or an array of them.
            y: One target per row (test accuracy, energy in kWh, ...), all finite.

        Returns:
            This predictor.

        Raises:
            CNNGenError: If a feature column is missing, X or y contains missing or infinite
                values, or their lengths differ.
        """
        names = self._checked_feature_names()
        matrix = _feature_matrix(X, names)
        target = np.asarray(y, dtype=float)
        if target.ndim != 1 or len(target) != len(matrix):
            raise CNNGenError(
                f"y has shape {target.shape} but X has {len(matrix)} rows; pass one target per row"
            )
        if not np.all(np.isfinite(target)):
            raise CNNGenError(
                f"y contains {int(np.sum(~np.isfinite(target)))} missing or infinite values; drop "
                "the rows of failed trainings before fitting"
            )
        # scikit-learn 1.9 treats a node whose variance is below 2.2e-16 as pure, and energies of
        # about 1e-8 kWh are that close. Fitting target / scale makes the tree unit-independent.
        spread = float(np.max(np.abs(target))) if len(target) else 0.0
        self.target_scale_ = spread if spread > 0 else 1.0
        self.tree_ = DecisionTreeRegressor(
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.random_state,
        ).fit(matrix, target / self.target_scale_)
        self.n_features_in_ = len(names)
        self.feature_names_in_ = np.asarray(names, dtype=object)
        return self

    def predict(self, X) -> np.ndarray:  # noqa: N803 (scikit-learn's argument name)
        """Predict one target per row of X.

        Raises:
            sklearn.exceptions.NotFittedError: If called before :meth:`fit`.
            CNNGenError: If a feature column is missing or contains missing values.
        """
        check_is_fitted(self, "tree_")
        matrix = _feature_matrix(X, list(self.feature_names_in_))
        return self.tree_.predict(matrix) * self.target_scale_

    def features(self, resolved_list: Iterable, epochs: int | Sequence[int]):
        """Return the feature table of resolved architectures, with this predictor's columns.

        Args:
            resolved_list: :class:`cnngen.solver.ResolvedArchitecture` objects.
            epochs: The epoch count of all of them, or one per architecture.
        """
        return feature_frame(resolved_list, epochs)[list(self._checked_feature_names())]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the predictor to a joblib file with a format header, and return the path.

        Raises:
            sklearn.exceptions.NotFittedError: If called before :meth:`fit`.
            CNNGenError: If the file cannot be written.
        """
        import joblib
        import sklearn

        check_is_fitted(self, "tree_")
        payload = {
            "format": FILE_FORMAT,
            "format_version": FILE_FORMAT_VERSION,
            "class": type(self).__name__,
            "cnngen_version": __version__,
            "sklearn_version": sklearn.__version__,
            "estimator": self,
        }
        path = Path(path)
        try:
            joblib.dump(payload, path)
        except OSError as error:
            raise CNNGenError(f"could not write predictor file {str(path)!r}: {error}") from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> DecisionTreePredictor:
        """Read a predictor written by :meth:`save`.

        Loading unpickles the file, which can run code: load only files you trust.

        Raises:
            CNNGenError: If the file is missing, is not a CNNGen predictor file, has another
                format version, or contains another kind of predictor.
        """
        payload = _read_payload(Path(path))
        if payload["class"] != cls.__name__ or not isinstance(payload["estimator"], cls):
            raise CNNGenError(
                f"{str(path)!r} contains a {payload['class']}, not a {cls.__name__}; load it with "
                "that class"
            )
        return payload["estimator"]

    def _checked_feature_names(self) -> list[str]:
        names = [self.feature_names] if isinstance(self.feature_names, str) else self.feature_names
        names = list(names)
        unknown = [name for name in names if name not in FEATURE_COLUMNS]
        if not names or unknown:
            raise CNNGenError(
                f"invalid feature_names {self.feature_names!r}: unknown {unknown}; expected a "
                f"non-empty list of cnngen.features.FEATURE_COLUMNS"
            )
        return names


def _feature_matrix(X, names: list[str]) -> np.ndarray:  # noqa: N803
    """Return the named columns of a DataFrame, or check an array's width, as floats."""
    if hasattr(X, "columns"):
        missing = [name for name in names if name not in X.columns]
        if missing:
            raise CNNGenError(
                f"features {missing} are missing from the table (columns: {list(X.columns)}); "
                "build it with cnngen.features.feature_frame"
            )
        matrix = X[names].to_numpy(dtype=float, na_value=np.nan)
    else:
        matrix = np.asarray(X, dtype=float)
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise CNNGenError(
                f"X has shape {matrix.shape} but the predictor uses {len(names)} features "
                f"{names}; pass a DataFrame with those columns"
            )
    if not np.all(np.isfinite(matrix)):
        raise CNNGenError(
            f"the features contain {int(np.sum(~np.isfinite(matrix)))} missing or infinite values; "
            "compute them with cnngen.features.feature_frame"
        )
    return matrix


def _read_payload(path: Path) -> dict:
    import joblib

    if not path.is_file():
        raise CNNGenError(f"predictor file {str(path)!r} not found")
    try:
        payload = joblib.load(path)
    except Exception as error:  # unpickling raises many types for a file of the wrong kind
        raise CNNGenError(
            f"{str(path)!r} is not a CNNGen predictor file ({type(error).__name__}: {error}); "
            "pass a file written by the predictor's save()"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise CNNGenError(
            f"{str(path)!r} is not a CNNGen predictor file; pass a file written by the "
            "predictor's save()"
        )
    if payload.get("format_version") != FILE_FORMAT_VERSION:
        raise CNNGenError(
            f"{str(path)!r} has predictor file format version {payload.get('format_version')!r}, "
            f"but this CNNGen {__version__} reads version {FILE_FORMAT_VERSION}; fit and save "
            "the predictor again, or load it with the CNNGen version that wrote it"
        )
    import sklearn

    if payload.get("sklearn_version") != sklearn.__version__:
        logger.warning(
            "predictor file %s was written with scikit-learn %s, this is %s: predictions may "
            "differ; fit and save it again to be sure",
            path,
            payload.get("sklearn_version"),
            sklearn.__version__,
        )
    return payload
