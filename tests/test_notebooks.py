"""Structural tests of the numbered notebooks and of the parameter files they run with.

Executing the notebooks is left to nbval (see docs/notebooks.md) and tests/test_pipeline.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

from cnngen.parameters import PARAMETERS

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PARAMETER_FILES = sorted((ROOT / "parameters").glob("*.yaml"))

by_name = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)


def _read(path):
    return nbformat.read(path, as_version=4)


def _parameter_cell_index(notebook):
    indices = [
        index
        for index, cell in enumerate(notebook.cells)
        if "parameters" in cell.metadata.get("tags", [])
    ]
    assert len(indices) == 1, f"expected one cell tagged parameters, found {len(indices)}"
    return indices[0]


def _declared(path):
    return papermill.inspect_notebook(str(path))


def test_numbered_notebooks_exist():
    names = [path.name for path in NOTEBOOKS]
    assert "01_generate_architectures.ipynb" in names
    assert "02_train_architectures.ipynb" in names


@by_name
def test_name_is_number_verb_object(path):
    assert re.fullmatch(r"\d\d_[a-z]+_[a-z_]+\.ipynb", path.name)


@by_name
def test_first_cell_is_markdown_title(path):
    first = _read(path).cells[0]
    assert first.cell_type == "markdown"
    assert first.source.startswith("# ")


@by_name
def test_kernelspec_is_python3(path):
    kernelspec = _read(path).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3"
    assert kernelspec.get("language") == "python"


@by_name
def test_no_stored_outputs(path):
    for index, cell in enumerate(_read(path).cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has outputs"
            assert cell.execution_count is None, f"cell {index} has an execution count"


@by_name
def test_exactly_one_parameters_cell(path):
    notebook = _read(path)
    index = _parameter_cell_index(notebook)
    assert notebook.cells[index].cell_type == "code"


@by_name
def test_every_parameter_has_a_comment(path):
    cell = _read(path).cells[_parameter_cell_index(_read(path))]
    for line in cell.source.splitlines():
        if line.strip():
            assert "  # " in line, f"parameter line without a comment: {line!r}"


@by_name
def test_declared_parameters_are_known_with_same_defaults(path):
    for name, declared in _declared(path).items():
        assert name in PARAMETERS, f"{name} is not in cnngen.parameters.PARAMETERS"
        default = ast.literal_eval(declared["default"])
        assert default == PARAMETERS[name].default, name


@by_name
def test_next_cell_validates_every_parameter(path):
    notebook = _read(path)
    following = notebook.cells[_parameter_cell_index(notebook) + 1]
    assert following.cell_type == "code"
    assert "validate_parameters(" in following.source
    for name in _declared(path):
        assert f'"{name}": {name},' in following.source, name


def test_every_declared_parameter_is_used_by_a_notebook():
    declared = set().union(*(_declared(path) for path in NOTEBOOKS))
    assert sorted(set(PARAMETERS) - declared) == []


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda path: path.name)
def test_every_file_key_is_declared_by_a_notebook(path):
    declared = set().union(*(_declared(notebook) for notebook in NOTEBOOKS))
    keys = set(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert sorted(keys - declared) == []


def test_docs_describe_every_parameter():
    text = (ROOT / "docs" / "notebooks.md").read_text(encoding="utf-8")
    for name in PARAMETERS:
        assert f"`{name}`" in text, name


def test_strip_script_removes_outputs(tmp_path):
    import subprocess
    import sys

    from nbformat.v4 import new_code_cell, new_notebook, new_output

    path = tmp_path / "executed.ipynb"
    cell = new_code_cell("print(1)", execution_count=3, outputs=[new_output("stream", text="1\n")])
    nbformat.write(new_notebook(cells=[cell]), path)
    script = Path(__file__).parents[1] / "scripts" / "strip_notebook_outputs.py"
    first = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True)
    second = subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True
    )
    assert first.returncode == 1
    assert second.returncode == 0
    stripped = nbformat.read(path, as_version=4).cells[0]
    assert stripped.outputs == []
    assert stripped.execution_count is None
