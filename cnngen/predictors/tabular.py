"""The base of the scikit-learn predictors over feature tables, and the table they read.

:class:`FeatureRegressor` fits a scikit-learn regressor on named feature columns. Its
subclasses (DT, Py_code, RF, GB) choose the regressor and the default columns. The columns
come from three groups of cheap features: the structural features of
:data:`cnngen.features.FEATURE_COLUMNS`, the code features of
:data:`cnngen.code_features.CODE_FEATURE_COLUMNS`, and the zero-cost proxies of
:data:`cnngen.proxies.PROXY_COLUMNS`. :func:`feature_table` returns the requested columns of
a table, computing the structural and code features from the ``phrase``, ``seed``,
``dataset`` and ``epochs`` columns when the table lacks them. Proxies need TensorFlow and
training images, so they are never computed here: compute them with :mod:`cnngen.proxies`.

Saving goes through :mod:`cnngen.predictors.files`. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from cnngen.code_features import CODE_FEATURE_COLUMNS, code_feature_frame
from cnngen.errors import CNNGenError
from cnngen.features import FEATURE_COLUMNS, feature_frame, resolve_stored
from cnngen.predictors.files import read_predictor_file, write_predictor_file
from cnngen.proxies import PROXY_COLUMNS

logger = logging.getLogger(__name__)

# Every structural and code feature: cheap to compute, with no TensorFlow and no data.
CHEAP_FEATURES = (*FEATURE_COLUMNS, *CODE_FEATURE_COLUMNS)
KNOWN_FEATURES = (*CHEAP_FEATURES, *PROXY_COLUMNS)
_ROW_COLUMNS = ("phrase", "seed", "dataset", "epochs")


class FeatureRegressor(RegressorMixin, BaseEstimator):
    """Base of the regressors of an architecture's accuracy or energy from feature columns.

    ``fit`` and ``predict`` take one of three inputs. A pandas DataFrame that contains the
    feature columns is read as is (other columns are ignored). A DataFrame of stored rows
    (``phrase``, ``seed``, ``dataset``, ``epochs``) gets its cheap features computed. An
    array must hold the features as columns, in order. :meth:`features` builds the table
    from resolved architectures.

    Subclasses set ``_default_features`` and ``_uses_present_proxies`` (whether the default
    set adds the proxy columns that the fit table contains), and define
    :meth:`_make_estimator`.

    Attributes:
        estimator_: The fitted scikit-learn regressor, which predicts the target divided by
            ``target_scale_``.
        target_scale_: The largest absolute training target (1 when all are 0).
        n_features_in_: Number of features seen by ``fit``.
        feature_names_in_: Names of those features.
        fit_datasets_: The data sets of the training rows, or None when X had no
            ``dataset`` column. Scoring warns for candidates of another data set.
        fit_epochs_: The epoch counts of the training rows, or None when neither X nor the
            features had an ``epochs`` column. Trees do not extrapolate, so scoring warns
            for other epoch counts.
    """

    _default_features: tuple[str, ...] = CHEAP_FEATURES
    _uses_present_proxies = False

    def _make_estimator(self):
        raise NotImplementedError

    def fit(self, X, y):  # noqa: N803 (scikit-learn's argument name)
        """Fit the regressor on features X and targets y.

        Args:
            X: A table or array as described in the class docstring.
            y: One target per row (test accuracy, energy in kWh, ...), all finite.

        Returns:
            This predictor.

        Raises:
            CNNGenError: If a feature column is missing and cannot be computed, X or y contains
                missing or infinite values, or their lengths differ.
        """
        names = self._fit_feature_names(X)
        matrix = feature_matrix(X, names)
        target = _checked_target(y, len(matrix))
        # scikit-learn 1.9 treats a tree node whose variance is below 2.2e-16 as pure, and
        # energies of about 1e-8 kWh are that close, so the regressor fits target / scale.
        spread = float(np.max(np.abs(target))) if len(target) else 0.0
        self.target_scale_ = spread if spread > 0 else 1.0
        self.estimator_ = self._make_estimator().fit(matrix, target / self.target_scale_)
        self.n_features_in_ = len(names)
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.fit_datasets_, self.fit_epochs_ = _training_domain(X, matrix, names)
        return self

    def predict(self, X) -> np.ndarray:  # noqa: N803 (scikit-learn's argument name)
        """Predict one target per row of X.

        Raises:
            sklearn.exceptions.NotFittedError: If called before :meth:`fit`.
            CNNGenError: If a feature column is missing or contains missing values.
        """
        check_is_fitted(self, "estimator_")
        matrix = feature_matrix(X, list(self.feature_names_in_))
        return self.estimator_.predict(matrix) * self.target_scale_

    def features(self, resolved_list: Iterable, epochs: int | Sequence[int]):
        """Return the table of this predictor's columns for resolved architectures.

        Uses the fitted columns when the predictor is fitted, else its ``feature_names`` or
        default columns without proxies.

        Args:
            resolved_list: :class:`cnngen.solver.ResolvedArchitecture` objects.
            epochs: The epoch count of all of them, or one per architecture.

        Raises:
            CNNGenError: If the columns include proxies, which need TensorFlow and data.
        """
        if hasattr(self, "feature_names_in_"):
            names = list(self.feature_names_in_)
        else:
            names = self._checked_feature_names() or list(self._default_features)
        return resolved_feature_table(list(resolved_list), epochs, names)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the predictor to a joblib file with a format header, and return the path.

        Raises:
            sklearn.exceptions.NotFittedError: If called before :meth:`fit`.
            CNNGenError: If the file cannot be written.
        """
        check_is_fitted(self, "estimator_")
        return write_predictor_file(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Read a predictor of this class written by :meth:`save`.

        Loading unpickles the file, which can run code: load only files you trust.

        Raises:
            CNNGenError: If the file is missing, is not a CNNGen predictor file, has another
                format version, or contains another kind of predictor.
        """
        return read_predictor_file(path, cls)

    def _fit_feature_names(self, X) -> list[str]:  # noqa: N803
        names = self._checked_feature_names()
        if names:
            return names
        names = list(self._default_features)
        if self._uses_present_proxies and hasattr(X, "columns"):
            names += [name for name in PROXY_COLUMNS if name in X.columns]
        return names

    def _checked_feature_names(self) -> list[str] | None:
        """Return ``feature_names`` as a list, None for the default, or raise if invalid."""
        given = getattr(self, "feature_names", None)
        if given is None:
            return None
        names = list([given] if isinstance(given, str) else given)
        unknown = [name for name in names if name not in KNOWN_FEATURES]
        if not names or unknown:
            raise CNNGenError(
                f"invalid feature_names {given!r}: unknown {unknown}; expected a non-empty "
                "list of columns of cnngen.features.FEATURE_COLUMNS, "
                "cnngen.code_features.CODE_FEATURE_COLUMNS or cnngen.proxies.PROXY_COLUMNS"
            )
        return names


def feature_table(X, names: Sequence[str]):  # noqa: N803
    """Return the named feature columns of a table, computing cheap ones that it lacks.

    Args:
        X: A DataFrame. Missing structural or code features are computed from its
            ``phrase``, ``seed``, ``dataset`` and ``epochs`` columns.
        names: Feature columns, of :data:`KNOWN_FEATURES`.

    Raises:
        CNNGenError: If a proxy column is missing, features are missing and the table has no
            rows to compute them from, or a feature column appears more than once.
    """
    repeated = sorted({name for name in X.columns[X.columns.duplicated()] if name in names})
    if repeated:
        raise CNNGenError(
            f"the table has several columns named {repeated}; keep one of each before fitting "
            "or predicting"
        )
    missing = [name for name in names if name not in X.columns]
    if not missing:
        return X[list(names)]
    proxies = [name for name in missing if name in PROXY_COLUMNS]
    if proxies or not all(column in X.columns for column in _ROW_COLUMNS):
        raise CNNGenError(
            f"features {missing} are missing from the table (columns: {list(X.columns)}); "
            "pass a table with phrase, seed, dataset and epochs columns to compute cheap "
            "features, and compute proxies with cnngen.proxies"
        )
    seeds = [None if _is_missing(seed) else int(seed) for seed in X["seed"]]
    resolved = [
        resolve_stored(phrase, seed, dataset)
        for phrase, seed, dataset in zip(X["phrase"], seeds, X["dataset"], strict=True)
    ]
    computed = resolved_feature_table(resolved, list(X["epochs"]), missing)
    computed.index = X.index
    return computed.join(X[[name for name in names if name not in missing]])[list(names)]


def resolved_feature_table(resolved_list: list, epochs, names: Sequence[str]):
    """Compute the named cheap features of resolved architectures, in the order of names.

    Raises:
        CNNGenError: If a name is a proxy column.
    """
    import pandas as pd

    check_cheap_features(names)
    parts = []
    if any(name in FEATURE_COLUMNS for name in names):
        parts.append(feature_frame(resolved_list, epochs))
    if any(name in CODE_FEATURE_COLUMNS for name in names):
        parts.append(code_feature_frame(resolved_list))
    return pd.concat(parts, axis=1)[list(names)]


def check_cheap_features(names: Sequence[str]) -> None:
    """Raise if a feature column is a proxy, which cannot be computed without TensorFlow.

    Raises:
        CNNGenError: If a name is a proxy column.
    """
    proxies = [name for name in names if name in PROXY_COLUMNS]
    if proxies:
        raise CNNGenError(
            f"the predictor uses the proxies {proxies}, which need TensorFlow and training "
            "images: to score candidates, fit it on a table without proxy columns; to predict "
            "from a table, add the proxies computed with cnngen.proxies.compute_proxies"
        )


def feature_matrix(X, names: list[str]) -> np.ndarray:  # noqa: N803
    """Return the named feature columns of a table, or check an array's width, as floats.

    Raises:
        CNNGenError: If a column is missing and cannot be computed, the array has another
            width, or a value is missing or infinite.
    """
    if hasattr(X, "columns"):
        matrix = feature_table(X, names).to_numpy(dtype=float, na_value=np.nan)
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
            "compute them with cnngen.features.feature_frame, and drop rows whose proxies "
            "could not be computed"
        )
    return matrix


def _training_domain(X, matrix: np.ndarray, names: list[str]):  # noqa: N803
    """Return the sorted data sets and epoch counts of the training rows, or None for each."""
    columns = getattr(X, "columns", ())
    datasets = sorted({str(name) for name in X["dataset"]}) if "dataset" in columns else None
    if "epochs" in names:
        epochs = matrix[:, names.index("epochs")]
    elif "epochs" in columns:
        epochs = np.asarray(X["epochs"], dtype=float)
    else:
        return datasets, None
    return datasets, sorted({int(value) for value in epochs if np.isfinite(value)})


def _checked_target(y, num_rows: int) -> np.ndarray:
    target = np.asarray(y, dtype=float)
    if target.ndim != 1 or len(target) != num_rows:
        raise CNNGenError(
            f"y has shape {target.shape} but X has {num_rows} rows; pass one target per row"
        )
    if not np.all(np.isfinite(target)):
        raise CNNGenError(
            f"y contains {int(np.sum(~np.isfinite(target)))} missing or infinite values; drop "
            "the rows of failed trainings before fitting"
        )
    return target


def _is_missing(value) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))
