"""The decision-tree predictor of the CNNGen paper, as a scikit-learn estimator.

Gratia et al., "CNNGen: A Generator and a Dataset for Energy-Aware Neural Architecture
Search", predict accuracy and energy with a decision tree on four features: the Keras layer
count, the epochs, the FLOPs and the parameters. :class:`DecisionTreePredictor` wraps
scikit-learn's ``DecisionTreeRegressor`` and fits it on those features by default, or on any
columns of :data:`cnngen.predictors.tabular.KNOWN_FEATURES`. It follows scikit-learn's
estimator rules, so ``clone``, ``GridSearchCV`` and pipelines work with it, and it saves to
and loads from a joblib file whose header records the format version.

Computing features is left to :mod:`cnngen.features`, and scoring to :mod:`cnngen.evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.tree import DecisionTreeRegressor

from cnngen.features import PAPER_FEATURES
from cnngen.predictors.tabular import FeatureRegressor


class DecisionTreePredictor(FeatureRegressor):
    """Decision-tree regressor of an architecture's accuracy or energy from its features.

    ``fit`` and ``predict`` take the tables described in
    :class:`cnngen.predictors.tabular.FeatureRegressor`.

    Args:
        feature_names: The feature columns to fit on; defaults to
            :data:`cnngen.features.PAPER_FEATURES`.
        max_depth: Maximum depth of the tree, or None to grow it until leaves are pure.
        min_samples_leaf: Minimum number of architectures in a leaf.
        random_state: Seed of the tree's tie-breaking between equally good splits.

    Attributes:
        tree_: The fitted ``sklearn.tree.DecisionTreeRegressor`` (also ``estimator_``),
            which predicts the target divided by ``target_scale_``.
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

    @property
    def tree_(self) -> DecisionTreeRegressor:
        """The fitted tree; raises AttributeError before :meth:`fit`."""
        return self.estimator_

    def _make_estimator(self) -> DecisionTreeRegressor:
        return DecisionTreeRegressor(
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.random_state,
        )
