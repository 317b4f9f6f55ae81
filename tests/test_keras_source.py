"""Tests of cnngen.keras_source: standalone files, loading, plot_model pictures."""

import hashlib
import subprocess
import sys

import pytest

from cnngen.errors import CNNGenError
from cnngen.keras_source import emit_source, load_build_model, render_png, write_source
from cnngen.sampling import sample_resolved


def test_emitted_source_is_deterministic():
    assert emit_source(sample_resolved(3, (28, 28, 1), 10)) == emit_source(
        sample_resolved(3, (28, 28, 1), 10)
    )


def test_emitted_file_runs_standalone(tmp_path):
    resolved = sample_resolved(4, (8, 8, 1), 10)
    path = write_source(resolved, tmp_path / "arch.py")
    code = f"import runpy; ns = runpy.run_path({str(path)!r}); m = ns['build_model']((8, 8, 1), 10); print(m.count_params())"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "cnngen" not in path.read_text().split('"""', 2)[2].split("def build_model")[0].replace(
        "CNNGen", ""
    )
    assert int(result.stdout.strip().splitlines()[-1]) > 0


def test_build_model_rejects_other_shape(tmp_path):
    build_model = load_build_model(
        write_source(sample_resolved(4, (8, 8, 1), 10), tmp_path / "a.py")
    )
    with pytest.raises(ValueError, match=r"solved for input_shape=\(8, 8, 1\)"):
        build_model((28, 28, 1), 10)


def test_load_build_model_missing_file(tmp_path):
    with pytest.raises(CNNGenError, match="not found"):
        load_build_model(tmp_path / "missing.py")


def test_load_build_model_without_function(tmp_path):
    path = tmp_path / "other.py"
    path.write_text("x = 1\n")
    with pytest.raises(CNNGenError, match="defines no build_model"):
        load_build_model(path)


@pytest.mark.slow
def test_png_exists_and_is_byte_identical(tmp_path):
    resolved = sample_resolved(9, (28, 28, 1), 10)
    digests = []
    for name in ("first", "second"):
        build_model = load_build_model(write_source(resolved, tmp_path / f"{name}.py"))
        path = render_png(build_model(), tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_png_without_graphviz_raises(tmp_path, monkeypatch):
    import keras

    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on this PATH
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(CNNGenError, match="Graphviz"):
        render_png(model, tmp_path / "x.png")


def test_graphviz_crash_falls_back_to_polyline(tmp_path, monkeypatch):
    import keras

    real_plot_model = keras.utils.plot_model
    calls = []

    def crash_on_orthogonal_edges(model, **options):
        calls.append(options.get("splines", "ortho"))
        if options.get("splines", "ortho") == "ortho":
            raise AssertionError("\"dot\" with args ['-Tpng'] returned code: -6")
        return real_plot_model(model, **options)

    monkeypatch.setattr(keras.utils, "plot_model", crash_on_orthogonal_edges)
    build_model = load_build_model(
        write_source(sample_resolved(2, (8, 8, 1), 10), tmp_path / "a.py")
    )
    path = render_png(build_model(), tmp_path / "a.png")
    assert calls == ["ortho", "polyline"]
    assert path.read_bytes()[:4] == b"\x89PNG"
