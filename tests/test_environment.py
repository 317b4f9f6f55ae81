"""Tests for environment.yml, its generator and the container recipe.

pyproject.toml is the single source of the pins: environment.yml and the image's requirement
list are rendered from it by scripts/generate_environment.py. The Dockerfile checks read it as
text, and scripts/build_container.sh builds and runs the image.
"""

import importlib.util
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
GENERATOR_PATH = REPO_ROOT / "scripts" / "generate_environment.py"


def _load_generator():
    spec = importlib.util.spec_from_file_location("generate_environment", GENERATOR_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = _load_generator()


@pytest.fixture(scope="module")
def project() -> dict:
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["project"]


@pytest.fixture(scope="module")
def environment() -> dict:
    with (REPO_ROOT / "environment.yml").open() as file:
        return yaml.safe_load(file)


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (REPO_ROOT / "Dockerfile").read_text()


# A small [project] table, so that the generator's rules are tested apart from the real pins.
SAMPLE_PROJECT = {
    "requires-python": ">=3.11",
    "dependencies": ["numpy>=2.0,<3", "pyyaml==6.0.4"],
    "optional-dependencies": {
        "cpu": ["tensorflow-cpu==2.21.0"],
        "lab": ["jupyterlab==4.6.6", "pyyaml==6.0.4"],
        "torch": ["torch==2.14.1"],
    },
}


# environment.yml against pyproject.toml


def test_environment_file_is_current(project):
    expected = generator.render_environment(project)
    actual = (REPO_ROOT / "environment.yml").read_text()
    assert actual == expected, (
        "environment.yml is stale: run python scripts/generate_environment.py"
    )


def test_environment_pins_match_pyproject(project, environment):
    pip_section = next(item for item in environment["dependencies"] if isinstance(item, dict))
    pinned = [line for line in pip_section["pip"] if not line.startswith("-e")]
    expected = list(project["dependencies"])
    for extra in generator.ENVIRONMENT_EXTRAS:
        expected += [req for req in project["optional-dependencies"][extra] if req not in expected]
    assert pinned == expected
    assert "-e ." in pip_section["pip"]


def test_environment_python_meets_requires_python(project, environment):
    python_spec = next(
        item for item in environment["dependencies"] if str(item).startswith("python")
    )
    minimum = project["requires-python"].removeprefix(">=")
    assert python_spec == f"python={minimum}"


def test_environment_has_graphviz(environment):
    assert "graphviz" in environment["dependencies"]


# collect_requirements and conda_python_spec


@pytest.mark.parametrize(
    ("extras", "optional_extras", "expected"),
    [
        ([], (), ["numpy>=2.0,<3", "pyyaml==6.0.4"]),
        (["cpu"], (), ["numpy>=2.0,<3", "pyyaml==6.0.4", "tensorflow-cpu==2.21.0"]),
        (["lab"], (), ["numpy>=2.0,<3", "pyyaml==6.0.4", "jupyterlab==4.6.6"]),
        (
            ["cpu"],
            ("torch",),
            ["numpy>=2.0,<3", "pyyaml==6.0.4", "tensorflow-cpu==2.21.0", "torch==2.14.1"],
        ),
        (["cpu"], ("absent",), ["numpy>=2.0,<3", "pyyaml==6.0.4", "tensorflow-cpu==2.21.0"]),
    ],
)
def test_collect_requirements(extras, optional_extras, expected):
    assert generator.collect_requirements(SAMPLE_PROJECT, extras, optional_extras) == expected


def test_collect_requirements_unknown_extra():
    with pytest.raises(
        generator.ProjectMetadataError, match=r"unknown extra\(s\) gpu\. .*cpu, lab, torch"
    ):
        generator.collect_requirements(SAMPLE_PROJECT, ["gpu"])


@pytest.mark.parametrize(
    ("requires_python", "expected"),
    [(">=3.11", "python=3.11"), (">= 3.12", "python=3.12"), (">=3.10 ", "python=3.10")],
)
def test_conda_python_spec(requires_python, expected):
    assert generator.conda_python_spec(requires_python) == expected


@pytest.mark.parametrize("requires_python", ["", "~=3.11", ">=3.11,<3.13", "==3.11.7", ">=3"])
def test_conda_python_spec_rejects_other_forms(requires_python):
    with pytest.raises(generator.ProjectMetadataError, match="is not of the form '>=X.Y'"):
        generator.conda_python_spec(requires_python)


def test_read_project_without_dependencies(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n')
    with pytest.raises(generator.ProjectMetadataError, match="has no \\[project\\] dependencies"):
        generator.read_project(pyproject)


# The command line


def test_main_check_reports_stale_file(tmp_path, capsys):
    output = tmp_path / "environment.yml"
    output.write_text("name: old\n")
    assert generator.main(["--check", "--output", str(output)]) == 1
    assert "is stale" in capsys.readouterr().err


def test_main_writes_then_check_passes(tmp_path):
    output = tmp_path / "environment.yml"
    assert generator.main(["--output", str(output)]) == 0
    assert generator.main(["--check", "--output", str(output)]) == 0


@pytest.mark.parametrize(
    ("variant", "optional_extras", "present", "absent"),
    [
        ("cpu", "", ["tensorflow-cpu==", "jupyterlab=="], ["tensorflow[and-cuda]", "torch"]),
        (
            "cuda",
            "torch",
            ["tensorflow[and-cuda]==", "jupyterlab==", "torch=="],
            ["tensorflow-cpu"],
        ),
    ],
)
def test_main_requirements_per_variant(variant, optional_extras, present, absent, capsys):
    # The arguments the Dockerfile passes for each VARIANT with INSTALL_TORCH=auto.
    status = generator.main(
        ["--requirements", "--extras", f"{variant},lab", "--optional-extras", optional_extras]
    )
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    for prefix in present:
        assert any(line.startswith(prefix) for line in lines), prefix
    for prefix in absent:
        assert not any(line.startswith(prefix) for line in lines), prefix


def test_main_skips_undefined_optional_extra(tmp_path, capsys):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["pyyaml==6.0.4"]\n')
    status = generator.main(
        ["--pyproject", str(pyproject), "--requirements", "--optional-extras", "torch"]
    )
    captured = capsys.readouterr()
    assert status == 0
    assert captured.out.split() == ["pyyaml==6.0.4"]
    assert "extra 'torch' is not defined, skipped" in captured.err


def test_main_unknown_extra_exits_2(capsys):
    assert generator.main(["--requirements", "--extras", "gpu"]) == 2
    assert "error: unknown extra(s) gpu" in capsys.readouterr().err


# The Dockerfile, read as text


@pytest.mark.parametrize(
    ("rule", "pattern"),
    [
        (
            "base pinned by tag and digest",
            r"(?m)^ARG BASE_IMAGE=[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$",
        ),
        ("FROM uses the argument", r"(?m)^FROM \$\{BASE_IMAGE\}$"),
        ("bash with pipefail", r'(?m)^SHELL \["/bin/bash", "-o", "pipefail", "-c"\]$'),
        ("CUDA variant by default", r"(?m)^ARG VARIANT=cuda$"),
        ("PyTorch behind an argument", r"(?m)^ARG INSTALL_TORCH=auto$"),
        ("apt without recommends", r"apt-get install -y --no-install-recommends"),
        ("apt lists removed", r"rm -rf /var/lib/apt/lists/\*"),
        ("JupyterLab port", r"(?m)^EXPOSE 8888$"),
        ("JupyterLab on all addresses", r'"--ip=0.0.0.0"'),
    ],
)
def test_dockerfile_rule(dockerfile, rule, pattern):
    assert re.search(pattern, dockerfile), rule


def test_dockerfile_single_apt_step(dockerfile):
    assert dockerfile.count("apt-get install") == 1


def test_dockerfile_dependencies_before_source(dockerfile):
    assert dockerfile.index("pip install --requirement") < dockerfile.index("COPY . ")


def test_dockerfile_ends_as_non_root_user(dockerfile):
    users = re.findall(r"(?m)^USER (\S+)$", dockerfile)
    assert users[-1] == "cnngen"


def test_dockerignore_leaves_out_environments():
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for path in [".git", ".venv", "runs"]:
        assert path in ignored, path


def test_build_script_syntax():
    result = subprocess.run(
        ["bash", "-n", str(REPO_ROOT / "scripts" / "build_container.sh")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_build_script_shellcheck():
    result = subprocess.run(
        ["shellcheck", str(REPO_ROOT / "scripts" / "build_container.sh")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout
