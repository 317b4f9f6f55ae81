"""The RF and GB baselines: tree ensembles on every cheap feature and the available proxies.

Random forests are the best default predictor across NAS benchmarks, and boosted trees the
best after tuning (Mehta et al., "NAS-Bench-Suite", 2022), so a new predictor should beat
both. :class:`RandomForestPredictor` wraps ``RandomForestRegressor`` and
:class:`GradientBoostingPredictor` wraps ``GradientBoostingRegressor``. By default both fit
on :data:`cnngen.predictors.tabular.CHEAP_FEATURES` (the structural features and the code
features) plus the zero-cost proxy columns (:data:`cnngen.proxies.PROXY_COLUMNS`) that the
fit table contains. A predictor fitted with proxies needs them again to predict.

Scoring is left to :mod:`cnngen.evaluation`. Nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

from cnngen.predictors.tabular import CHEAP_FEATURES, FeatureRegressor


class RandomForestPredictor(FeatureRegressor):
    """Random forest on the cheap features and the proxies present when fitting.

    Args:
        feature_names: The feature columns, or None for every cheap feature plus the proxy
            columns of the fit table.
        n_estimators: Number of trees. On the reference dataset 300 trees ranked within one
            standard deviation of 100 (docs/predictors.md) at three times the cost of
            scoring, so the default is 100, as in scikit-learn.
        max_features: Share of the features considered at each split.
        min_samples_leaf: Minimum number of architectures in a leaf.
        n_jobs: Parallel jobs of fit and predict; None uses one.
        random_state: Seed of the bootstrap samples and feature choices.

    Attributes:
        estimator_: The fitted ``sklearn.ensemble.RandomForestRegressor``.
        target_scale_: The largest absolute training target (1 when all are 0).
        n_features_in_: Number of features seen by ``fit``.
        feature_names_in_: Names of those features.
    """

    _default_features = CHEAP_FEATURES
    _uses_present_proxies = True

    def __init__(
        self,
        feature_names: Sequence[str] | None = None,
        n_estimators: int = 100,
        max_features: float = 0.5,
        min_samples_leaf: int = 1,
        n_jobs: int | None = None,
        random_state: int | None = None,
    ):
        self.feature_names = feature_names
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _make_estimator(self) -> RandomForestRegressor:
        return RandomForestRegressor(
            n_estimators=self.n_estimators,
            max_features=self.max_features,
            min_samples_leaf=self.min_samples_leaf,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )


class GradientBoostingPredictor(FeatureRegressor):
    """Gradient-boosted trees on the cheap features and the proxies present when fitting.

    ``GradientBoostingRegressor`` rather than ``HistGradientBoostingRegressor``, because the
    latter's leaves need 20 samples by default, which leaves a tree fitted on 10
    architectures without a split. :class:`cnngen.predictors.code.PyCodePredictor` is the
    same regressor on the code features alone.

    Args:
        feature_names: The feature columns, or None for every cheap feature plus the proxy
            columns of the fit table.
        n_estimators: Number of boosting stages.
        learning_rate: Shrinkage of each stage.
        max_depth: Depth of each tree.
        subsample: Share of the training architectures each stage is fitted on.
        random_state: Seed of the subsamples and of the trees' feature choices.

    Attributes:
        estimator_: The fitted ``sklearn.ensemble.GradientBoostingRegressor``.
        target_scale_: The largest absolute training target (1 when all are 0).
        n_features_in_: Number of features seen by ``fit``.
        feature_names_in_: Names of those features.
    """

    _default_features = CHEAP_FEATURES
    _uses_present_proxies = True

    def __init__(
        self,
        feature_names: Sequence[str] | None = None,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        max_depth: int = 3,
        subsample: float = 0.8,
        random_state: int | None = None,
    ):
        self.feature_names = feature_names
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.random_state = random_state

    def _make_estimator(self) -> GradientBoostingRegressor:
        return GradientBoostingRegressor(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            subsample=self.subsample,
            random_state=self.random_state,
        )
