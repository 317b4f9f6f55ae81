"""Cost of scoring sampled architectures with DT and RF, against training one architecture.

Run: .venv/bin/python benchmarks/bench_scoring.py [--count 100000] [--parse-count 5000]
     [--results PATH] [--skip-training]

The script samples ``count`` architectures for Fashion-MNIST as a search keeps them
(resolved architecture objects), then times, each on all of them:

* sampling (drawing and solving the architectures);
* printing their phrases, and parsing and solving ``parse_count`` of them again, as a search
  that stores phrases would (reported separately, because a search that keeps objects skips
  it, and on a subset, because ANTLR's Python runtime is slow);
* computing DT's features (the structural features) and predicting with DT;
* computing RF's features (structural and code features, the code emitted and parsed with
  ``ast``) and predicting with RF.

DT and RF are fitted on the reference results (``--results``: a results.parquet, a
results.sqlite or a run directory) when given, else on 400 sampled architectures with
log10(FLOPs) as the target, which costs the same to predict. Scoring imports no TensorFlow.
Architectures are drawn with the "configured" sampling preset, as the runs draw them. Last,
unless ``--skip-training``, it trains a0001 of the reference protocol
(parameters/reference_fashion_mnist.yaml: seed 2024, 1,500 training images, batches of 32,
Adam) for one epoch with Keras and reports the time of that epoch, to compare the cost of
scoring with the cost of measuring.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from cnngen.datasets import get_dataset_info  # noqa: E402
from cnngen.generation import sampling_config  # noqa: E402
from cnngen.grammar import parse  # noqa: E402
from cnngen.metrics import compute_metrics  # noqa: E402
from cnngen.predictors import (  # noqa: E402
    DecisionTreePredictor,
    RandomForestPredictor,
    score_phrases,
)
from cnngen.sampling import architecture_seeds, sample_architecture, sample_many  # noqa: E402
from cnngen.solver import solve  # noqa: E402

REFERENCE_SEED = 2024
REFERENCE_MAX_TRAIN = 1500
REFERENCE_BATCH_SIZE = 32


def timed(label: str, count: int, function):
    """Run function, print its time in total and per architecture, and return its result."""
    start = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - start
    print(f"{label:<44}{seconds:>10.2f} s {1e6 * seconds / count:>10.1f} us/arch")
    return result, seconds


def fitted_predictors(results: str | None, info):
    """Return DT and RF fitted on the reference results, or on a FLOPs target of samples."""
    if results:
        from cnngen.evaluation import read_results, target_values

        frame = read_results(results)
        frame = frame[frame["status"] == "ok"].reset_index(drop=True)
        target = target_values(frame, "energy_kwh").to_numpy()
        print(f"predictors fitted on {len(frame)} ok trainings of {results} (target energy_kwh)")
    else:
        sampled = [r for _, r in sample_many(1, 400, info.input_shape, info.num_classes)]
        from cnngen.predictors.tabular import CHEAP_FEATURES, resolved_feature_table

        frame = resolved_feature_table(sampled, 2, CHEAP_FEATURES)
        target = np.log10([compute_metrics(r).flops for r in sampled])
        print("predictors fitted on 400 sampled architectures (target log10 FLOPs)")
    dt = DecisionTreePredictor(random_state=0).fit(frame, target)
    rf = RandomForestPredictor(random_state=0).fit(frame, target)
    return dt, rf


def train_one_epoch(info) -> float:
    """Train the reference protocol's first architecture for one epoch; return the fit time."""
    import keras

    from cnngen.datasets import load_dataset
    from cnngen.keras_source import emit_source

    data = load_dataset(info.name, seed=REFERENCE_SEED, max_train=REFERENCE_MAX_TRAIN, max_test=500)
    # The run's first architecture, drawn as notebook 01 draws it.
    arch_seed = architecture_seeds(REFERENCE_SEED, 1)[0]
    architecture = sample_architecture(arch_seed, sampling_config("configured"))
    resolved = solve(architecture, info.input_shape, info.num_classes, arch_seed)
    namespace = {}
    exec(compile(emit_source(resolved), "<architecture>", "exec"), namespace)
    keras.utils.set_random_seed(REFERENCE_SEED)
    model = namespace["build_model"]()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"reference architecture: {compute_metrics(resolved).flops:,} FLOPs")
    start = time.perf_counter()
    model.fit(data.x_train, data.y_train, batch_size=REFERENCE_BATCH_SIZE, epochs=1, verbose=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="architectures to score")
    parser.add_argument(
        "--parse-count", type=int, default=5_000, help="phrases to parse again (a subset)"
    )
    parser.add_argument("--results", help="reference results to fit DT and RF on")
    parser.add_argument("--skip-training", action="store_true", help="skip the Keras epoch")
    args = parser.parse_args()

    info = get_dataset_info("fashion_mnist")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    dt, rf = fitted_predictors(args.results, info)
    count = args.count
    shape, classes = info.input_shape, info.num_classes

    configured = sampling_config("configured")
    sampled, _ = timed(
        "sample and solve",
        count,
        lambda: [r for _, r in sample_many(0, count, shape, classes, configured)],
    )
    phrases, _ = timed("print phrases", count, lambda: [r.to_phrase() for r in sampled])
    # ANTLR's Python runtime parses slowly, so parsing is timed on a subset.
    subset = phrases[: args.parse_count]
    timed(
        f"parse and solve {len(subset):,} phrases (separately)",
        len(subset),
        lambda: [solve(parse(phrase), shape, classes) for phrase in subset],
    )
    _, dt_s = timed(
        "DT: features and prediction", count, lambda: score_phrases(dt, sampled, info.name, 2)
    )
    _, rf_s = timed(
        "RF: features and prediction", count, lambda: score_phrases(rf, sampled, info.name, 2)
    )
    tensorflow = "tensorflow" in sys.modules
    print(f"TensorFlow imported while scoring: {tensorflow}")
    if not args.skip_training:
        epoch_s = train_one_epoch(info)
        print(f"{'one training epoch of one architecture':<44}{epoch_s:>10.2f} s")
        print(f"architectures scored by DT in that time: {count * epoch_s / dt_s:,.0f}")
        print(f"architectures scored by RF in that time: {count * epoch_s / rf_s:,.0f}")


if __name__ == "__main__":
    main()
