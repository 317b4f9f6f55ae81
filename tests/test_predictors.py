"""Tests of cnngen.predictors on features of sampled architectures."""

import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from cnngen.code_features import CODE_FEATURE_COLUMNS
from cnngen.errors import CNNGenError
from cnngen.features import FEATURE_COLUMNS, PAPER_FEATURES, feature_frame
from cnngen.predictors import (
    PREDICTORS,
    DecisionTreePredictor,
    GradientBoostingPredictor,
    PyCodePredictor,
    RandomForestPredictor,
    load_predictor,
    make_predictor,
    score_phrases,
)
from cnngen.predictors import files as files_module
from cnngen.predictors.tabular import CHEAP_FEATURES, resolved_feature_table
from cnngen.proxies import PROXY_COLUMNS
from cnngen.sampling import sample_architecture, sample_many


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
        "format": files_module.FILE_FORMAT,
        "format_version": files_module.FILE_FORMAT_VERSION,
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


def torch_file(folder, fitted):
    """A zip archive, the container of torch.save, that contains no predictor."""
    import zipfile

    with zipfile.ZipFile(folder / "archive.pt", "w") as archive:
        archive.writestr("data.txt", "not a predictor")
    return folder / "archive.pt"


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
    ("name", "message"),
    [("dt", "Did you mean 'DT'"), ("GCN", "expected one of: DT, Py_code, RF, GB, Neural, Img")],
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


# The other feature predictors: Py_code, RF and GB.

FAST_OPTIONS = {
    "DT": {},
    "Py_code": {"n_estimators": 20},
    "RF": {"n_estimators": 10},
    "GB": {"n_estimators": 20},
}
TABULAR = list(FAST_OPTIONS)


@pytest.fixture(scope="module")
def cheap_table(resolved_list):
    return resolved_feature_table(resolved_list, 2, CHEAP_FEATURES)


@pytest.fixture(scope="module")
def log_flops(cheap_table):
    return np.log10(cheap_table["flops"].to_numpy())


@pytest.mark.parametrize("name", TABULAR)
def test_predictor_fits_and_predicts(name, cheap_table, log_flops):
    predictor = make_predictor(name, random_state=0, **FAST_OPTIONS[name])
    assert predictor.fit(cheap_table, log_flops) is predictor
    predicted = predictor.predict(cheap_table)
    assert predicted.shape == (len(cheap_table),)
    assert np.corrcoef(predicted, log_flops)[0, 1] > 0.5


@pytest.mark.parametrize(
    ("cls", "columns"),
    [
        (DecisionTreePredictor, PAPER_FEATURES),
        (PyCodePredictor, CODE_FEATURE_COLUMNS),
        (RandomForestPredictor, CHEAP_FEATURES),
        (GradientBoostingPredictor, CHEAP_FEATURES),
    ],
)
def test_default_feature_columns(cls, columns, cheap_table, log_flops):
    predictor = cls(random_state=0)
    if "n_estimators" in predictor.get_params():
        predictor.set_params(n_estimators=5)
    predictor.fit(cheap_table, log_flops)
    assert list(predictor.feature_names_in_) == list(columns)


@pytest.mark.parametrize("cls", [RandomForestPredictor, GradientBoostingPredictor])
def test_ensembles_use_proxy_columns_present(cls, cheap_table, log_flops):
    with_proxies = cheap_table.assign(**{name: log_flops + 1 for name in PROXY_COLUMNS})
    predictor = cls(n_estimators=5, random_state=0).fit(with_proxies, log_flops)
    assert list(predictor.feature_names_in_) == [*CHEAP_FEATURES, *PROXY_COLUMNS]
    with pytest.raises(CNNGenError, match=r"features \['synflow', 'naswot', 'grad_norm'\]"):
        predictor.predict(cheap_table)


def test_py_code_ignores_proxy_columns(cheap_table, log_flops):
    with_proxies = cheap_table.assign(synflow=log_flops)
    predictor = PyCodePredictor(n_estimators=5, random_state=0).fit(with_proxies, log_flops)
    assert "synflow" not in predictor.feature_names_in_


