"""Tests of cnngen.predictors.neural on sampled architectures with a learnable target."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from cnngen.errors import CNNGenError, DatasetError
from cnngen.metrics import compute_metrics
from cnngen.predictors import neural
from cnngen.predictors.neural import NeuralPredictor
from cnngen.sampling import sample_many

torch = pytest.importorskip("torch")

# Wen et al.'s learning rate of 1e-4 needs about 300 epochs. A larger one learns the small
# training set below in 60 epochs of 3 steps.
FAST = {"learning_rate": 3e-3, "epochs": 60, "batch_size": 8}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Use one PyTorch thread: on two busy CPU cores, two threads wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sampled():
    return list(sample_many(1, 24, (8, 8, 1), 10))


@pytest.fixture(scope="module")
def rows(sampled):
    return pd.DataFrame(
        {
            "arch_id": [f"a{index:04d}" for index in range(len(sampled))],
            "phrase": [resolved.to_phrase() for _, resolved in sampled],
            "dataset": "digits",
            "seed": [seed for seed, _ in sampled],
        }
    )


@pytest.fixture(scope="module")
def log_flops(sampled):
    """A target the graph determines: log10 of the FLOPs of one forward pass."""
    return np.array([np.log10(compute_metrics(resolved).flops) for _, resolved in sampled])


@pytest.fixture(scope="module")
def fitted(rows, log_flops):
    return NeuralPredictor(**FAST, random_state=0).fit(rows, log_flops)


def test_fit_returns_self_with_learned_attributes(rows, log_flops):
    predictor = NeuralPredictor(epochs=2, random_state=0)
    assert predictor.fit(rows, log_flops) is predictor
    assert predictor.target_mean_ == pytest.approx(log_flops.mean())
    assert predictor.target_std_ == pytest.approx(log_flops.std())
    assert len(predictor.loss_curve_) == 2
    assert predictor.device_ in ("cpu", "cuda")


def test_unfitted_predictor_rejects_predict(rows):
    with pytest.raises(NotFittedError):
        NeuralPredictor().predict(rows)


def test_fits_better_than_constant(fitted, rows, log_flops):
    predicted = fitted.predict(rows)
    mse = np.mean((predicted - log_flops) ** 2)
    assert mse < 0.5 * np.var(log_flops)


def test_training_loss_decreases(fitted):
    assert fitted.loss_curve_[-1] < 0.5 * fitted.loss_curve_[0]


def test_predictions_in_target_units(fitted, rows, log_flops):
    predicted = fitted.predict(rows)
    assert predicted.shape == (len(rows),)
    assert predicted.dtype == np.float64
    assert abs(predicted.mean() - log_flops.mean()) < log_flops.std()


def test_same_random_state_same_predictions(rows, log_flops):
    first = NeuralPredictor(epochs=3, random_state=7).fit(rows, log_flops)
    second = NeuralPredictor(epochs=3, random_state=7).fit(rows, log_flops)
    other = NeuralPredictor(epochs=3, random_state=8).fit(rows, log_flops)
    np.testing.assert_array_equal(first.predict(rows), second.predict(rows))
    assert first.loss_curve_ == second.loss_curve_
    assert not np.array_equal(first.predict(rows), other.predict(rows))


def test_fit_leaves_global_generator_alone(rows, log_flops):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    NeuralPredictor(epochs=1, random_state=0).fit(rows, log_flops)
    torch.testing.assert_close(torch.rand(3), expected)


def test_gradients_cleared_every_step(rows, log_flops, monkeypatch):
    calls = []
    original = torch.optim.Adam.zero_grad

    def counting_zero_grad(optimizer, *args, **kwargs):
        calls.append(1)
        return original(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "zero_grad", counting_zero_grad)
    NeuralPredictor(epochs=2, batch_size=10, random_state=0).fit(rows, log_flops)
    # 24 architectures in batches of 10 make 3 steps per epoch.
    assert len(calls) == 2 * 3


def test_prediction_independent_of_batch_padding(fitted, rows):
    """Alone or padded next to larger graphs, an architecture gets the same prediction."""
    together = fitted.predict(rows)
    alone = np.array([fitted.predict(rows.iloc[[index]])[0] for index in range(4)])
    np.testing.assert_allclose(alone, together[:4], rtol=1e-5, atol=1e-6)


def test_resolved_list_and_table_agree(fitted, rows, sampled):
    from_list = fitted.predict([resolved for _, resolved in sampled])
    np.testing.assert_allclose(from_list, fitted.predict(rows), rtol=1e-6)


def test_pinned_phrases_need_no_seed(fitted, rows):
    without_seed = rows.drop(columns=["seed"])
    blank_seed = rows.assign(seed=np.nan)
    np.testing.assert_allclose(fitted.predict(without_seed), fitted.predict(rows), rtol=1e-6)
    np.testing.assert_allclose(fitted.predict(blank_seed), fitted.predict(rows), rtol=1e-6)


def test_constant_target_predicted_constant(rows):
    predictor = NeuralPredictor(epochs=2, random_state=0).fit(rows, np.full(len(rows), 0.25))
    assert predictor.target_std_ == 1.0
    np.testing.assert_allclose(predictor.predict(rows), 0.25, atol=0.5)


def drop_phrase(rows, target):
    return rows.drop(columns=["phrase"]), target


def unknown_dataset(rows, target):
    return rows.assign(dataset="mnist2"), target


def bad_phrase(rows, target):
    return rows.assign(phrase="input conv output"), target


def shorten_target(rows, target):
    return rows, target[:-1]


def blank_first_target(rows, target):
    return rows, np.where(np.arange(len(target)) == 0, np.nan, target)


def empty_table(rows, target):
    return rows.iloc[:0], target[:0]


def list_of_phrases(rows, target):
    return list(rows["phrase"]), target


BAD_FITS = [
    (drop_phrase, CNNGenError, r"lacks the columns \['phrase'\]"),
    (unknown_dataset, DatasetError, "unknown data set 'mnist2'"),
    (bad_phrase, CNNGenError, "line 1"),
    (shorten_target, CNNGenError, "y has shape"),
    (blank_first_target, CNNGenError, "y contains 1 missing"),
    (empty_table, CNNGenError, "X contains no architectures"),
    (list_of_phrases, CNNGenError, r"X contains \['str'\] objects"),
]


@pytest.mark.parametrize(
    ("change", "error", "message"), BAD_FITS, ids=[case[0].__name__ for case in BAD_FITS]
)
def test_bad_fit_input_rejected(rows, log_flops, change, error, message):
    X, y = change(rows, log_flops)
    with pytest.raises(error, match=message):
        NeuralPredictor(epochs=1).fit(X, y)


BAD_PARAMETERS = [
    ({"epochs": 0}, "invalid epochs 0"),
    ({"epochs": 2.5}, "invalid epochs 2.5"),
    ({"batch_size": True}, "invalid batch_size True"),
    ({"learning_rate": 0}, "invalid learning_rate 0"),
    ({"weight_decay": -1e-3}, "invalid weight_decay -0.001"),
    ({"dropout": 1.0}, "invalid dropout 1.0"),
    ({"hidden_units": 0}, "invalid hidden_units 0"),
    ({"num_gcn_layers": None}, "invalid num_gcn_layers None"),
]


@pytest.mark.parametrize(("parameters", "message"), BAD_PARAMETERS)
def test_bad_hyper_parameters_rejected(rows, log_flops, parameters, message):
    with pytest.raises(CNNGenError, match=message):
        NeuralPredictor(**parameters).fit(rows, log_flops)


def test_unavailable_cuda_rejected(rows, log_flops):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(CNNGenError, match="finds no CUDA GPU"):
        NeuralPredictor(epochs=1, device="cuda").fit(rows, log_flops)


def test_scikit_learn_clone_and_params():
    predictor = NeuralPredictor(hidden_units=32, epochs=5, random_state=1)
    copy = clone(predictor)
    assert copy.get_params() == predictor.get_params()
    assert copy.get_params()["hidden_units"] == 32
    assert not hasattr(copy, "network_")


def test_save_load_round_trip(fitted, rows, tmp_path):
    path = fitted.save(tmp_path / "neural.pt")
    loaded = NeuralPredictor.load(path)
    np.testing.assert_array_equal(loaded.predict(rows), fitted.predict(rows))
    assert loaded.get_params() == fitted.get_params()
    assert loaded.loss_curve_ == fitted.loss_curve_
    assert loaded.target_std_ == fitted.target_std_


def test_load_onto_cpu(fitted, rows, tmp_path):
    loaded = NeuralPredictor.load(fitted.save(tmp_path / "neural.pt"), device="cpu")
    assert loaded.device_ == "cpu"
    np.testing.assert_allclose(loaded.predict(rows), fitted.predict(rows), rtol=1e-5)


def test_save_unfitted_rejected(tmp_path):
    with pytest.raises(NotFittedError):
        NeuralPredictor().save(tmp_path / "neural.pt")


def test_save_to_missing_folder_rejected(fitted, tmp_path):
    with pytest.raises(CNNGenError, match="folder .* not found"):
        fitted.save(tmp_path / "missing" / "neural.pt")


def write_payload(path, fitted, **changes):
    payload = {
        "format": neural.FILE_FORMAT,
        "format_version": neural.FILE_FORMAT_VERSION,
        "class": "NeuralPredictor",
        "params": fitted.get_params(),
        "learned": {},
        "state_dict": {},
    }
    payload.update(changes)
    torch.save(payload, path)
    return path


def missing_file(folder, fitted):
    return folder / "absent.pt"


def text_file(folder, fitted):
    (folder / "notes.txt").write_text("not a predictor")
    return folder / "notes.txt"


def other_tensor_file(folder, fitted):
    torch.save({"weights": torch.zeros(2)}, folder / "other.pt")
    return folder / "other.pt"


def pickled_object(folder, fitted):
    """A file with a pickled Python object, which loading with weights_only rejects."""
    torch.save({"format": neural.FILE_FORMAT, "path": Path("x")}, folder / "object.pt")
    return folder / "object.pt"


def newer_version(folder, fitted):
    return write_payload(folder / "newer.pt", fitted, format_version=99)


def other_class(folder, fitted):
    return write_payload(folder / "img.pt", fitted, **{"class": "ImagePredictor"})


BAD_FILES = [
    (missing_file, "not found"),
    (text_file, "is not a CNNGen PyTorch predictor file"),
    (other_tensor_file, "is not a CNNGen PyTorch predictor file"),
    (pickled_object, "is not a CNNGen PyTorch predictor file"),
    (newer_version, "format version 99"),
    (other_class, "class ImagePredictor, not NeuralPredictor"),
]


@pytest.mark.parametrize(("make", "message"), BAD_FILES, ids=[c[0].__name__ for c in BAD_FILES])
def test_load_bad_file_rejected(fitted, tmp_path, make, message):
    with pytest.raises(CNNGenError, match=message):
        NeuralPredictor.load(make(tmp_path, fitted))


def test_import_stays_light():
    code = (
        "import sys, cnngen.predictors.neural, cnngen.predictors.image; "
        "print(sorted({'torch', 'torchvision', 'tensorflow'} & set(sys.modules)))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert output.returncode == 0, output.stderr
    assert output.stdout.strip() == "[]"
