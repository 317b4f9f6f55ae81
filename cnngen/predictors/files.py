"""Predictor files: the joblib payload with a format header, written and checked in one place.

A file written by :func:`write_predictor_file` is a joblib pickle of a dictionary whose header
records the format name and version, the predictor's class, and the CNNGen and scikit-learn
versions. :func:`read_predictor_file` rejects a file of another kind or another format version
with a :class:`~cnngen.errors.CNNGenError` whose message names the fix, and logs a warning
when scikit-learn's version differs. The estimators of :mod:`cnngen.predictors.tabular` and its
subclasses save through these functions.

The PyTorch predictors of :mod:`cnngen.predictors.neural` write the same header fields with
``torch.save`` (format ``cnngen-torch-predictor``), so that loading needs no unpickling, and
:func:`cnngen.predictors.load_predictor` reads both kinds.

TODO: the PyTorch predictors still check their header with their own copy of
:func:`check_header`; they should call it.
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

from cnngen import __version__
from cnngen.errors import CNNGenError

logger = logging.getLogger(__name__)

FILE_FORMAT = "cnngen-predictor"
FILE_FORMAT_VERSION = 1


def write_predictor_file(estimator, path: str | os.PathLike) -> Path:
    """Write a fitted estimator with a format header to a joblib file, and return the path.

    Raises:
        CNNGenError: If the file cannot be written.
    """
    import joblib
    import sklearn

    payload = {
        "format": FILE_FORMAT,
        "format_version": FILE_FORMAT_VERSION,
        "class": type(estimator).__name__,
        "cnngen_version": __version__,
        "sklearn_version": sklearn.__version__,
        "estimator": estimator,
    }
    path = Path(path)
    try:
        joblib.dump(payload, path)
    except OSError as error:
        raise CNNGenError(f"could not write predictor file {str(path)!r}: {error}") from None
    return path


def read_predictor_file(path: str | os.PathLike, expected_class: type | None = None):
    """Read the estimator of a file written by :func:`write_predictor_file`.

    Loading unpickles the file, which can run code: load only files you trust.

    Args:
        path: The file.
        expected_class: The class the estimator must be, or None to accept any predictor.

    Raises:
        CNNGenError: If the file is missing, is not a CNNGen predictor file, has another format
            version, or contains another class than ``expected_class``.
    """
    path = Path(path)
    payload = _read_payload(path)
    if expected_class is not None and (
        payload["class"] != expected_class.__name__
        or not isinstance(payload["estimator"], expected_class)
    ):
        raise CNNGenError(
            f"{str(path)!r} contains a {payload['class']}, not a {expected_class.__name__}; "
            "load it with that class or with cnngen.predictors.load_predictor"
        )
    return payload["estimator"]


def is_torch_file(path: str | os.PathLike) -> bool:
    """Return whether path is a zip archive, the container ``torch.save`` writes."""
    return Path(path).is_file() and zipfile.is_zipfile(path)


def check_header(payload, path: Path, file_format: str, version: int) -> None:
    """Check the format name and version of a predictor file's payload.

    Args:
        payload: The file's decoded content.
        path: The file, for messages.
        file_format: The expected ``format`` value, such as :data:`FILE_FORMAT`.
        version: The format version this CNNGen reads.

    Raises:
        CNNGenError: If the payload is not a dictionary of that format, or has another
            version.
    """
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise CNNGenError(
            f"{str(path)!r} is not a CNNGen predictor file; pass a file written by the "
            "predictor's save()"
        )
    if payload.get("format_version") != version:
        raise CNNGenError(
            f"{str(path)!r} has predictor file format version {payload.get('format_version')!r}, "
            f"but this CNNGen {__version__} reads version {version}; fit and save the "
            "predictor again, or load it with the CNNGen version that wrote it"
        )


def _read_payload(path: Path) -> dict:
    import joblib

    if path.is_dir():
        raise CNNGenError(f"{str(path)!r} is a folder, not a predictor file")
    if not path.is_file():
        raise CNNGenError(f"predictor file {str(path)!r} not found")
    try:
        payload = joblib.load(path)
    except Exception as error:  # unpickling raises many types for a file of the wrong kind
        raise CNNGenError(
            f"{str(path)!r} is not a CNNGen predictor file ({type(error).__name__}: {error}); "
            "pass a file written by the predictor's save()"
        ) from None
    check_header(payload, path, FILE_FORMAT, FILE_FORMAT_VERSION)
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
