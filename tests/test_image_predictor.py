"""Tests of cnngen.predictors.image on plot_model pictures of sampled architectures.

The pictures are drawn once per module with Keras and Graphviz. The networks see them at
64 x 32 pixels, so every fit takes a few seconds on two CPU cores.
"""

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from cnngen.errors import CNNGenError
from cnngen.metrics import compute_metrics
from cnngen.predictors.image import ImagePredictor, draw_cached_picture, load_picture
from cnngen.predictors.neural import import_torch
from cnngen.sampling import sample_many

pytest.importorskip("torchvision")
torch = import_torch()

TINY = {"image_height": 64, "image_width": 32, "batch_size": 8}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Use one PyTorch thread: on two busy CPU cores, two threads wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sampled():
    return list(sample_many(2, 12, (8, 8, 1), 10))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, sampled):
    """A picture cache holding every sampled architecture's plot_model PNG."""
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed")
    folder = tmp_path_factory.mktemp("pictures")
    for _, resolved in sampled:
        draw_cached_picture(resolved, folder)
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, sampled, cache_dir):
    """A run directory with the pictures at architectures/<id>.png, as generation writes them."""
    folder = tmp_path_factory.mktemp("run")
    (folder / "architectures").mkdir()
    for index, (_, resolved) in enumerate(sampled):
        shutil.copy(draw_cached_picture(resolved, cache_dir), folder / image_path(index))
    return folder


def image_path(index: int) -> str:
    return f"architectures/a{index:04d}.png"


@pytest.fixture(scope="module")
def rows(sampled):
    return pd.DataFrame(
        {
            "phrase": [resolved.to_phrase() for _, resolved in sampled],
            "dataset": "digits",
            "seed": [seed for seed, _ in sampled],
            "image_path": [image_path(index) for index in range(len(sampled))],
        }
    )


@pytest.fixture(scope="module")
def log_layers(sampled):
    """A target the picture shows: the log of the number of Keras layers (boxes)."""
    return np.log([compute_metrics(resolved).num_layers for _, resolved in sampled])


@pytest.fixture(scope="module")
def fitted(rows, run_dir, log_layers, cache_dir):
    predictor = ImagePredictor(**TINY, epochs=30, cache_dir=cache_dir, random_state=0)
    return predictor.fit(rows, log_layers, run_dir=run_dir)


def test_fit_returns_self_with_learned_attributes(rows, run_dir, log_layers):
    predictor = ImagePredictor(**TINY, epochs=2, random_state=0)
    assert predictor.fit(rows, log_layers, run_dir=run_dir) is predictor
    assert predictor.target_mean_ == pytest.approx(log_layers.mean())
    assert len(predictor.loss_curve_) == 2


def test_unfitted_predictor_rejects_predict(rows, run_dir):
    with pytest.raises(NotFittedError):
        ImagePredictor().predict(rows, run_dir=run_dir)


def test_fits_better_than_constant(fitted, rows, run_dir, log_layers):
    predicted = fitted.predict(rows, run_dir=run_dir)
    assert predicted.shape == (len(rows),)
    assert np.mean((predicted - log_layers) ** 2) < 0.5 * np.var(log_layers)
    assert fitted.loss_curve_[-1] < 0.5 * fitted.loss_curve_[0]


def test_same_random_state_same_predictions(rows, run_dir, log_layers):
    fits = [
        ImagePredictor(**TINY, epochs=1, random_state=seed).fit(rows, log_layers, run_dir=run_dir)
        for seed in (5, 5, 6)
    ]
    first, second, other = (fit.predict(rows, run_dir=run_dir) for fit in fits)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_run_dir_column_and_argument_agree(fitted, rows, run_dir):
    with_column = rows.assign(run_dir=str(run_dir))
    np.testing.assert_array_equal(
        fitted.predict(with_column), fitted.predict(rows, run_dir=run_dir)
    )


def test_absolute_paths_need_no_run_dir(fitted, rows, run_dir):
    absolute = rows.assign(image_path=[str(run_dir / path) for path in rows["image_path"]])
    np.testing.assert_array_equal(fitted.predict(absolute), fitted.predict(rows, run_dir=run_dir))


def test_pictures_drawn_when_path_missing(fitted, rows, run_dir, sampled):
    """Rows without image_path, and resolved architectures, use pictures drawn from phrases."""
    expected = fitted.predict(rows, run_dir=run_dir)
    np.testing.assert_array_equal(fitted.predict(rows.drop(columns=["image_path"])), expected)
    np.testing.assert_array_equal(fitted.predict(rows.assign(image_path=None)), expected)
    np.testing.assert_array_equal(fitted.predict([resolved for _, resolved in sampled]), expected)


def test_missing_png_drawn_into_cache(rows, run_dir, sampled, tmp_path, caplog):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    (folder / image_path(0)).unlink()
    predictor = ImagePredictor(**TINY, cache_dir=tmp_path / "cache")
    tensors = predictor.picture_tensors(rows.iloc[:2], run_dir=folder)
    assert "1 pictures are missing" in caplog.text
    assert len(list((tmp_path / "cache").glob("*.png"))) == 1
    expected = load_picture(run_dir / image_path(0), 64, 32)
    torch.testing.assert_close(tensors[0], expected, atol=0, rtol=0)


