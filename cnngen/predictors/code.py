"""The Py_code predictor: gradient boosting on features parsed from the generated Keras code.

The CNNGen paper's second predictor reads the Python file that CNNGen generates for an
architecture and learns from its layers and their hyper-parameters. :class:`PyCodePredictor`
does this with the features of :mod:`cnngen.code_features` (layer counts, statistics of each
keyword argument, paddings, activations, lines, depth, width and merges, all parsed with
``ast``) and scikit-learn's ``GradientBoostingRegressor``, with the settings of
:class:`cnngen.predictors.forest.GradientBoostingPredictor`. The source is the stored file's
text when the features are computed from a run directory, or the text that
:func:`cnngen.keras_source.emit_source` regenerates from the stored phrase, which is the
same.

Scoring is left to :mod:`cnngen.evaluation`. Nothing here imports TensorFlow.
"""

from __future__ import annotations

from cnngen.code_features import CODE_FEATURE_COLUMNS
from cnngen.predictors.forest import GradientBoostingPredictor


class PyCodePredictor(GradientBoostingPredictor):
    """Gradient-boosted trees on the code features of an architecture's Keras source.

    ``fit`` and ``predict`` take the tables described in
    :class:`cnngen.predictors.tabular.FeatureRegressor`; the code features are computed from
    the phrases when the table lacks them. The hyper-parameters are those of
    :class:`cnngen.predictors.forest.GradientBoostingPredictor`, but ``feature_names=None``
    means :data:`cnngen.code_features.CODE_FEATURE_COLUMNS`, without proxies.
    """

    _default_features = CODE_FEATURE_COLUMNS
    _uses_present_proxies = False
