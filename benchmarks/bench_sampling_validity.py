"""Every sampled architecture solves, for each supported input shape, and its counts match Keras.

Run: .venv/bin/python benchmarks/bench_sampling_validity.py [--count 10000] [--build 100]

For each of 8x8x1, 28x28x1 and 32x32x3, samples --count architectures, solves them, checks that
no spatial size falls below 1 and that merged branches match, and builds --build of them in
Keras to compare the analytic parameter and layer counts with count_params() and len(layers).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cnngen.keras_source import emit_source  # noqa: E402
from cnngen.metrics import compute_metrics  # noqa: E402
from cnngen.sampling import architecture_seeds, sample_resolved  # noqa: E402

SHAPES = [(8, 8, 1), (28, 28, 1), (32, 32, 3)]


def check_shapes(resolved) -> None:
    for layer in resolved.layers:
        assert min(layer.output_shape) >= 1, layer
        if layer.class_name == "Add":
            assert layer.input_shapes[0] == layer.input_shapes[1], layer
        if layer.class_name == "Concatenate":
            assert layer.input_shapes[0][:2] == layer.input_shapes[1][:2], layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--build", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import keras

    for shape in SHAPES:
        start = time.perf_counter()
        seeds = architecture_seeds(args.seed, args.count)
        max_params = 0
        for seed in seeds:
            resolved = sample_resolved(seed, shape, 10)
            check_shapes(resolved)
            max_params = max(max_params, compute_metrics(resolved).params)
        solve_s = time.perf_counter() - start
        mismatches = 0
        for seed in seeds[: args.build]:
            resolved = sample_resolved(seed, shape, 10)
            namespace: dict = {}
            exec(compile(emit_source(resolved), "<emitted>", "exec"), namespace)
            model = namespace["build_model"](shape, 10)
            metrics = compute_metrics(resolved)
            mismatches += metrics.params != model.count_params() or metrics.num_layers != len(model.layers)
            keras.backend.clear_session()
        print(
            f"{shape}: {args.count} sampled and solved in {solve_s:.0f} s, all valid; "
            f"largest {max_params:,} params; {args.build} built in Keras, {mismatches} count mismatches"
        )
        if mismatches:
            raise SystemExit("analytic counts differ from Keras")


if __name__ == "__main__":
    main()