def test_drawn_picture_reused(sampled, cache_dir):
    path = draw_cached_picture(sampled[0][1], cache_dir)
    modified = path.stat().st_mtime_ns
    assert draw_cached_picture(sampled[0][1], cache_dir) == path
    assert path.stat().st_mtime_ns == modified


def test_save_load_round_trip(fitted, rows, run_dir, tmp_path):
    loaded = ImagePredictor.load(fitted.save(tmp_path / "img.pt"))
    np.testing.assert_array_equal(
        loaded.predict(rows, run_dir=run_dir), fitted.predict(rows, run_dir=run_dir)
    )
    assert loaded.get_params() == {**fitted.get_params(), "cache_dir": str(fitted.cache_dir)}


def test_load_neural_file_rejected(rows, tmp_path):
    from cnngen.predictors.neural import NeuralPredictor

    neural = NeuralPredictor(epochs=1, random_state=0).fit(rows, np.arange(len(rows)))
    with pytest.raises(CNNGenError, match="class NeuralPredictor, not ImagePredictor"):
        ImagePredictor.load(neural.save(tmp_path / "gcn.pt"))


def test_resnet18_backbone_fits(rows, run_dir, log_layers):
    predictor = ImagePredictor(backbone="resnet18", **TINY, epochs=1, random_state=0)
    predicted = predictor.fit(rows, log_layers, run_dir=run_dir).predict(rows, run_dir=run_dir)
    assert predicted.shape == (len(rows),)
    assert np.isfinite(predicted).all()


def test_scikit_learn_clone_and_params(tmp_path):
    predictor = ImagePredictor(backbone="resnet18", cache_dir=tmp_path, random_state=1)
    copy = clone(predictor)
    assert copy.get_params() == predictor.get_params()


def write_png(path, width: int, height: int, colour: int = 255):
    Image.new("RGB", (width, height), (colour, colour, colour)).save(path)
    return path


def test_load_picture_inverts_and_letterboxes(tmp_path):
    """A black 100 x 400 picture fills a 2:1 frame's height and a centred half of its width."""
    picture = load_picture(write_png(tmp_path / "tall.png", 100, 400, colour=0), 64, 32)
    assert picture.shape == (1, 64, 32)
    assert picture.dtype == torch.uint8
    assert picture[0, :, 12:20].min() == 255
    assert picture[0, :, :6].max() == 0
    assert picture[0, :, 26:].max() == 0


def test_load_picture_pads_wide_pictures_below(tmp_path):
    picture = load_picture(write_png(tmp_path / "wide.png", 400, 100, colour=0), 64, 32)
    assert picture[0, :6].min() == 255
    assert picture[0, 12:].max() == 0


def test_white_picture_is_background(tmp_path):
    picture = load_picture(write_png(tmp_path / "white.png", 50, 80), 64, 32)
    assert picture.max() == 0


def test_unreadable_picture_rejected(tmp_path):
    (tmp_path / "broken.png").write_text("not a picture")
    with pytest.raises(CNNGenError, match="could not read picture"):
        load_picture(tmp_path / "broken.png", 64, 32)


def test_relative_path_without_run_dir_rejected(rows):
    with pytest.raises(CNNGenError, match="is relative, but no run directory is given"):
        ImagePredictor(**TINY).fit(rows, np.zeros(len(rows)))


def test_missing_picture_folder_rejected(rows, tmp_path):
    with pytest.raises(CNNGenError, match="picture folder .*architectures' .* not found"):
        ImagePredictor(**TINY).fit(rows, np.zeros(len(rows)), run_dir=tmp_path / "typo")


BAD_INPUTS = [
    (lambda rows: rows.drop(columns=["dataset"]), r"lacks the columns \['dataset'\]"),
    (lambda rows: rows.assign(dataset="imagenet"), "unknown data set 'imagenet'"),
]


@pytest.mark.parametrize(("change", "message"), BAD_INPUTS, ids=["no_dataset", "unknown_dataset"])
def test_bad_rows_rejected(rows, run_dir, change, message):
    with pytest.raises(CNNGenError, match=message):
        ImagePredictor(**TINY).fit(change(rows), np.zeros(len(rows)), run_dir=run_dir)


BAD_PARAMETERS = [
    ({"backbone": "vgg16"}, "invalid backbone 'vgg16'"),
    ({"image_height": 16}, "invalid image_height 16"),
    ({"image_width": 64.0}, "invalid image_width 64.0"),
    ({"epochs": -1}, "invalid epochs -1"),
    ({"learning_rate": float("nan")}, "invalid learning_rate nan"),
]


@pytest.mark.parametrize(("parameters", "message"), BAD_PARAMETERS)
def test_bad_hyper_parameters_rejected(rows, run_dir, parameters, message):
    with pytest.raises(CNNGenError, match=message):
        ImagePredictor(**parameters).fit(rows, np.zeros(len(rows)), run_dir=run_dir)
