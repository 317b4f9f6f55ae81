"""Tests of cnngen.predictors on features of sampled architectures."""

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from cnngen.errors import CNNGenError
from cnngen.features import PAPER_FEATURES, feature_frame
from cnngen.predictors import PREDICTORS, DecisionTreePredictor, make_predictor
from cnngen.predictors import tree as tree_module
from cnngen.sampling import sample_many


@pytest.fixture(scope="module")
def resolved_list():
    return [resolved for _, resolved in sample_many(0, 30, (8, 8, 1), 10)]


@pytest.fixture(scope="module")
def features(resolved_list):
    epochs = [1 + i % 3 for i in range(len(resolved_list))]
    return feature_frame(resolved_list, epochs)


@pytest.fixture(scope="module")
def energy_kwh(features):
    """A target that depends on PAPER_FEATURES only: FLOPs times epochs."""
    return (features["flops"] * features["epochs"] * 1e-12).to_numpy()


@pytest.fixture(scope="module")
def fitted(features, energy_kwh):
    return DecisionTreePredictor(random_state=0).fit(features, energy_kwh)


def test_fit_returns_self_with_learned_attributes(features, energy_kwh):
    predictor = DecisionTreePredictor(random_state=0)
    assert predictor.fit(features, energy_kwh) is predictor
    assert predictor.n_features_in_ == 4
    assert list(predictor.feature_names_in_) == list(PAPER_FEATURES)
    assert predictor.tree_.get_depth() >= 1


def test_unfitted_predictor_has_no_learned_attributes():
    predictor = DecisionTreePredictor()
    assert not hasattr(predictor, "tree_")
    with pytest.raises(NotFittedError):
        predictor.predict(np.zeros((1, 4)))


def test_grown_tree_reproduces_training_targets(fitted, features, energy_kwh):
    np.testing.assert_allclose(fitted.predict(features), energy_kwh)


def test_predict_ignores_extra_columns_and_order(fitted, features):
    shuffled = features[list(reversed(features.columns))]
    np.testing.assert_array_equal(fitted.predict(shuffled), fitted.predict(features))


def test_predict_accepts_array_in_feature_order(fitted, features):
    array = features[list(PAPER_FEATURES)].to_numpy()
    np.testing.assert_array_equal(fitted.predict(array), fitted.predict(features))


def test_same_random_state_same_predictions(features):
    target = features["params"].to_numpy() % 7
    first = DecisionTreePredictor(max_depth=3, random_state=5).fit(features, target)
    second = DecisionTreePredictor(max_depth=3, random_state=5).fit(features, target)
    np.testing.assert_array_equal(first.predict(features), second.predict(features))


def test_features_helper_selects_predictor_columns(resolved_list):
    predictor = DecisionTreePredictor(feature_names=("flops", "num_merges"))
    frame = predictor.features(resolved_list[:3], epochs=2)
    assert list(frame.columns) == ["flops", "num_merges"]
    assert len(frame) == 3


def test_fit_on_other_features(features, energy_kwh):
    names = ("flops", "epochs", "activation_values")
    predictor = DecisionTreePredictor(feature_names=names, random_state=0)
    predictor.fit(features, energy_kwh)
    assert list(predictor.feature_names_in_) == list(names)


def test_scikit_learn_clone_and_params():
    predictor = DecisionTreePredictor(max_depth=4, random_state=1)
    copy = clone(predictor)
    assert copy.get_params() == predictor.get_params()
    assert copy.get_params()["max_depth"] == 4
    assert copy.set_params(min_samples_leaf=2).min_samples_leaf == 2


def test_grid_search_runs(features, energy_kwh):
    search = GridSearchCV(
        DecisionTreePredictor(random_state=0), {"max_depth": [2, None]}, cv=3, error_score="raise"
    )
    search.fit(features, energy_kwh)
    assert search.best_params_["max_depth"] in (2, None)


def drop_flops(features, target):
    return features.drop(columns=["flops"]), target


def shorten_target(features, target):
    return features, target[:-1]


def blank_first_target(features, target):
    return features, np.where(np.arange(len(target)) == 0, np.nan, target)


def blank_params(features, target):
    return features.assign(params=np.nan), target


def keep_two_columns(features, target):
    return features[["flops", "params"]].to_numpy(), target


BAD_FITS = [
    (drop_flops, r"features \['flops'\] are missing"),
    (shorten_target, "y has shape"),
    (blank_first_target, "y contains 1 missing"),
    (blank_params, "features contain 30 missing"),
    (keep_two_columns, r"X has shape \(30, 2\)"),
]


