"""A whole run: validated parameters, then the numbered notebooks executed with papermill.

This module owns :func:`run_pipeline`, which `cnngen run` calls: it checks the parameters,
writes them to the run directory, and executes ``notebooks/NN_*.ipynb`` in order, each with
only the parameters it declares. The work itself (generating, training, analysing) lives in
the package modules that the notebooks call; the parameter table lives in
:mod:`cnngen.parameters`.

Notebooks run with the run directory as working directory, and the executed copies are saved
as ``<run directory>/notebooks/NN_*.ipynb``, tracebacks included when a cell fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnngen.errors import CNNGenError, ParameterError
from cnngen.parameters import (
    PARAMETERS,
    changed_fixed_parameters,
    dataset_options,
    load_parameters,
    read_parameters_file,
    validate_parameters,
    write_parameters,
)

logger = logging.getLogger(__name__)

KERNEL_NAME = "python3"
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
PARAMETERS_FILE = "parameters.yaml"
RUN_LOCK_FILE = "run.lock"


def default_notebooks_dir() -> Path:
    """Return the ``notebooks/`` folder next to this package in a repository checkout."""
    return Path(__file__).resolve().parent.parent / "notebooks"


def run_pipeline(
    params_path: str | os.PathLike | Mapping[str, Any],
    output_dir: str | os.PathLike,
    *,
    extra_parameters: Mapping[str, Any] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
) -> Path:
    """Run every numbered notebook on one parameter set, writing a run directory.

    Args:
        params_path: A YAML parameters file (or a dictionary of parameters).
        output_dir: The run directory; it replaces any ``output_dir`` parameter. A rerun
            into the same directory resumes it, and must keep the values of the parameters
            that the stored results depend on.
        extra_parameters: Values that replace those of the file.
        notebooks_dir: The folder of ``NN_*.ipynb`` notebooks; defaults to the repository's
            ``notebooks/``.

    Returns:
        The run directory, as an absolute path.

    Raises:
        ParameterError: If a parameter is invalid, or differs from the one stored in the run
            directory's ``parameters.yaml`` although the results depend on it.
        CNNGenError: If the notebooks folder is missing or empty, the Jupyter kernel cannot
            start, or a notebook fails. The message names the notebook, the failing cell and
            the executed copy that contains the traceback.
    """
    notebooks = find_notebooks(notebooks_dir)
    run_dir = Path(output_dir).resolve()
    params = load_parameters(params_path, overrides=extra_parameters)
    params = _with_absolute_paths(params, run_dir)

    _check_phrases(params)
    _check_dataset(params)
    _make_run_dir(run_dir)
    with _run_lock(run_dir):
        _check_resumable(run_dir, params)
        write_parameters(params, run_dir / PARAMETERS_FILE)
        (run_dir / "notebooks").mkdir(exist_ok=True)

        from tqdm.auto import tqdm

        for notebook in tqdm(notebooks, desc="notebooks", unit="notebook"):
            execute_notebook(notebook, run_dir / "notebooks" / notebook.name, params, run_dir)
    logger.info("run finished: %s", run_dir)
    return run_dir


def _check_phrases(params: Mapping[str, Any]) -> None:
    """Parse and solve hand-written phrases before any notebook starts."""
    from cnngen.datasets import get_dataset_info
    from cnngen.grammar import parse
    from cnngen.solver import solve

    info = get_dataset_info(params["dataset"])
    for index, phrase in enumerate(params.get("phrases") or []):
        try:
            solve(parse(phrase), info.input_shape, info.num_classes, seed=params["seed"])
        except CNNGenError as error:
            detail = error.one_line if hasattr(error, "one_line") else str(error)
            raise ParameterError(f"invalid phrases[{index}]: {detail}") from None


def _check_dataset(params: Mapping[str, Any]) -> None:
    """Load the data set once, so a missing or corrupt file fails before any notebook starts."""
    from cnngen.datasets import load_dataset

    load_dataset(**dataset_options(params))


def _make_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CNNGenError(
            f"cannot create run directory {run_dir}: {error.strerror}; choose another --output"
        ) from None


@contextlib.contextmanager
def _run_lock(run_dir: Path):
    """Hold an exclusive lock on the run directory while its notebooks run."""
    lock_path = run_dir / RUN_LOCK_FILE
    try:
        import fcntl
    except ImportError:  # NOTE: no fcntl on Windows, so two runs there are not kept apart
        yield
        return
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise CNNGenError(
                f"run directory {run_dir} is in use by another `cnngen run` (process {owner}); "
                "wait for it to finish or choose another --output"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def find_notebooks(notebooks_dir: str | os.PathLike | None = None) -> list[Path]:
    """Return the numbered notebooks of a folder, in order.

    Raises:
        CNNGenError: If the folder is missing or contains no ``NN_*.ipynb`` notebook.
    """
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    if not folder.is_dir():
        raise CNNGenError(
            f"notebooks folder {folder} not found; `cnngen run` needs the notebooks of a "
            "repository checkout (pip install -e .), or pass notebooks_dir"
        )
    notebooks = sorted(folder.glob(NOTEBOOK_PATTERN))
    if not notebooks:
        raise CNNGenError(f"no numbered notebooks ({NOTEBOOK_PATTERN}) in {folder}")
    return notebooks


def notebook_parameters(notebook: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the parameters that a notebook declares in its ``parameters`` cell.

    Raises:
        ParameterError: If the notebook declares a parameter that :data:`PARAMETERS` lacks.
    """
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    unknown = [name for name in declared if name not in PARAMETERS]
    if unknown:
        raise ParameterError(
            f"notebook {notebook.name} declares parameters {unknown} that "
            "cnngen.parameters.PARAMETERS lacks; declare them there"
        )
    return {name: params[name] for name in declared if name in params}


