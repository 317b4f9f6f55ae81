"""Tests of the papermill pipeline: a tiny real run, failures, parameters and reruns."""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cnngen.errors import CNNGenError, ParameterError
from cnngen.parameters import load_parameters, validate_parameters, write_parameters
from cnngen.pipeline import find_notebooks, notebook_parameters, run_pipeline

TINY = {
    "dataset": "digits",
    "seed": 3,
    "num_architectures": 2,
    "epochs": 1,
    "max_train": 100,
    "max_test": 50,
    "measure_power_secs": 0.5,
    "idle_duration_s": 0.5,
}


def _write_notebook(folder: Path, name: str, parameters: str, *cells: str) -> Path:
    """Write a notebook: a title, a parameters cell, then the given code cells."""
    notebook = new_notebook(
        cells=[
            new_markdown_cell(f"# {name}"),
            new_code_cell(parameters, metadata={"tags": ["parameters"]}),
            *(new_code_cell(source) for source in cells),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    path = folder / f"{name}.ipynb"
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def notebooks_dir(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory):
    """Run a working notebook and a failing one; return the run directory and the error."""
    root = tmp_path_factory.mktemp("failing")
    folder = root / "notebooks"
    folder.mkdir()
    _write_notebook(
        folder,
        "01_print_seed",
        "seed = 0  # seed\ndata_dir = None  # data",
        "print(seed, data_dir)",
    )
    _write_notebook(
        folder,
        "02_fail_on_purpose",
        'output_dir = "x"  # run directory',
        "value = 1",
        'raise ValueError("broken on purpose")',
    )
    _write_notebook(folder, "03_never_run", "seed = 0  # seed", "pass")
    with pytest.raises(CNNGenError) as caught:
        run_pipeline({"seed": 5, "data_dir": "relative/data"}, root / "run", notebooks_dir=folder)
    return root / "run", caught.value


@pytest.mark.slow
def test_tiny_run_end_to_end(tmp_path):
    run_dir = run_pipeline(TINY, tmp_path / "run")
    assert run_dir == (tmp_path / "run").resolve()

    params = load_parameters(run_dir / "parameters.yaml")
    assert params == validate_parameters(dict(TINY, output_dir=str(run_dir)))

    assert sorted(path.name for path in (run_dir / "architectures").glob("*.png")) == [
        "a0001.png",
        "a0002.png",
    ]
    with open(run_dir / "results.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["arch_id"] for row in rows] == ["a0001", "a0002"]
    assert all(row["status"] in ("ok", "diverged") for row in rows)

    executed = sorted(path.name for path in (run_dir / "notebooks").glob("*.ipynb"))
    assert executed == [path.name for path in find_notebooks()]


def test_failing_notebook_names_its_cell(failed_run):
    run_dir, error = failed_run
    message = str(error)
    assert "notebook 02_fail_on_purpose.ipynb failed in cell 5" in message
    assert "ValueError: broken on purpose" in message
    assert str(run_dir / "notebooks" / "02_fail_on_purpose.ipynb") in message


def test_failing_notebook_keeps_executed_copy(failed_run):
    run_dir, _ = failed_run
    assert (run_dir / "notebooks" / "02_fail_on_purpose.ipynb").is_file()
    assert not (run_dir / "notebooks" / "03_never_run.ipynb").exists()


def test_notebook_gets_only_declared_parameters(failed_run):
    run_dir, _ = failed_run
    executed = nbformat.read(run_dir / "notebooks" / "01_print_seed.ipynb", as_version=4)
    injected = [
        cell.source
        for cell in executed.cells
        if "injected-parameters" in cell.metadata.get("tags", [])
    ]
    assert len(injected) == 1
    assert "seed = 5" in injected[0]
    assert "epochs" not in injected[0]


def test_paths_are_made_absolute(failed_run):
    run_dir, _ = failed_run
    params = load_parameters(run_dir / "parameters.yaml")
    assert params["output_dir"] == str(run_dir)
    assert params["data_dir"] == str(Path("relative/data").resolve())


def test_rerun_with_other_epochs_is_rejected(tmp_path, notebooks_dir):
    _write_notebook(notebooks_dir, "01_do_nothing", "seed = 0  # seed", "pass")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    previous = validate_parameters({"epochs": 1, "output_dir": str(run_dir)})
    write_parameters(previous, run_dir / "parameters.yaml")
    with pytest.raises(ParameterError, match=r"was started with epochs=1 \(now 2\)"):
        run_pipeline({"epochs": 2}, run_dir, notebooks_dir=notebooks_dir)
    assert not (run_dir / "notebooks").exists()


def test_invalid_parameter_fails_before_any_notebook(tmp_path, notebooks_dir):
    _write_notebook(notebooks_dir, "01_do_nothing", "seed = 0  # seed", "pass")
    with pytest.raises(ParameterError, match=r"unknown parameter 'epoch'; did you mean"):
        run_pipeline({"epoch": 2}, tmp_path / "run", notebooks_dir=notebooks_dir)
    assert not (tmp_path / "run").exists()


def test_extra_parameters_replace_file_values(tmp_path, notebooks_dir):
    _write_notebook(notebooks_dir, "01_do_nothing", "seed = 0  # seed", "pass")
    params_file = tmp_path / "params.yaml"
    params_file.write_text("epochs: 3\n", encoding="utf-8")
    with pytest.raises(ParameterError, match=r"invalid epochs 'many'"):
        run_pipeline(
            params_file,
            tmp_path / "run",
            extra_parameters={"epochs": "many"},
            notebooks_dir=notebooks_dir,
        )


def test_undeclared_notebook_parameter_is_rejected(notebooks_dir):
    path = _write_notebook(notebooks_dir, "01_colour", 'colour = "red"  # colour', "pass")
    with pytest.raises(ParameterError, match=r"01_colour\.ipynb declares parameters \['colour'\]"):
        notebook_parameters(path, validate_parameters({}))


@pytest.mark.parametrize(
    ("make_folder", "message"),
    [
        (False, r"notebooks folder .* not found"),
        (True, r"no numbered notebooks \(\[0-9\]\[0-9\]_\*\.ipynb\) in"),
    ],
)
def test_missing_notebooks_are_reported(tmp_path, make_folder, message):
    folder = tmp_path / "notebooks"
    if make_folder:
        folder.mkdir()
        (folder / "scratch.ipynb").write_text("{}", encoding="utf-8")
    with pytest.raises(CNNGenError, match=message):
        run_pipeline({}, tmp_path / "run", notebooks_dir=folder)


def test_default_notebooks_are_found():
    names = [path.name for path in find_notebooks()]
    assert names[:2] == ["01_generate_architectures.ipynb", "02_train_architectures.ipynb"]


def test_invalid_phrase_fails_before_any_notebook(tmp_path, notebooks_dir):
    _write_notebook(notebooks_dir, "01_do_nothing", "seed = 0  # seed", "pass")
    phrases = [
        "input conv flatten dense output",
        "input conv(kernel=9, padding=valid) flatten dense output",
    ]
    with pytest.raises(ParameterError, match=r"invalid phrases\[1\]: .*kernel 9 is larger"):
        run_pipeline({"phrases": phrases}, tmp_path / "run", notebooks_dir=notebooks_dir)
    assert not (tmp_path / "run").exists()


def test_missing_data_fails_before_any_notebook(tmp_path, notebooks_dir):
    from cnngen.errors import DatasetError

    _write_notebook(notebooks_dir, "01_do_nothing", "seed = 0  # seed", "pass")
    params = {"dataset": "cifar10", "data_dir": str(tmp_path / "no-such-folder")}
    with pytest.raises(DatasetError, match="no-such-folder"):
        run_pipeline(params, tmp_path / "run", notebooks_dir=notebooks_dir)
    assert not (tmp_path / "run").exists()


def test_output_that_is_a_file_is_rejected(tmp_path, notebooks_dir):
    _write_notebook(notebooks_dir, "01_do_nothing", "seed = 0  # seed", "pass")
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    with pytest.raises(CNNGenError, match="cannot create run directory .*a-file"):
        run_pipeline({}, target, notebooks_dir=notebooks_dir)


def test_second_run_on_same_directory_is_rejected(tmp_path, notebooks_dir):
    import fcntl

    _write_notebook(notebooks_dir, "01_do_nothing", "seed = 0  # seed", "pass")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / "run.lock", "w") as held:
        held.write("12345")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(CNNGenError, match=r"in use by another `cnngen run` \(process 12345\)"):
            run_pipeline({}, run_dir, notebooks_dir=notebooks_dir)
    assert not (run_dir / "notebooks").exists()
