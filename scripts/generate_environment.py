"""Generate environment.yml, or a pip requirements list, from pyproject.toml.

pyproject.toml is the single source of dependencies and pins. This script renders the core
dependencies plus a chosen set of extras as a conda/mamba environment file, or as a plain
requirements list for the container build, which installs dependencies before it copies the
source. tests/test_environment.py fails when the committed environment.yml differs from what this
script produces.

Usage:
    python scripts/generate_environment.py                   # rewrite environment.yml
    python scripts/generate_environment.py --check           # exit 1 if environment.yml is stale
    python scripts/generate_environment.py --requirements --extras cpu,lab --optional-extras torch
"""

import argparse
import re
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PYPROJECT_PATH = REPO_ROOT / "pyproject.toml"
ENVIRONMENT_PATH = REPO_ROOT / "environment.yml"

# A conda environment for a CPU laptop or a JupyterLab session: TensorFlow for the CPU, the lab,
# PyTorch for the image and graph predictors, and the test tools. CUDA machines use the container
# image or `pip install .[cuda]`.
ENVIRONMENT_EXTRAS = ("cpu", "lab", "torch", "dev")
ENVIRONMENT_NAME = "cnngen"

# conda-forge packages that pip cannot provide. pydot calls Graphviz's `dot` to draw
# architectures. Graphviz is unpinned, like the distribution's package in the container.
CONDA_PACKAGES = ("pip", "graphviz")


class ProjectMetadataError(ValueError):
    """Raised when pyproject.toml lacks what the environment needs or an extra is unknown."""


def read_project(pyproject_path: Path = PYPROJECT_PATH) -> dict:
    """Read the [project] table of a pyproject.toml file.

    Raises:
        ProjectMetadataError: If the file has no [project] table or no dependencies list.
    """
    with pyproject_path.open("rb") as file:
        project = tomllib.load(file).get("project")
    if not isinstance(project, dict) or not isinstance(project.get("dependencies"), list):
        raise ProjectMetadataError(
            f"{pyproject_path} has no [project] dependencies list. Add one before generating "
            "the environment."
        )
    return project


def collect_requirements(
    project: dict, extras: list[str], optional_extras: tuple[str, ...] | list[str] = ()
) -> list[str]:
    """Collect the core requirements followed by those of each extra, without repeats.

    Args:
        project: The [project] table of pyproject.toml.
        extras: Extras that must exist, in the order their requirements are listed.
        optional_extras: Extras added only when pyproject.toml defines them.

    Returns:
        Requirement strings exactly as pyproject.toml writes them.

    Raises:
        ProjectMetadataError: If an extra in ``extras`` is not defined.
    """
    defined = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in defined]
    if unknown:
        raise ProjectMetadataError(
            f"unknown extra(s) {', '.join(unknown)}. pyproject.toml defines "
            f"{', '.join(sorted(defined)) or 'none'}."
        )
    selected = list(extras) + [extra for extra in optional_extras if extra in defined]
    requirements = list(project["dependencies"])
    for extra in selected:
        requirements.extend(req for req in defined[extra] if req not in requirements)
    return requirements


def conda_python_spec(requires_python: str) -> str:
    """Translate a ``>=X.Y`` requires-python bound into conda's ``python=X.Y``.

    Raises:
        ProjectMetadataError: If the bound is not a plain ``>=X.Y``.
    """
    match = re.fullmatch(r">=\s*(\d+\.\d+)", requires_python.strip())
    if match is None:
        raise ProjectMetadataError(
            f"requires-python {requires_python!r} is not of the form '>=X.Y'. Extend "
            "conda_python_spec in scripts/generate_environment.py to translate it."
        )
    return f"python={match.group(1)}"


def render_environment(project: dict, extras: tuple[str, ...] = ENVIRONMENT_EXTRAS) -> str:
    """Render environment.yml text for the core dependencies and ``extras``."""
    pip_requirements = collect_requirements(project, list(extras))
    conda_packages = [conda_python_spec(project.get("requires-python", "")), *CONDA_PACKAGES]
    lines = [
        "# Generated from pyproject.toml by scripts/generate_environment.py; do not edit.",
        f"# Core dependencies and the extras: {', '.join(extras)}.",
        "# Every Python package comes from PyPI through pip, so the pins are the ones in",
        "# pyproject.toml. Create with: mamba env create -f environment.yml",
        f"name: {ENVIRONMENT_NAME}",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        *(f"  - {package}" for package in conda_packages),
        "  - pip:",
        *(f'      - "{requirement}"' for requirement in pip_requirements),
        "      # The package itself, editable; its dependencies are the pins above.",
        "      - -e .",
    ]
    return "\n".join(lines) + "\n"


def _split_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def main(argv: list[str] | None = None) -> int:
    """Run the command that the module docstring describes and return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT_PATH)
    parser.add_argument("--output", type=Path, default=ENVIRONMENT_PATH)
    parser.add_argument("--check", action="store_true", help="exit 1 if --output is stale")
    parser.add_argument(
        "--requirements", action="store_true", help="print pip requirements, one per line"
    )
    parser.add_argument("--extras", default="", help="comma-separated extras to include")
    parser.add_argument(
        "--optional-extras", default="", help="comma-separated extras included only if defined"
    )
    args = parser.parse_args(argv)

    try:
        project = read_project(args.pyproject)
        if args.requirements:
            extras = _split_names(args.extras)
            optional = _split_names(args.optional_extras)
            for extra in optional:
                if extra not in project.get("optional-dependencies", {}):
                    print(f"note: extra {extra!r} is not defined, skipped", file=sys.stderr)
            print("\n".join(collect_requirements(project, extras, optional)))
            return 0
        text = render_environment(project)
    except ProjectMetadataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.check:
        if not args.output.exists() or args.output.read_text() != text:
            print(
                f"{args.output} is stale. Run python scripts/{Path(__file__).name}", file=sys.stderr
            )
            return 1
        return 0
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
