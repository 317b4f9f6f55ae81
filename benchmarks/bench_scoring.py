"""Cost of scoring sampled architectures with DT and RF, against training one architecture.

Run: .venv/bin/python benchmarks/bench_scoring.py [--count 100000] [--parse-count 5000]
     [--results PATH] [--skip-training]

The script samples ``count`` architectures for Fashion-MNIST as a search keeps them
(resolved architecture objects), then times, each on all of them:

* sampling (drawing and solving the architectures);
* computing their structural and code features from the objects, once, into a
  ``CandidatePool`` (no source emitted, no TensorFlow);
* predicting with DT and with RF from the pool, which is what each later scoring costs;
* printing their phrases, and parsing and solving ``parse_count`` of them again, as a search
  that stores phrases would (reported separately, because a search that keeps objects skips
  it, and on a subset, because ANTLR's Python runtime is slow);
* the code features of the same subset, read from the layer graph and parsed from the
  emitted source, and the mean number of Keras layers per architecture.

DT and RF are fitted on the reference results (``--results``: a results.parquet, a
results.sqlite or a run directory) when given, else on 400 sampled architectures with
log10(FLOPs) as the target, which costs the same to predict. RF predicts on one core
(``n_jobs=None``), then on every core (``n_jobs=-1``). Scoring imports no TensorFlow.
Architectures are drawn with the "configured" sampling preset, as the runs draw them.
Last, unless ``--skip-training``, it trains a0001 of the reference protocol
(parameters/reference_fashion_mnist.yaml: seed 2024, 1,500 training images, batches of 32,
Adam) for two epochs with Keras. It prints each cost as a share of both epochs and, for a
reference export, of the median first and second epochs of its trainings. The first epoch
also builds and traces the training step, so the second is the stricter baseline.
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from cnngen.code_features import architecture_code_features, code_features  # noqa: E402
from cnngen.datasets import get_dataset_info  # noqa: E402
from cnngen.generation import sampling_config  # noqa: E402
from cnngen.grammar import parse  # noqa: E402
from cnngen.keras_source import emit_source  # noqa: E402
from cnngen.metrics import compute_metrics  # noqa: E402
from cnngen.predictors import DecisionTreePredictor, RandomForestPredictor  # noqa: E402
from cnngen.predictors.scoring import CandidatePool  # noqa: E402
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
    # The same forest (same seed, same trees), predicting on every core.
    rf_all_cores = RandomForestPredictor(random_state=0, n_jobs=-1).fit(frame, target)
    return dt, rf, rf_all_cores


def reference_epoch_medians(results: str) -> dict[str, float]:
    """Return the median duration of each epoch of the trainings beside ``--results``.

    Reads the ``epochs.parquet`` of a reference export; a run directory gives nothing.
    """
    import pandas as pd

    path = Path(results)
    epochs_file = (path if path.is_dir() else path.parent) / "epochs.parquet"
    if not epochs_file.is_file():
        return {}
    medians = pd.read_parquet(epochs_file).groupby("epoch")["duration_s"].median()
    return {f"{path.name} median epoch {epoch}": float(value) for epoch, value in medians.items()}


def train_two_epochs(info) -> tuple[float, float]:
    """Train the reference protocol's first architecture; return the time of each epoch.

    The first epoch includes the building and tracing of the training step, the second is
    the steady cost of one epoch.
    """
    import keras

    from cnngen.datasets import load_dataset

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

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
    timer = EpochTimer()
    model.fit(
        data.x_train, data.y_train, batch_size=REFERENCE_BATCH_SIZE, epochs=2, verbose=0,
        callbacks=[timer],
    )  # fmt: skip
    return timer.seconds[0], timer.seconds[1]


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
    dt, rf, rf_all_cores = fitted_predictors(args.results, info)
    count = args.count
    shape, classes = info.input_shape, info.num_classes

    configured = sampling_config("configured")
    sampled, sample_s = timed(
        "sample and solve",
        count,
        lambda: [r for _, r in sample_many(0, count, shape, classes, configured)],
    )

    def build_pool():
        pool = CandidatePool(info.name)
        pool.add(sampled)
        return pool

    pool, features_s = timed("features into a CandidatePool (once)", count, build_pool)
    dt_scores, dt_s = timed("DT: prediction from the pool", count, lambda: pool.score(dt, 2))
    rf_scores, rf_s = timed("RF: prediction from the pool", count, lambda: pool.score(rf, 2))
    parallel_scores, parallel_s = timed(
        f"RF on {os.cpu_count()} cores: prediction from the pool",
        count,
        lambda: pool.score(rf_all_cores, 2),
    )
    assert np.allclose(parallel_scores, rf_scores)
    tensorflow = "tensorflow" in sys.modules
    print(f"TensorFlow imported while scoring: {tensorflow}")
    # ru_maxrss is in KiB on Linux.
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory with the {count:,} candidates and their pool: {peak_mib:,.0f} MiB")
    assert len(dt_scores) == len(rf_scores) == count

    phrases, _ = timed("print phrases", count, lambda: [r.to_phrase() for r in sampled])
    # ANTLR's Python runtime parses slowly, so parsing is timed on a subset.
    subset = phrases[: args.parse_count]
    timed(
        f"parse and solve {len(subset):,} phrases (separately)",
        len(subset),
        lambda: [solve(parse(phrase), shape, classes) for phrase in subset],
    )
    print(f"features cost {features_s / sample_s:.2f} times sampling and solving")
    layers = np.mean([len(resolved.layers) for resolved in sampled])
    print(f"Keras layers per architecture: {layers:.1f} on average")
    # Code features two ways, on the same subset: from the layer graph (what the pool does),
    # and by emitting the source and parsing it with ast (what a stored file costs).
    code_subset = sampled[: args.parse_count]
    _, graph_s = timed(
        "code features from the layer graph",
        len(code_subset),
        lambda: [architecture_code_features(resolved) for resolved in code_subset],
    )
    _, source_s = timed(
        "code features from emitted, parsed source",
        len(code_subset),
        lambda: [code_features(emit_source(resolved)) for resolved in code_subset],
    )
    print(f"parsed source costs {source_s / graph_s:.1f} times the layer graph")
    baselines = {}
    if not args.skip_training:
        first_s, second_s = train_two_epochs(info)
        baselines["a0001 epoch 1"], baselines["a0001 epoch 2"] = first_s, second_s
    if args.results:
        baselines.update(reference_epoch_medians(args.results))
    if baselines:
        print("\nepochs to compare with (seconds):")
        for name, seconds in baselines.items():
            print(f"  {name:<42}{seconds:>10.2f}")
        print(f"\nshare of each epoch, for {count:,} architectures:")
        print(f"  {'':<42}" + "".join(f"{name:>28}" for name in baselines))
        for label, seconds in (
            ("DT prediction from the pool", dt_s),
            ("RF prediction from the pool", rf_s),
            (f"RF on {os.cpu_count()} cores, from the pool", parallel_s),
            ("features, once per architecture", features_s),
            ("DT, features included", features_s + dt_s),
            ("RF, features included", features_s + rf_s),
        ):
            shares = "".join(f"{seconds / base:>28.2f}" for base in baselines.values())
            print(f"  {label:<42}{shares}")


if __name__ == "__main__":
    main()
