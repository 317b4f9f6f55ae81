"""The architectures of a run: sampled or given phrases, their files, and their registration.

This module owns the first stage of a run directory. It derives one seed per architecture
from the run seed and samples architectures (or parses given phrases). It solves them for the
data set's input shape, writes ``architectures/<arch_id>.py`` and ``.png``, and registers
every architecture in the results store. It leaves the grammar, the solver, the metrics and the code
emission to their modules, and training to :mod:`cnngen.training`.

Architecture ids are ``a0001``, ``a0002``, ... in seed order. :func:`cnngen.sampling.
architecture_seeds` returns the same first seeds for a larger count, so a rerun with more
architectures keeps the ids and files of the first ones, and a rerun with the same arguments
writes byte-identical files and registers nothing new.

The store's ``architectures`` table has no column for the bare phrase, the depth or the
duplicate flags, so the whole generation record (arguments and one row per architecture) is
also stored as the run metadata ``"generation"``; :func:`registered_architectures` reads it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnngen.datasets import get_dataset_info
from cnngen.errors import CNNGenError, ParameterError, PhraseSyntaxError, SolverError
from cnngen.grammar import parse
from cnngen.keras_source import emit_source, load_build_model, render_png
from cnngen.metrics import compute_metrics
from cnngen.sampling import SamplingConfig, architecture_seeds, sample_architecture
from cnngen.solver import ResolvedArchitecture, solve
from cnngen.store import ResultsStore

logger = logging.getLogger(__name__)

ARCHITECTURES_DIR = "architectures"
STORE_FILE = "results.sqlite"
SAMPLING_CONFIGS = {
    "configured": SamplingConfig(),
    "original_effective": SamplingConfig.original_effective(),
}


@dataclass(frozen=True)
class GeneratedArchitecture:
    """One architecture of a run, as registered in the results store.

    Attributes:
        arch_id: Stable id within the run, such as ``a0001``.
        seed: The architecture's seed, derived from the run seed.
        dataset: The data set whose input shape and class count the network was solved for.
        phrase: The fully pinned phrase, which rebuilds the same network.
        bare_phrase: The phrase without hyper-parameters.
        params: Parameter count, equal to Keras's ``count_params()``.
        flops: FLOPs of one forward pass on one image.
        num_layers: Number of Keras layers, the input included.
        depth: Longest path of Conv2D and Dense layers.
        code_path: The emitted Keras source, relative to the run directory.
        image_path: The plot_model picture, relative to the run directory.
        duplicate_of: Id of the first architecture of the run with the same pinned phrase (the
            same network), or None.
        bare_duplicate_of: Id of the first architecture with the same bare phrase, or None.
    """

    arch_id: str
    seed: int
    dataset: str
    phrase: str
    bare_phrase: str
    params: int
    flops: int
    num_layers: int
    depth: int
    code_path: str
    image_path: str
    duplicate_of: str | None = None
    bare_duplicate_of: str | None = None


COLUMNS = [field.name for field in dataclasses.fields(GeneratedArchitecture)]


def generate_architectures(
    output_dir: str | os.PathLike,
    dataset: str,
    num_architectures: int,
    seed: int,
    *,
    phrases: list[str] | None = None,
    sampling: SamplingConfig | None = None,
    progress: bool = True,
):
    """Sample or parse the architectures of a run, write their files and register them.

    Args:
        output_dir: The run directory; created when missing.
        dataset: Name of the data set the networks are solved for.
        num_architectures: How many architectures to sample. Ignored, with a warning when it
            differs, when ``phrases`` is given.
        seed: The run seed; architecture ``i`` gets the ``i``-th seed of
            :func:`cnngen.sampling.architecture_seeds`.
        phrases: Phrases to use instead of sampling; each is solved with its derived seed, and
            its pinned values are kept.
        sampling: Sampling probabilities; defaults to :class:`cnngen.sampling.SamplingConfig`.
        progress: Show a tqdm progress bar.

    Returns:
        A pandas DataFrame with one row per architecture and the columns of
        :class:`GeneratedArchitecture`, in id order.

    Raises:
        ParameterError: If an argument is invalid, a phrase does not parse or cannot be solved,
            or the run directory was generated with other arguments.
        DatasetError: If the data set is unknown.
        CNNGenError: If Graphviz is missing, so no picture can be drawn.
    """
    info = get_dataset_info(dataset)
    _check_arguments(num_architectures, seed, phrases)
    sampling = sampling or SamplingConfig()
    run_dir = Path(output_dir)
    (run_dir / ARCHITECTURES_DIR).mkdir(parents=True, exist_ok=True)

    # Resolve every architecture first, so a bad phrase fails before any file is written.
    resolved = _resolve_all(info, num_architectures, seed, phrases, sampling)
    record = _generation_record(dataset, seed, phrases, sampling)

    from tqdm.auto import tqdm

    with ResultsStore(run_dir / STORE_FILE) as store:
        _check_same_generation(store, record, run_dir)
        architectures = []
        items = tqdm(resolved, desc="generating", unit="arch", disable=not progress)
        for arch_id, arch_seed, architecture in items:
            generated = _write_files(run_dir, arch_id, arch_seed, dataset, architecture)
            architectures.append(generated)
        architectures = _flag_duplicates(architectures)
        for generated in architectures:
            store.add_architecture(generated)
        _record_generation(store, record, architectures)
    logger.info("%d architectures registered in %s", len(architectures), run_dir)
    return _frame(architectures)


def registered_architectures(output_dir: str | os.PathLike, *, dataset: str | None = None):
    """Return the architectures registered in a run directory, in id order.

    Args:
        output_dir: The run directory.
        dataset: When given, the data set the caller will train on; it must be the one the
            architectures were solved for.

    Returns:
        A pandas DataFrame with the columns of :class:`GeneratedArchitecture`.

    Raises:
        CNNGenError: If the run directory has no registered architectures.
        ParameterError: If ``dataset`` differs from the generation's data set.
    """
    record = _stored_generation(output_dir)
    if not record or not record["architectures"]:
        raise CNNGenError(
            f"no architectures registered in {output_dir}; generate them first "
            "(notebook 01_generate_architectures or cnngen.generation.generate_architectures)"
        )
    if dataset is not None and dataset != record["dataset"]:
        raise ParameterError(
            f"invalid dataset {dataset!r}: the architectures in {output_dir} were solved for "
            f"{record['dataset']!r}; use dataset {record['dataset']!r} or a new output_dir"
        )
    rows = [GeneratedArchitecture(**row) for row in record["architectures"]]
    return _frame(rows)


def has_registered_architectures(output_dir: str | os.PathLike) -> bool:
    """Return whether a run directory has architectures registered by this module."""
    record = _stored_generation(output_dir)
    return bool(record and record["architectures"])


def _stored_generation(output_dir: str | os.PathLike) -> dict | None:
    path = Path(output_dir) / STORE_FILE
    if not path.is_file():
        return None
    with ResultsStore(path, read_only=True) as store:
        return store.run_metadata().get("generation")


def sampling_config(name: str) -> SamplingConfig:
    """Return the sampling probabilities of a preset name ("configured", "original_effective").

    Raises:
        ParameterError: If the name is not a preset.
    """
    if name not in SAMPLING_CONFIGS:
        raise ParameterError(
            f"invalid sampling {name!r}: expected one of {', '.join(SAMPLING_CONFIGS)}"
        )
    return SAMPLING_CONFIGS[name]


def _check_arguments(num_architectures, seed, phrases) -> None:
    if isinstance(num_architectures, bool) or not isinstance(num_architectures, int):
        raise ParameterError(
            f"invalid num_architectures {num_architectures!r}: expected a positive integer"
        )
    if num_architectures < 1:
        raise ParameterError(
            f"invalid num_architectures {num_architectures}: expected a positive integer"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParameterError(f"invalid seed {seed!r}: expected a non-negative integer")
    if phrases is not None and not all(isinstance(phrase, str) for phrase in phrases):
        raise ParameterError(f"invalid phrases {phrases!r}: expected a list of strings")
    if phrases and len(phrases) != num_architectures:
        logger.warning(
            "num_architectures=%d is ignored because %d phrases are given",
            num_architectures,
            len(phrases),
        )


def _resolve_all(info, num_architectures, seed, phrases, sampling):
    """Return (arch_id, seed, resolved architecture) for every architecture of the run."""
    count = len(phrases) if phrases else num_architectures
    resolved = []
    for index, arch_seed in enumerate(architecture_seeds(seed, count)):
        if phrases:
            architecture = _parse_phrase(phrases, index)
        else:
            architecture = sample_architecture(arch_seed, sampling)
        try:
            solved = solve(architecture, info.input_shape, info.num_classes, arch_seed)
        except SolverError as error:
            raise ParameterError(
                f"invalid phrases[{index}]: it cannot be solved for data set {info.name!r} "
                f"(input shape {info.input_shape}): {error}"
            ) from error
        resolved.append((f"a{index + 1:04d}", arch_seed, solved))
    return resolved


def _parse_phrase(phrases: list[str], index: int):
    try:
        return parse(phrases[index])
    except PhraseSyntaxError as error:
        raise ParameterError(f"invalid phrases[{index}]: {error}") from error


def _write_files(
    run_dir: Path, arch_id: str, seed: int, dataset: str, resolved: ResolvedArchitecture
) -> GeneratedArchitecture:
    """Write the source and picture of one architecture, skipping both when up to date."""
    code_path = Path(ARCHITECTURES_DIR) / f"{arch_id}.py"
    image_path = Path(ARCHITECTURES_DIR) / f"{arch_id}.png"
    metrics = compute_metrics(resolved)

    source = emit_source(resolved)
    code_file, image_file = run_dir / code_path, run_dir / image_path
    unchanged = code_file.is_file() and code_file.read_text(encoding="utf-8") == source
    if not unchanged:
        code_file.write_text(source, encoding="utf-8")
    if not unchanged or not image_file.is_file() or image_file.stat().st_size == 0:
        _draw(code_file, image_file, metrics.params)

    return GeneratedArchitecture(
        arch_id=arch_id,
        seed=seed,
        dataset=dataset,
        phrase=resolved.to_phrase(),
        bare_phrase=resolved.architecture.to_bare_phrase(),
        params=metrics.params,
        flops=metrics.flops,
        num_layers=metrics.num_layers,
        depth=metrics.depth,
        code_path=code_path.as_posix(),
        image_path=image_path.as_posix(),
    )


def _draw(code_file: Path, image_file: Path, expected_params: int) -> None:
    """Build the model from its emitted file and draw it, then free the Keras session."""
    import keras

    model = load_build_model(code_file)()
    try:
        if model.count_params() != expected_params:
            logger.warning(
                "%s: Keras counts %d parameters, the metrics %d",
                code_file.name,
                model.count_params(),
                expected_params,
            )
        render_png(model, image_file)
    finally:
        keras.backend.clear_session()


def _flag_duplicates(architectures: list[GeneratedArchitecture]) -> list[GeneratedArchitecture]:
    first_by_phrase: dict[str, str] = {}
    first_by_bare: dict[str, str] = {}
    flagged = []
    for generated in architectures:
        duplicate_of = first_by_phrase.setdefault(generated.phrase, generated.arch_id)
        bare_duplicate_of = first_by_bare.setdefault(generated.bare_phrase, generated.arch_id)
        flagged.append(
            dataclasses.replace(
                generated,
                duplicate_of=None if duplicate_of == generated.arch_id else duplicate_of,
                bare_duplicate_of=(
                    None if bare_duplicate_of == generated.arch_id else bare_duplicate_of
                ),
            )
        )
    num_duplicates = sum(generated.duplicate_of is not None for generated in flagged)
    if num_duplicates:
        logger.warning(
            "architectures that repeat an earlier network of the run: %d", num_duplicates
        )
    return flagged


def _generation_record(dataset, seed, phrases, sampling: SamplingConfig) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "seed": seed,
        "phrases": list(phrases) if phrases else None,
        "sampling": None if phrases else dataclasses.asdict(sampling),
    }


def _check_same_generation(store: ResultsStore, record: dict, run_dir: Path) -> None:
    """Raise ParameterError when the run directory was generated with other arguments."""
    stored = store.run_metadata().get("generation")
    if stored is None:
        return
    # JSON turns tuples into lists, so compare the record after the same round trip.
    stored_arguments = {key: stored[key] for key in record}
    current = {key: _jsonable(value) for key, value in record.items()}
    changed = [key for key in record if stored_arguments[key] != current[key]]
    if changed:
        details = ", ".join(f"{key}={stored_arguments[key]!r}" for key in changed)
        raise ParameterError(
            f"run directory {run_dir} was generated with {details}; use the same values to "
            "extend it, or choose a new output_dir"
        )


def _record_generation(store: ResultsStore, record: dict, architectures) -> None:
    """Store the generation record, keeping rows of earlier runs that this one did not cover."""
    stored = store.run_metadata().get("generation") or {"architectures": []}
    rows = {row["arch_id"]: row for row in stored["architectures"]}
    rows.update({generated.arch_id: dataclasses.asdict(generated) for generated in architectures})
    record = dict(record, architectures=[rows[arch_id] for arch_id in sorted(rows)])
    store.record_run_metadata("generation", record)


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _frame(architectures: list[GeneratedArchitecture]):
    import pandas as pd

    frame = pd.DataFrame([dataclasses.asdict(generated) for generated in architectures])
    return frame.reindex(columns=COLUMNS)
