"""Predictors of an architecture's accuracy and energy, the table of their names, and files.

:data:`PREDICTORS` maps the short names used by the evaluation, the notebooks and the
command line to their classes. They are ``DT`` (the decision tree of the CNNGen paper),
``Py_code`` (gradient boosting on features of the generated code), the baselines ``RF`` and
``GB`` (tree ensembles on every cheap feature), and the PyTorch predictors ``Neural`` (the
GCN of Wen et al.) and ``Img`` (a CNN on the plot_model picture), listed in
:data:`TORCH_PREDICTORS`.
:func:`make_predictor` builds one by name, :func:`load_predictor` reads any saved predictor,
and :func:`score_phrases` scores many architectures at once. Scoring predictors against
measurements is left to :mod:`cnngen.evaluation`.

Importing this package imports neither TensorFlow nor PyTorch, because the PyTorch
predictors import PyTorch when they fit.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from cnngen.errors import CNNGenError
from cnngen.predictors.code import PyCodePredictor
from cnngen.predictors.files import is_torch_file, read_predictor_file
from cnngen.predictors.forest import GradientBoostingPredictor, RandomForestPredictor
from cnngen.predictors.image import ImagePredictor
from cnngen.predictors.neural import NeuralPredictor
from cnngen.predictors.scoring import score_phrases
from cnngen.predictors.tabular import FeatureRegressor
from cnngen.predictors.tree import DecisionTreePredictor

PREDICTORS = {
    "DT": DecisionTreePredictor,
    "Py_code": PyCodePredictor,
    "RF": RandomForestPredictor,
    "GB": GradientBoostingPredictor,
    "Neural": NeuralPredictor,
    "Img": ImagePredictor,
}
# Predictors that need PyTorch (the ``torch`` extra) to fit and predict.
TORCH_PREDICTORS = ("Neural", "Img")

__all__ = [
    "PREDICTORS", "TORCH_PREDICTORS", "DecisionTreePredictor", "FeatureRegressor",
    "GradientBoostingPredictor", "ImagePredictor", "NeuralPredictor", "PyCodePredictor",
    "RandomForestPredictor", "load_predictor", "make_predictor", "score_phrases",
]  # fmt: skip


def make_predictor(name: str, random_state: int | None = None, **options):
    """Create an unfitted predictor from its short name.

    Args:
        name: A key of :data:`PREDICTORS`.
        random_state: Seed passed to the predictor.
        **options: Other hyper-parameters of the predictor's class, such as ``epochs``.

    Raises:
        CNNGenError: If the name is unknown or an option is not a hyper-parameter of it.
    """
    if name not in PREDICTORS:
        message = f"unknown predictor {name!r}; expected one of: {', '.join(PREDICTORS)}"
        by_lower_name = {known.lower(): known for known in PREDICTORS}
        close = difflib.get_close_matches(str(name).lower(), by_lower_name, n=1)
        if close:
            message += f". Did you mean {by_lower_name[close[0]]!r}?"
        raise CNNGenError(message)
    predictor = PREDICTORS[name](random_state=random_state)
    unknown = sorted(set(options) - set(predictor.get_params()))
    if unknown:
        raise CNNGenError(
            f"invalid options {unknown} for predictor {name!r}; expected some of "
            f"{sorted(predictor.get_params())}"
        )
    return predictor.set_params(**options)


def load_predictor(path: str | os.PathLike):
    """Read a predictor of any class from a file written by its ``save``.

    Files of the scikit-learn predictors are unpickled, which can run code: load only files
    you trust. Files of the PyTorch predictors (a zip archive written by ``torch.save``) are
    read without running code, and need PyTorch.

    Raises:
        CNNGenError: If the file is missing or is not a CNNGen predictor file of a known
            class.
    """
    if is_torch_file(path):
        return _load_torch_predictor(path)
    return read_predictor_file(path)


def _load_torch_predictor(path):
    import importlib.util

    # The PyTorch predictors' own header check, which reads the file without running code.
    from cnngen.predictors.neural import _read_payload

    if importlib.util.find_spec("torch") is None:
        raise CNNGenError(
            f"{os.fspath(path)!r} is a zip archive, the format of the PyTorch predictors, and "
            "PyTorch is not installed; install it (bash scripts/setup.sh --dev) or "
            "pass a predictor file written by DT, Py_code, RF or GB"
        )
    class_name = _read_payload(Path(path))["class"]
    classes = {cls.__name__: cls for cls in PREDICTORS.values()}
    if class_name not in classes:
        raise CNNGenError(
            f"{os.fspath(path)!r} contains a {class_name}, which is not registered in "
            "cnngen.predictors.PREDICTORS"
        )
    return classes[class_name].load(path)