def execute_notebook(
    notebook: Path, executed_path: Path, params: Mapping[str, Any], run_dir: Path
) -> Path:
    """Execute one notebook with papermill in the run directory and save the executed copy.

    Raises:
        CNNGenError: If a cell fails or the kernel cannot run the notebook.
    """
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillException, PapermillExecutionError

    parameters = notebook_parameters(notebook, params)
    logger.info("executing %s with %s", notebook.name, sorted(parameters))
    try:
        papermill.execute_notebook(
            str(notebook),
            str(executed_path),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            cwd=str(run_dir),
            progress_bar=False,
        )
    except PapermillExecutionError as error:
        source_line = (error.source or "").strip().splitlines()[:1]
        raise CNNGenError(
            f"notebook {notebook.name} failed in cell {error.cell_index + 1} (In "
            f"[{error.exec_count}]: {source_line[0] if source_line else ''!r}) with "
            f"{error.ename}: {error.evalue}\nThe executed notebook with the traceback is "
            f"{executed_path}"
        ) from None
    except (PapermillException, DeadKernelError, CellTimeoutError) as error:
        raise CNNGenError(
            f"notebook {notebook.name} could not be executed: {type(error).__name__}: {error}"
            f"\nThe executed notebook, if any, is {executed_path}"
        ) from error
    except NoSuchKernel as error:
        raise CNNGenError(
            f"Jupyter kernel {KERNEL_NAME!r} not found ({error}) for notebook {notebook.name}; "
            "install it with `python -m ipykernel install --user`"
        ) from error
    return executed_path


def _with_absolute_paths(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Set output_dir to the run directory and make path parameters absolute.

    Notebooks run with the run directory as working directory, so a relative path from the
    command line would otherwise point somewhere else.
    """
    if params["output_dir"] not in (PARAMETERS["output_dir"].default, str(run_dir)):
        logger.info(
            "output_dir %s is replaced by the run directory %s", params["output_dir"], run_dir
        )
    params = dict(params, output_dir=str(run_dir))
    for name, parameter in PARAMETERS.items():
        if parameter.kind == "path" and params.get(name) is not None:
            params[name] = str(Path(params[name]).expanduser().resolve())
    return validate_parameters(params)


def _check_resumable(run_dir: Path, params: Mapping[str, Any]) -> None:
    """Raise ParameterError when a rerun changes a parameter the stored results depend on."""
    path = run_dir / PARAMETERS_FILE
    if not path.is_file():
        return
    previous = validate_parameters(read_parameters_file(path), source=path)
    changed = changed_fixed_parameters(previous, params)
    if changed:
        details = ", ".join(f"{name}={previous[name]!r} (now {params[name]!r})" for name in changed)
        raise ParameterError(
            f"run directory {run_dir} was started with {details}, and its results depend on "
            "these values; rerun with the same values to resume it, or choose a new output "
            "directory"
        )