@pytest.mark.parametrize(("change", "message"), BAD_FITS, ids=[c[0].__name__ for c in BAD_FITS])
def test_bad_fit_input_rejected(features, energy_kwh, change, message):
    X, y = change(features, energy_kwh)
    with pytest.raises(CNNGenError, match=message):
        DecisionTreePredictor().fit(X, y)


@pytest.mark.parametrize("names", [(), ("flops", "colour"), "depthh"])
def test_unknown_feature_names_rejected(features, energy_kwh, names):
    with pytest.raises(CNNGenError, match="invalid feature_names"):
        DecisionTreePredictor(feature_names=names).fit(features, energy_kwh)


def test_save_load_round_trip(fitted, features, tmp_path):
    path = fitted.save(tmp_path / "dt.joblib")
    loaded = DecisionTreePredictor.load(path)
    np.testing.assert_array_equal(loaded.predict(features), fitted.predict(features))
    assert loaded.get_params() == fitted.get_params()


def test_save_unfitted_rejected(tmp_path):
    with pytest.raises(NotFittedError):
        DecisionTreePredictor().save(tmp_path / "dt.joblib")


def test_save_to_missing_folder_rejected(fitted, tmp_path):
    with pytest.raises(CNNGenError, match="could not write predictor file"):
        fitted.save(tmp_path / "missing" / "dt.joblib")


def write_payload(path, fitted, **changes):
    payload = {
        "format": tree_module.FILE_FORMAT,
        "format_version": tree_module.FILE_FORMAT_VERSION,
        "class": "DecisionTreePredictor",
        "cnngen_version": "0.1.0",
        "sklearn_version": "1.9.1",
        "estimator": fitted,
    }
    payload.update(changes)
    joblib.dump(payload, path)
    return path


def missing_file(folder, fitted):
    return folder / "absent.joblib"


def text_file(folder, fitted):
    (folder / "notes.txt").write_text("not a predictor")
    return folder / "notes.txt"


def other_pickle(folder, fitted):
    joblib.dump({"weights": [1, 2]}, folder / "other.joblib")
    return folder / "other.joblib"


def bare_estimator(folder, fitted):
    joblib.dump(fitted, folder / "bare.joblib")
    return folder / "bare.joblib"


def newer_version(folder, fitted):
    return write_payload(folder / "newer.joblib", fitted, format_version=99)


def other_class(folder, fitted):
    return write_payload(folder / "gcn.joblib", fitted, **{"class": "NeuralPredictor"})


BAD_FILES = [
    (missing_file, "not found"),
    (text_file, "is not a CNNGen predictor file"),
    (other_pickle, "is not a CNNGen predictor file"),
    (bare_estimator, "is not a CNNGen predictor file"),
    (newer_version, "format version 99"),
    (other_class, "contains a NeuralPredictor"),
]


@pytest.mark.parametrize(("make", "message"), BAD_FILES, ids=[c[0].__name__ for c in BAD_FILES])
def test_load_bad_file_rejected(fitted, tmp_path, make, message):
    path = make(tmp_path, fitted)
    with pytest.raises(CNNGenError, match=message):
        DecisionTreePredictor.load(path)


def test_load_other_sklearn_version_warns(fitted, features, tmp_path, caplog):
    path = write_payload(tmp_path / "old.joblib", fitted, sklearn_version="0.24.0")
    loaded = DecisionTreePredictor.load(path)
    assert "written with scikit-learn 0.24.0" in caplog.text
    np.testing.assert_array_equal(loaded.predict(features), fitted.predict(features))


def test_make_predictor_by_name():
    predictor = make_predictor("DT", random_state=3)
    assert isinstance(predictor, DecisionTreePredictor)
    assert predictor.random_state == 3
    assert PREDICTORS["DT"] is DecisionTreePredictor


@pytest.mark.parametrize(
    ("name", "message"), [("dt", "Did you mean 'DT'"), ("GCN", "expected one of: DT")]
)
def test_make_predictor_unknown_name(name, message):
    with pytest.raises(CNNGenError, match=message):
        make_predictor(name)


def test_tree_independent_of_target_unit(features):
    """Targets of about 1e-10 give the same tree as the same values 1e15 times larger."""
    target = features["flops"].to_numpy() * 1.0
    in_joules = DecisionTreePredictor(random_state=0).fit(features, target)
    in_kwh = DecisionTreePredictor(random_state=0).fit(features, target * 1e-15)
    np.testing.assert_allclose(in_kwh.predict(features), in_joules.predict(features) * 1e-15)