@pytest.mark.parametrize("name", TABULAR)
def test_same_random_state_same_result(name, cheap_table, log_flops):
    first = make_predictor(name, random_state=4, **FAST_OPTIONS[name]).fit(cheap_table, log_flops)
    again = make_predictor(name, random_state=4, **FAST_OPTIONS[name]).fit(cheap_table, log_flops)
    np.testing.assert_array_equal(first.predict(cheap_table), again.predict(cheap_table))


@pytest.mark.parametrize("name", TABULAR)
def test_save_and_load_predictor_of_any_class(name, cheap_table, log_flops, tmp_path):
    predictor = make_predictor(name, random_state=0, **FAST_OPTIONS[name])
    predictor.fit(cheap_table, log_flops)
    path = predictor.save(tmp_path / f"{name}.joblib")
    for loaded in (load_predictor(path), type(predictor).load(path)):
        assert type(loaded) is type(predictor)
        np.testing.assert_array_equal(loaded.predict(cheap_table), predictor.predict(cheap_table))


def test_load_with_wrong_class_rejected(cheap_table, log_flops, tmp_path):
    path = PyCodePredictor(n_estimators=5).fit(cheap_table, log_flops).save(tmp_path / "p.joblib")
    with pytest.raises(
        CNNGenError, match="contains a PyCodePredictor, not a RandomForestPredictor"
    ):
        RandomForestPredictor.load(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [(text_file, "is not a CNNGen predictor file"), (torch_file, "PyTorch predictor file")],
    ids=["text", "zip"],
)
def test_load_predictor_bad_file(make, message, fitted, tmp_path):
    with pytest.raises(CNNGenError, match=message):
        load_predictor(make(tmp_path, fitted))


def test_make_predictor_rejects_unknown_option():
    with pytest.raises(CNNGenError, match=r"invalid options \['trees'\] for predictor 'RF'"):
        make_predictor("RF", trees=3)


def test_make_predictor_passes_options():
    predictor = make_predictor("GB", random_state=1, n_estimators=7)
    assert predictor.n_estimators == 7
    assert predictor.random_state == 1


def stored_rows(resolved_list):
    return pd.DataFrame(
        {
            "phrase": [r.to_phrase() for r in resolved_list],
            "seed": pd.array([None] * len(resolved_list), dtype="Int64"),
            "dataset": "digits",
            "epochs": 2,
        }
    )


def test_features_computed_from_stored_rows(resolved_list, cheap_table, log_flops):
    predictor = RandomForestPredictor(n_estimators=5, random_state=0).fit(cheap_table, log_flops)
    from_rows = predictor.predict(stored_rows(resolved_list))
    np.testing.assert_array_equal(from_rows, predictor.predict(cheap_table))


def test_rows_without_phrases_rejected(cheap_table, log_flops):
    predictor = PyCodePredictor(n_estimators=5).fit(cheap_table, log_flops)
    with pytest.raises(CNNGenError, match="pass a table with phrase, seed, dataset and epochs"):
        predictor.predict(cheap_table[list(FEATURE_COLUMNS)])


# Scoring many architectures without building models.


@pytest.fixture(scope="module")
def energy_tree(cheap_table, log_flops):
    return DecisionTreePredictor(random_state=0).fit(cheap_table, log_flops)


def test_score_phrases_accepts_every_kind_of_item(energy_tree, resolved_list, cheap_table):
    expected = energy_tree.predict(cheap_table.iloc[:3])
    items = [
        resolved_list[0].to_phrase(),
        resolved_list[1].architecture,
        resolved_list[2],
    ]
    np.testing.assert_array_equal(score_phrases(energy_tree, items, "digits", 2), expected)


def test_score_phrases_solves_bare_architectures(energy_tree):
    bare = [sample_architecture(seed) for seed in range(4)]
    scores = score_phrases(energy_tree, bare, "fashion_mnist", 2, seed=3)
    again = score_phrases(energy_tree, bare, "fashion_mnist", 2, seed=3)
    assert scores.shape == (4,)
    np.testing.assert_array_equal(scores, again)


