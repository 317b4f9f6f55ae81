"""Cost of sampling, solving and emitting one architecture, against building its Keras model.

Run: .venv/bin/python benchmarks/bench_generation.py [--count 30] [--dataset fashion_mnist]

Both costs are measured in this process on the same architectures; the script prints the
ratio (generation / Keras build), which should stay well under 1%.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cnngen.datasets import get_dataset_info  # noqa: E402
from cnngen.keras_source import emit_source  # noqa: E402
from cnngen.metrics import compute_metrics  # noqa: E402
from cnngen.sampling import architecture_seeds, sample_resolved  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--dataset", default="fashion_mnist")
    args = parser.parse_args()
    info = get_dataset_info(args.dataset)

    import keras

    seeds = architecture_seeds(0, args.count)
    generate_s = build_s = 0.0
    for seed in seeds:
        start = time.perf_counter()
        resolved = sample_resolved(seed, info.input_shape, info.num_classes)
        source = emit_source(resolved)
        compute_metrics(resolved)
        generate_s += time.perf_counter() - start

        namespace: dict = {}
        start = time.perf_counter()
        exec(compile(source, "<emitted>", "exec"), namespace)
        namespace["build_model"](info.input_shape, info.num_classes)
        build_s += time.perf_counter() - start
        keras.backend.clear_session()

    print(f"architectures: {args.count} ({args.dataset})")
    print(f"sample + solve + emit + metrics: {generate_s / args.count * 1e3:.2f} ms per architecture")
    print(f"Keras build_model:               {build_s / args.count * 1e3:.2f} ms per architecture")
    print(f"ratio generation / build: {generate_s / build_s:.4f} (target < 0.01)")


if __name__ == "__main__":
    main()
