"""Tests of CandidatePool and score_phrases: scoring many architectures without models."""

import numpy as np
import pytest

from cnngen.code_features import code_feature_frame
from cnngen.errors import CNNGenError, checked_integer
from cnngen.features import feature_frame
from cnngen.generation import sampling_config
from cnngen.keras_source import emit_source
from cnngen.metrics import compute_metrics
from cnngen.predictors import (
    DecisionTreePredictor,
    PyCodePredictor,
    RandomForestPredictor,
    score_phrases,
)
from cnngen.predictors.scoring import CandidatePool, pareto_front
from cnngen.predictors.tabular import CHEAP_FEATURES, resolved_feature_table
from cnngen.sampling import sample_many


@pytest.fixture(scope="module")
def resolved_list():
    return [r for _, r in sample_many(5, 40, (8, 8, 1), 10, sampling_config("configured"))]


@pytest.fixture(scope="module")
def table(resolved_list):
    epochs = [1 + i % 3 for i in range(len(resolved_list))]
    return resolved_feature_table(resolved_list, epochs, CHEAP_FEATURES)


@pytest.fixture(scope="module")
def target(resolved_list, table):
    """An energy-like target: FLOPs times epochs, plus a term of the code features."""
    flops = np.array([compute_metrics(r).flops for r in resolved_list], dtype=float)
    return flops * table["epochs"].to_numpy() * 1e-12 + table["code_width"].to_numpy() * 1e-9


@pytest.fixture(scope="module")
def forest(table, target):
    return RandomForestPredictor(n_estimators=20, random_state=0).fit(table, target)


@pytest.fixture(scope="module")
def pool(resolved_list):
    pool = CandidatePool("digits")
    pool.add(resolved_list)
    return pool


def test_pool_features_match_parsed_source(pool, resolved_list):
    """The pool's columns are the structural features and the code features of the files."""
    frame = pool.feature_frame(epochs=3)
    structural = feature_frame(resolved_list, 3)
    parsed = code_feature_frame([emit_source(r) for r in resolved_list])
    assert list(frame.columns) == list(CHEAP_FEATURES)
    np.testing.assert_array_equal(frame[structural.columns].to_numpy(), structural.to_numpy())
    np.testing.assert_array_equal(frame[parsed.columns].to_numpy(), parsed.to_numpy())


@pytest.mark.parametrize("kind", [DecisionTreePredictor, RandomForestPredictor, PyCodePredictor])
def test_pool_scores_equal_predictions_on_the_table(kind, pool, table, target):
    options = {} if kind is DecisionTreePredictor else {"n_estimators": 10}
    predictor = kind(random_state=0, **options).fit(table, target)
    epochs = table["epochs"].tolist()
    np.testing.assert_array_equal(pool.score(predictor, epochs), predictor.predict(table))


def test_epochs_change_forest_scores(pool, forest, table):
    one_epoch, three_epochs = pool.score(forest, 1), pool.score(forest, 3)
    assert one_epoch.shape == three_epochs.shape == (len(table),)
    assert not np.array_equal(one_epoch, three_epochs)


def test_pool_grows_and_scores_again(resolved_list, forest):
    pool = CandidatePool("digits")
    pool.add(resolved_list[:10])
    first = pool.score(forest, 2)
    pool.add(resolved_list[10:25])
    again = pool.score(forest, 2)
    assert len(pool) == 25
    assert len(again) == 25
    np.testing.assert_array_equal(again[:10], first)


def test_sample_draws_the_runs_architectures():
    pool = CandidatePool.sample(6, "digits", seed=9)
    config = sampling_config("configured")
    expected = [r.to_phrase() for _, r in sample_many(9, 6, (8, 8, 1), 10, config)]
    assert pool.phrases() == expected
    assert CandidatePool.sample(6, "digits", seed=9).phrases() == expected
    assert len(pool.architectures) == 6


def test_sample_more_than_one_chunk_keeps_order(monkeypatch):
    from cnngen.predictors import scoring

    monkeypatch.setattr(scoring, "_CHUNK_SIZE", 4)
    pool = CandidatePool.sample(10, "digits", seed=2)
    whole = CandidatePool("digits")
    whole.add(pool.architectures)
    np.testing.assert_array_equal(pool.feature_frame(2), whole.feature_frame(2))


def test_empty_pool_scores_nothing(forest):
    pool = CandidatePool.sample(0, "digits")
    assert pool.score(forest, 2).shape == (0,)
    assert pool.feature_frame(2).shape == (0, len(CHEAP_FEATURES))


@pytest.mark.parametrize(
    ("epochs", "message"),
    [
        (0, "invalid epochs 0"),
        (2.5, "invalid epochs 2.5"),
        (True, "invalid epochs True"),
        ("2", "invalid epochs '2'"),
        ([2, 2], "got 2 epoch counts for 40 candidates"),
    ],
)
def test_invalid_epochs_rejected(pool, forest, epochs, message):
    with pytest.raises(CNNGenError, match=message):
        pool.score(forest, epochs)


@pytest.mark.parametrize(
    ("count", "dataset", "sampling", "message"),
    [
        (-1, "digits", "configured", "invalid count -1"),
        (2.0, "digits", "configured", "invalid count 2.0"),
        (2, "mnist", "configured", "unknown data set 'mnist'"),
        (2, "digits", "uniform", "invalid sampling 'uniform'"),
    ],
)
def test_invalid_sample_arguments_rejected(count, dataset, sampling, message):
    with pytest.raises(CNNGenError, match=message):
        CandidatePool.sample(count, dataset, sampling=sampling)