@pytest.mark.parametrize(
    ("items", "dataset", "message"),
    [
        (["input conv flatten dense"], "digits", "invalid phrase|expected|missing"),
        ([42], "digits", "cannot score a int"),
        (["input conv flatten dense output"], "mnist", "unknown data set 'mnist'"),
    ],
    ids=["bad phrase", "other object", "unknown data set"],
)
def test_score_phrases_bad_input(energy_tree, items, dataset, message):
    with pytest.raises(CNNGenError, match=message):
        score_phrases(energy_tree, items, dataset, 2)


def test_score_phrases_rejects_other_input_shape(energy_tree, resolved_list):
    with pytest.raises(CNNGenError, match="not for data set 'cifar10'"):
        score_phrases(energy_tree, resolved_list[:1], "cifar10", 2)


def test_score_phrases_unfitted_rejected(resolved_list):
    with pytest.raises(CNNGenError, match="is not fitted"):
        score_phrases(RandomForestPredictor(), resolved_list[:2], "digits", 2)


def test_score_phrases_with_proxies_rejected(cheap_table, log_flops, resolved_list):
    table = cheap_table.assign(**{name: log_flops for name in PROXY_COLUMNS})
    predictor = RandomForestPredictor(n_estimators=5).fit(table, log_flops)
    with pytest.raises(CNNGenError, match="uses the proxies"):
        score_phrases(predictor, resolved_list[:2], "digits", 2)


def test_scoring_imports_no_tensorflow(cheap_table, log_flops, tmp_path):
    """Load saved DT, RF, GB and Py_code predictors and score phrases in a fresh process."""
    for name in TABULAR:
        predictor = make_predictor(name, random_state=0, **FAST_OPTIONS[name])
        predictor.fit(cheap_table, log_flops).save(tmp_path / f"{name}.joblib")
    script = textwrap.dedent(
        f"""
        import sys
        from cnngen.predictors import load_predictor, score_phrases
        from cnngen.sampling import sample_many

        resolved = [r for _, r in sample_many(7, 20, (28, 28, 1), 10)]
        phrases = [r.to_phrase() for r in resolved]
        for name in {TABULAR!r}:
            predictor = load_predictor({str(tmp_path)!r} + f"/{{name}}.joblib")
            assert len(score_phrases(predictor, resolved, "fashion_mnist", 2)) == 20
            assert len(score_phrases(predictor, phrases, "fashion_mnist", 2)) == 20
        heavy = [m for m in ("tensorflow", "keras", "torch") if m in sys.modules]
        print("heavy modules:", heavy)
        sys.exit(1 if heavy else 0)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_load_predictor_reads_torch_file(resolved_list, log_flops, tmp_path):
    pytest.importorskip("torch")
    from cnngen.predictors import NeuralPredictor

    predictor = NeuralPredictor(epochs=1, random_state=0, device="cpu")
    predictor.fit(resolved_list[:6], log_flops[:6])
    path = predictor.save(tmp_path / "neural.pt")
    loaded = load_predictor(path)
    assert type(loaded) is NeuralPredictor
    np.testing.assert_allclose(
        loaded.predict(resolved_list[:6]), predictor.predict(resolved_list[:6]), rtol=1e-6
    )


def test_repeated_feature_column_rejected(cheap_table, log_flops):
    repeated = pd.concat([cheap_table, cheap_table[["epochs"]]], axis=1)
    with pytest.raises(CNNGenError, match=r"several columns named \['epochs'\]"):
        DecisionTreePredictor(random_state=0).fit(repeated, log_flops)


def test_torch_file_without_torch_is_one_error(tmp_path, monkeypatch):
    import importlib.util
    import zipfile

    path = tmp_path / "neural.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.pkl", b"not a model")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "torch" else real_find_spec(name, *args),
    )
    with pytest.raises(CNNGenError, match="PyTorch is not installed"):
        load_predictor(path)


def test_folder_as_predictor_file_rejected(tmp_path):
    with pytest.raises(CNNGenError, match="is a folder, not a predictor file"):
        load_predictor(tmp_path)
