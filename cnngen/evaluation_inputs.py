"""The inputs of an evaluation: its checked arguments, stored results, the predictors' table.

This module owns the constants and argument checks of :mod:`cnngen.evaluation` (targets,
rankings, minimum sizes, :func:`check_protocol`). It reads results from a run's SQLite store
(or its run directory) or from a Parquet export written by ``scripts/export_reference.py``,
whose file metadata keeps the run's metadata under :data:`PARQUET_METADATA_KEY`. It also
builds the predictors' input table: the columns that identify each network, its cheap
features (structural and code), and the zero-cost proxies when they are given. It leaves the
protocol to :mod:`cnngen.evaluation`, features to :mod:`cnngen.features` and
:mod:`cnngen.code_features`, and proxies to :mod:`cnngen.proxies`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnngen.errors import CNNGenError

logger = logging.getLogger(__name__)

TARGETS = ("test_accuracy", "energy_kwh", "energy_per_epoch_kwh")
ENERGY_TARGETS = ("energy_kwh", "energy_per_epoch_kwh")
BASELINES = ("params", "flops")
# Minimum number of architectures on each side of a split: two give a rank correlation, and
# three give a tree more than one split.
MIN_TEST_ARCHITECTURES = 2
MIN_TRAIN_ARCHITECTURES = 3
MIN_ARCHITECTURES = MIN_TEST_ARCHITECTURES + MIN_TRAIN_ARCHITECTURES

PARQUET_METADATA_KEY = b"cnngen_run"
REQUIRED_COLUMNS = (
    "arch_id", "phrase", "seed", "dataset", "epochs", "epochs_run", "status", "test_accuracy",
    "energy_kwh",
)  # fmt: skip
IDENTITY_COLUMNS = ["arch_id", "phrase", "seed", "dataset", "epochs"]


def read_results(path: str | os.PathLike):
    """Return one row per training of a results store or of its Parquet export.

    Args:
        path: A ``results.sqlite``, a run directory, a ``results.parquet``, or a folder with
            one of those files (the store is preferred).

    Returns:
        The rows of ``ResultsStore.trainings_frame()``. ``attrs["run_metadata"]`` contains the
        run metadata, ``attrs["run_dir"]`` the run directory (None for an export), and
        ``attrs["source_dir"]`` the folder of the file that was read.

    Raises:
        CNNGenError: If no results are found, the file cannot be read, or an export lacks a
            column the evaluation needs.
    """
    path = Path(path)
    if not path.exists():
        raise CNNGenError(
            f"results {str(path)!r} not found; pass a run directory, its results.sqlite, or a "
            "results.parquet written by scripts/export_reference.py"
        )
    if path.is_dir():
        candidates = [path / "results.sqlite", path / "results.parquet"]
        found = [candidate for candidate in candidates if candidate.is_file()]
        if not found:
            raise CNNGenError(
                f"no results.sqlite or results.parquet in {str(path)!r}; pass a run directory "
                "or a folder written by scripts/export_reference.py"
            )
        path = found[0]
    if path.suffix == ".parquet":
        frame, metadata, run_dir = _read_parquet(path), _parquet_metadata(path), None
    else:
        frame, metadata = _read_store(path)
        run_dir = path.parent
    # Text, not Path objects, so that pandas can keep attrs when it writes Parquet.
    run_dir = None if run_dir is None else str(run_dir)
    frame.attrs.update(run_metadata=metadata, run_dir=run_dir, source_dir=str(path.parent))
    return frame


def predictor_inputs(rows, features=None, proxies=None, run_dir=None, *, progress=False):
    """Return the table that predictors fit on and rankings read, one row per training.

    Args:
        rows: The evaluated trainings.
        features: A table of cheap features indexed by ``arch_id``, or None to compute the
            structural and code features.
        proxies: A table of :data:`cnngen.proxies.PROXY_COLUMNS` indexed by ``arch_id``, or
            None. A proxy that is missing for some rows is kept for its ranking, which skips
            those rows. It is left out of the predictors' features with a warning, so its
            column is then named ``ranking_<proxy>``.
        run_dir: The run directory of relative code and picture paths, or None.
        progress: Show progress bars while computing features.

    Returns:
        The identity columns (``arch_id``, ``phrase``, ``seed``, ``dataset``, ``epochs``,
        and ``image_path`` and ``run_dir`` when a run directory is known), the features, and
        the proxies, in the order of rows.

    Raises:
        CNNGenError: If a features or proxies table lacks an evaluated architecture.
    """
    import pandas as pd

    if features is None:
        features = cheap_features(rows, run_dir, progress=progress)
    parts = [rows[IDENTITY_COLUMNS].reset_index(drop=True)]
    if run_dir is not None:
        parts.append(pd.DataFrame({"image_path": rows["image_path"].to_numpy(),
                                   "run_dir": str(run_dir)}))  # fmt: skip
    features = _rows_of(features, rows, "features", "cnngen.features.stored_features")
    # The structural features repeat the requested epochs, which the identity columns hold.
    parts.append(features.drop(columns=[name for name in IDENTITY_COLUMNS if name in features]))
    if proxies is not None:
        table = _rows_of(proxies, rows, "proxies", "cnngen.proxies.cached_proxies")
        incomplete = [name for name in table.columns if table[name].isna().any()]
        for name in incomplete:
            logger.warning(
                "proxy %s is undefined for %d of %d architectures: it is scored as a ranking "
                "on the others and left out of the predictors' features",
                name, int(table[name].isna().sum()), len(table),
            )  # fmt: skip
        parts.append(table.rename(columns={name: f"ranking_{name}" for name in incomplete}))
    return pd.concat(parts, axis=1)


def cheap_features(rows, run_dir=None, *, progress: bool = False):
    """Return the structural and code features of stored rows, indexed by ``arch_id``."""
    from cnngen.code_features import stored_code_features
    from cnngen.features import stored_features

    structural = stored_features(rows, progress=progress)
    code = stored_code_features(rows, run_dir, progress=progress)
    return structural.join(code)


def results_proxies(frame, rows, cache_path=None, *, batch_size=None, seed: int = 0):
    """Compute or read from the cache the zero-cost proxies of the rows of stored results.

    The mini-batch comes from the run's training split, reloaded from the ``dataset`` record
    of the run metadata. Its size is the run's training batch size unless given.

    Args:
        frame: Results read by :func:`read_results`, for their metadata.
        rows: The rows whose proxies are needed.
        cache_path: The Parquet cache; None uses ``proxies.parquet`` beside the results.
        batch_size: Images in the mini-batch, or None for the run's batch size (64 if not
            recorded).
        seed: Seed of the mini-batch and of the networks' weights.

    Returns:
        A table of :data:`cnngen.proxies.PROXY_COLUMNS` indexed by ``arch_id``.

    Raises:
        CNNGenError: If the results record no training split, or the data cannot be loaded.
    """
    from cnngen.proxies import cached_proxies, proxy_batch, run_training_data

    metadata = frame.attrs.get("run_metadata") or {}
    if "dataset" not in metadata:
        raise CNNGenError(
            "the results record no training split (run metadata 'dataset'), so the proxies' "
            "mini-batch cannot be drawn; evaluate without proxies"
        )
    if batch_size is None:
        batch_size = int((metadata.get("training_config") or {}).get("batch_size", 64))
    if cache_path is None:
        cache_path = Path(frame.attrs["source_dir"]) / "proxies.parquet"
    data = run_training_data(metadata["dataset"])
    return cached_proxies(rows, proxy_batch(data, batch_size, seed), cache_path)


def _rows_of(table, rows, what: str, producer: str):
    missing = sorted(set(rows["arch_id"]) - set(table.index))
    if missing:
        raise CNNGenError(
            f"the {what} table lacks {len(missing)} evaluated architectures, such as "
            f"{missing[0]!r}; compute it with {producer} on the same rows"
        )
    return table.loc[rows["arch_id"]].reset_index(drop=True)


def _read_store(path: Path):
    from cnngen.store import ResultsStore

    with ResultsStore(path, read_only=True) as store:
        return store.trainings_frame(), store.run_metadata()


def _read_parquet(path: Path):
    import pandas as pd

    if not path.is_file():
        raise CNNGenError(f"results file {str(path)!r} not found")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise CNNGenError(f"could not read {str(path)!r} as Parquet: {error}") from None
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise CNNGenError(
            f"{str(path)!r} lacks the columns {missing}; export the results with "
            "scripts/export_reference.py"
        )
    return frame


def _parquet_metadata(path: Path) -> dict:
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    text = metadata.get(PARQUET_METADATA_KEY)
    return json.loads(text) if text else {}


@dataclass(frozen=True)
class Protocol:
    """The checked settings of an evaluation, shared by every target.

    Attributes:
        predictors: Short names of the trained predictors.
        rankings: Columns scored as rankings with no training (baselines and proxies).
        train_sizes: Requested training sizes: integers and ``"all"``.
        repetitions: Subsamples per training size.
        seed: Seed of the test split and of the repetitions.
        predictor_options: Keyword arguments per predictor name.
        predictor_train_sizes: Training sizes per predictor name, for those that use fewer
            than ``train_sizes``.
    """

    predictors: tuple[str, ...]
    rankings: tuple[str, ...]
    train_sizes: tuple
    repetitions: int
    seed: int
    predictor_options: dict
    predictor_train_sizes: dict

    def sizes_of(self, name: str) -> tuple:
        """Return the training sizes at which the named predictor is fitted."""
        return tuple(self.predictor_train_sizes.get(name, self.train_sizes))


def check_protocol(
    predictors, targets, train_sizes, test_fraction, repetitions, seed, statuses, proxies,
    predictor_options, predictor_train_sizes=None,
) -> Protocol:  # fmt: skip
    """Check the arguments of :func:`cnngen.evaluation.evaluate_frame` and group them.

    Raises:
        CNNGenError: If a name, size, fraction, repetition count or option is invalid.
    """
    from cnngen.predictors import PREDICTORS
    from cnngen.proxies import PROXY_COLUMNS
    from cnngen.store import STATUSES

    check_names("predictor", list(predictors), PREDICTORS)
    check_names("target", list(targets), TARGETS)
    check_names("status", list(statuses), STATUSES)
    check_fraction(test_fraction)
    if isinstance(repetitions, bool) or not isinstance(repetitions, int) or repetitions < 1:
        raise CNNGenError(f"invalid repetitions {repetitions!r}: expected an integer >= 1")
    bad_sizes = [size for size in train_sizes if size != "all" and not _is_size(size)]
    if bad_sizes or not list(train_sizes):
        raise CNNGenError(
            f"invalid train_sizes {list(train_sizes)!r}: expected integers >= "
            f"{MIN_TRAIN_ARCHITECTURES} or 'all'"
        )
    options = dict(predictor_options or {})
    check_names("predictor_options", list(options), PREDICTORS, allow_empty=True)
    sizes = {name: tuple(value) for name, value in (predictor_train_sizes or {}).items()}
    check_names("predictor_train_sizes", list(sizes), PREDICTORS, allow_empty=True)
    for name, value in sizes.items():
        if not set(value) <= set(train_sizes):
            raise CNNGenError(
                f"invalid predictor_train_sizes of {name}: {list(value)!r} is not a subset of "
                f"train_sizes {list(train_sizes)!r}"
            )
    rankings = (*BASELINES, *(PROXY_COLUMNS if proxies is not None else ()))
    return Protocol(
        tuple(predictors), rankings, tuple(train_sizes), repetitions, seed, options, sizes
    )


def parse_train_sizes(values) -> tuple:
    """Return training sizes given as text (``"10"``, ``"all"``) as integers and ``"all"``.

    Raises:
        CNNGenError: If a value is neither an integer nor ``"all"``.
    """
    sizes = []
    for value in values:
        if value == "all" or (isinstance(value, int) and not isinstance(value, bool)):
            sizes.append(value)
            continue
        try:
            sizes.append(int(str(value)))
        except ValueError:
            raise CNNGenError(
                f"invalid training size {value!r}: expected an integer or 'all'"
            ) from None
    return tuple(sizes)


def check_fraction(test_fraction) -> None:
    """Raise CNNGenError unless test_fraction is a number in (0, 1)."""
    number = not isinstance(test_fraction, bool) and isinstance(test_fraction, int | float)
    if not number or not 0 < test_fraction < 1:
        raise CNNGenError(f"invalid test_fraction {test_fraction!r}: expected a number in (0, 1)")


def check_names(kind: str, names, known, allow_empty: bool = False) -> None:
    """Raise CNNGenError if a name is not one of known, or if names is empty."""
    unknown = [name for name in names if name not in known]
    if unknown or (not names and not allow_empty):
        raise CNNGenError(
            f"invalid {kind} names {names!r}: expected one or more of {', '.join(known)}"
        )


def _is_size(value) -> bool:
    integer = isinstance(value, int | np.integer) and not isinstance(value, bool)
    return integer and value >= MIN_TRAIN_ARCHITECTURES