def test_bad_item_keeps_the_items_before_it(resolved_list):
    pool = CandidatePool("digits")
    with pytest.raises(CNNGenError, match="cannot score a int"):
        pool.add([resolved_list[0], resolved_list[1].to_phrase(), 42, resolved_list[2]])
    assert len(pool) == 2


def test_score_phrases_matches_the_pool(pool, forest, resolved_list):
    phrases = [r.to_phrase() for r in resolved_list]
    np.testing.assert_array_equal(
        score_phrases(forest, phrases, "digits", 2), pool.score(forest, 2)
    )


def test_unfitted_predictor_rejected_before_features(pool):
    with pytest.raises(CNNGenError, match="DecisionTreePredictor is not fitted"):
        pool.score(DecisionTreePredictor(), 2)
    with pytest.raises(CNNGenError, match="cannot score with a str"):
        pool.score("RF", 2)


def test_pareto_front_keeps_undominated_candidates():
    accuracy = [0.5, 0.6, 0.4, 0.6, 0.9, 0.55]
    energy = [1.0, 2.0, 0.5, 3.0, 5.0, 2.0]
    on_front = pareto_front(accuracy, energy)
    assert on_front.tolist() == [True, True, True, False, True, False]


def test_pareto_front_keeps_first_of_identical_candidates():
    on_front = pareto_front([0.7, 0.7, 0.2], [1.0, 1.0, 3.0])
    assert on_front.tolist() == [True, False, False]


def test_pareto_front_of_sampled_scores_is_undominated(pool, forest):
    rng = np.random.default_rng(0)
    accuracy = rng.random(len(pool))
    energy = pool.score(forest, 2)
    on_front = pareto_front(accuracy, energy)
    assert on_front.any()
    for index in np.flatnonzero(on_front):
        dominated = (accuracy >= accuracy[index]) & (energy <= energy[index])
        dominated &= (accuracy > accuracy[index]) | (energy < energy[index])
        assert not dominated.any()


@pytest.mark.parametrize(
    ("accuracy", "energy", "message"),
    [
        ([0.5, 0.6], [1.0], "pass one value of each per candidate"),
        ([0.5, float("nan")], [1.0, 2.0], "missing or infinite"),
        ([[0.5]], [[1.0]], "pass one value of each per candidate"),
    ],
)
def test_pareto_front_bad_input_rejected(accuracy, energy, message):
    with pytest.raises(CNNGenError, match=message):
        pareto_front(accuracy, energy)


@pytest.mark.parametrize("seed", [-3, None, "a", 1.5, True])
def test_invalid_pool_seed_rejected(seed):
    with pytest.raises(CNNGenError, match="invalid seed"):
        CandidatePool("digits", seed=seed)


def test_numpy_integers_accepted(forest):
    pool = CandidatePool.sample(np.int64(3), "digits", seed=np.int64(4))
    assert len(pool) == 3
    np.testing.assert_array_equal(pool.score(forest, np.array(2)), pool.score(forest, 2))


@pytest.mark.parametrize(
    ("items", "message"),
    [("input conv flatten dense output", "pass a list of phrases"), (None, "is a NoneType")],
    ids=["one string", "none"],
)
def test_add_rejects_non_lists(items, message):
    with pytest.raises(CNNGenError, match=message):
        CandidatePool("digits").add(items)


def test_foreign_estimator_rejected(pool, table, target):
    from sklearn.tree import DecisionTreeRegressor

    plain = DecisionTreeRegressor().fit(table.to_numpy(), target)
    with pytest.raises(CNNGenError, match="cannot score with a DecisionTreeRegressor"):
        pool.score(plain, 2)


def test_fit_records_data_sets_and_epochs(table, target):
    predictor = DecisionTreePredictor(random_state=0).fit(table.assign(dataset="digits"), target)
    assert predictor.fit_datasets_ == ["digits"]
    assert predictor.fit_epochs_ == [1, 2, 3]
    without = DecisionTreePredictor(random_state=0).fit(table, target)
    assert without.fit_datasets_ is None


def test_scoring_outside_the_fit_warns(pool, table, target, caplog):
    predictor = DecisionTreePredictor(random_state=0).fit(table.assign(dataset="digits"), target)
    with caplog.at_level("WARNING", logger="cnngen.predictors.scoring"):
        pool.score(predictor, 2)
    assert caplog.records == []
    with caplog.at_level("WARNING", logger="cnngen.predictors.scoring"):
        pool.score(predictor, 7)
    assert "fitted on trainings of 1/2/3 epochs" in caplog.text
    assert "7 epochs" in caplog.text
    caplog.clear()
    other = CandidatePool.sample(3, "fashion_mnist", seed=1)
    with caplog.at_level("WARNING", logger="cnngen.predictors.scoring"):
        other.score(predictor, 2)
    assert "fitted on trainings on digits" in caplog.text
    assert "solved for fashion_mnist" in caplog.text


def test_pareto_front_non_numbers_rejected():
    with pytest.raises(CNNGenError, match="must be numbers"):
        pareto_front(["a"], ["b"])


def test_pareto_front_of_nothing_is_empty():
    assert pareto_front([], []).shape == (0,)


@pytest.mark.parametrize(
    ("value", "minimum", "message"),
    [
        (0, 1, "expected a positive integer"),
        (-1, 0, "expected a non-negative integer"),
        (2, 3, "expected an integer >= 3"),
        (2.0, 0, "invalid count 2.0"),
        (True, 0, "invalid count True"),
    ],
)
def test_checked_integer_rejects(value, minimum, message):
    with pytest.raises(CNNGenError, match=message):
        checked_integer("count", value, minimum)


def test_checked_integer_returns_python_int():
    value = checked_integer("count", np.int64(4), 0)
    assert value == 4
    assert type(value) is int
