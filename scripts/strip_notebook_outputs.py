"""Remove outputs and execution counts from notebooks, so they are committed clean.

Usage: python scripts/strip_notebook_outputs.py NOTEBOOK.ipynb ...

Exits with status 1 when it changed a file, as pre-commit hooks do, so the commit stops and
the cleaned notebook can be added again. The pre-commit hook in .pre-commit-config.yaml runs it.
"""

import sys

import nbformat


def strip(path: str) -> bool:
    """Strip one notebook in place and return whether it changed."""
    notebook = nbformat.read(path, as_version=4)
    changed = False
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if cell.outputs or cell.execution_count is not None:
            cell.outputs = []
            cell.execution_count = None
            changed = True
    if changed:
        nbformat.write(notebook, path)
    return changed


def main(paths: list[str]) -> int:
    changed = [path for path in paths if strip(path)]
    for path in changed:
        print(f"stripped outputs from {path}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
