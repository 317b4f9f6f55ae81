"""Predictors of an architecture's accuracy and energy, and the table of their names.

Each predictor is a scikit-learn regressor over the features of :mod:`cnngen.features`.
:data:`PREDICTORS` maps the short names used by the evaluation, the notebooks and the
command line (``DT``, as in the CNNGen paper) to their classes; :func:`make_predictor` builds
one by name. Scoring predictors is left to :mod:`cnngen.evaluation`.
"""

from __future__ import annotations

import difflib

from cnngen.errors import CNNGenError
from cnngen.predictors.tree import DecisionTreePredictor

PREDICTORS = {"DT": DecisionTreePredictor}

__all__ = ["PREDICTORS", "DecisionTreePredictor", "make_predictor"]


def make_predictor(name: str, random_state: int | None = None):
    """Create an unfitted predictor from its short name.

    Args:
        name: A key of :data:`PREDICTORS`.
        random_state: Seed passed to the predictor.

    Raises:
        CNNGenError: If the name is unknown.
    """
    if name not in PREDICTORS:
        message = f"unknown predictor {name!r}; expected one of: {', '.join(PREDICTORS)}"
        by_lower_name = {known.lower(): known for known in PREDICTORS}
        close = difflib.get_close_matches(str(name).lower(), by_lower_name, n=1)
        if close:
            message += f". Did you mean {by_lower_name[close[0]]!r}?"
        raise CNNGenError(message)
    return PREDICTORS[name](random_state=random_state)
