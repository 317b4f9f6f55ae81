"""Fit time of the graph (Neural) and image (Img) predictors with their default settings.

Run: .venv/bin/python benchmarks/bench_torch_predictors.py [--count 100] [--threads 1]
     [--backbones small resnet18] [--resnet18-epochs 1]

The script samples ``count`` architectures for training and a quarter as many for testing,
uses log10(FLOPs) as a target that both predictors can learn, and prints the fit time of each
predictor and Kendall's tau on the held-out architectures. Pictures are drawn into a
temporary cache before timing; drawing them is timed separately. ResNet-18 is timed over
``--resnet18-epochs`` epochs, and the time for the default 30 epochs is extrapolated.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402

from cnngen.datasets import get_dataset_info  # noqa: E402
from cnngen.metrics import compute_metrics  # noqa: E402
from cnngen.predictors.image import ImagePredictor, draw_cached_picture  # noqa: E402
from cnngen.predictors.neural import NeuralPredictor, import_torch  # noqa: E402
from cnngen.sampling import sample_many  # noqa: E402


def timed_fit(predictor, train, y_train, test, y_test) -> tuple[float, float]:
    """Fit on the training architectures; return (fit seconds, held-out Kendall tau)."""
    start = time.perf_counter()
    predictor.fit(train, y_train)
    fit_s = time.perf_counter() - start
    tau = kendalltau(predictor.predict(test), y_test).statistic
    return fit_s, float(tau)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="training architectures")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads")
    parser.add_argument("--backbones", nargs="+", default=["small", "resnet18"])
    parser.add_argument("--resnet18-epochs", type=int, default=1)
    parser.add_argument("--skip-neural", action="store_true")
    args = parser.parse_args()

    torch = import_torch()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = get_dataset_info(args.dataset)
    resolved = [r for _, r in sample_many(0, args.count + args.count // 4, info.input_shape, 10)]
    target = np.log10([compute_metrics(r).flops for r in resolved])
    train, test = resolved[: args.count], resolved[args.count :]
    y_train, y_test = target[: args.count], target[args.count :]
    print(f"architectures: {args.count} training, {len(test)} test ({args.dataset})")
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    if not args.skip_neural:
        fit_s, tau = timed_fit(NeuralPredictor(random_state=0), train, y_train, test, y_test)
        print(f"Neural (300 epochs, batch 10): fit {fit_s:.1f} s, held-out tau {tau:.2f}")

    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        for architecture in resolved:
            draw_cached_picture(architecture, cache_dir)
        print(f"drawing {len(resolved)} pictures: {time.perf_counter() - start:.1f} s")
        for backbone in args.backbones:
            epochs = args.resnet18_epochs if backbone == "resnet18" else 30
            predictor = ImagePredictor(
                backbone=backbone, epochs=epochs, cache_dir=cache_dir, random_state=0
            )
            fit_s, tau = timed_fit(predictor, train, y_train, test, y_test)
            line = f"Img {backbone} (512 x 256, {epochs} epochs): fit {fit_s:.1f} s"
            if epochs != 30:
                line += f", about {fit_s * 30 / epochs:.0f} s for 30 epochs (extrapolated)"
            print(f"{line}, held-out tau {tau:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
