"""The ``cnngen`` command line.

``check``, ``sample``, ``describe`` and ``emit`` import neither TensorFlow nor PyTorch, so they
return in well under a second, and ``fit`` and ``score`` import neither for the tree-based
predictors. ``emit --png``, ``run`` and ``evaluate`` import what they need when they run.
Every error CNNGen raises on purpose is printed as one line on stderr with exit status 2; an
unexpected error keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from cnngen import __version__
from cnngen.errors import CNNGenError, PhraseSyntaxError, checked_integer

EXIT_USAGE = 2


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def _phrase(words: list[str]) -> str:
    return " ".join(words)


def _dataset_shape(name: str) -> tuple[tuple[int, int, int], int]:
    from cnngen.datasets import get_dataset_info

    info = get_dataset_info(name)
    return tuple(info.input_shape), info.num_classes


def _resolve(args):
    from cnngen.grammar import parse
    from cnngen.solver import solve

    input_shape, num_classes = _dataset_shape(args.dataset)
    return solve(parse(_phrase(args.phrase)), input_shape, num_classes, seed=args.seed)


def cmd_check(args) -> int:
    from cnngen.grammar import parse

    print(parse(_phrase(args.phrase)).to_phrase())
    return 0


def cmd_sample(args) -> int:
    from cnngen.sampling import architecture_seeds, sample_architecture
    from cnngen.solver import solve

    if args.count < 0:
        raise CNNGenError(f"--count must be >= 0, got {args.count}")
    input_shape, num_classes = _dataset_shape(args.dataset)
    for seed in architecture_seeds(args.seed, args.count):
        architecture = sample_architecture(seed)
        if args.bare:
            print(architecture.to_bare_phrase())
        else:
            print(solve(architecture, input_shape, num_classes, seed).to_phrase())
    return 0


def cmd_describe(args) -> int:
    from cnngen.metrics import compute_metrics

    resolved = _resolve(args)
    metrics = compute_metrics(resolved)
    if args.json:
        document = {"phrase": resolved.to_phrase(), "dataset": args.dataset, "seed": args.seed}
        document.update(metrics.as_dict())
        print(json.dumps(document, indent=2))
        return 0
    print(resolved.to_phrase())
    print(f"params      {metrics.params:>14,}")
    print(f"FLOPs       {metrics.flops:>14,}  (one image, multiply-add = 2)")
    print(f"Keras layers{metrics.num_layers:>14}")
    print(f"depth       {metrics.depth:>14}  (Conv2D and Dense on the longest path)")
    print()
    print(f"{'layer':<28}{'class':<24}{'output shape':<18}{'params':>12}{'FLOPs':>16}")
    for cost in metrics.per_layer:
        shape = "x".join(str(v) for v in cost.output_shape)
        print(f"{cost.name:<28}{cost.class_name:<24}{shape:<18}{cost.params:>12,}{cost.flops:>16,}")
    return 0


def cmd_emit(args) -> int:
    from cnngen.keras_source import write_source

    resolved = _resolve(args)
    path = write_source(resolved, args.output)
    print(path)
    if args.png:
        from cnngen.keras_source import load_build_model, render_png

        model = load_build_model(path)(resolved.input_shape, resolved.num_classes)
        print(render_png(model, args.png))
    return 0


def cmd_run(args) -> int:
    from cnngen.pipeline import run_pipeline

    extra = dict(_parse_assignment(item) for item in args.parameter)
    if args.shard is not None:
        from cnngen.batch import parse_shard

        index, count = parse_shard(args.shard)
        extra["shard"] = f"{index}/{count}"
    output = run_pipeline(args.params, args.output, extra_parameters=extra or None)
    print(output)
    return 0


def cmd_merge(args) -> int:
    from cnngen.merge import merge_stores
    from cnngen.store import ResultsStore

    output = merge_stores(args.output, args.inputs)
    with ResultsStore(output, read_only=True) as store:
        counts = store.status_counts()
    print(output)
    print(", ".join(f"{status} {count}" for status, count in counts.items()))
    return 0


def cmd_evaluate(args) -> int:
    from cnngen.evaluation import run_evaluation
    from cnngen.evaluation_inputs import parse_train_sizes
    from cnngen.predictors import TORCH_PREDICTORS

    torch_names = [name for name in TORCH_PREDICTORS if name in args.predictors]
    torch_sizes = parse_train_sizes(args.torch_sizes) if args.torch_sizes else None
    epochs = {"Neural": args.neural_epochs, "Img": args.image_epochs}
    evaluation = run_evaluation(
        args.database,
        predictors=args.predictors,
        targets=args.targets,
        train_sizes=parse_train_sizes(args.sizes),
        repetitions=args.repetitions,
        seed=args.seed,
        statuses=args.statuses,
        proxies=args.proxies,
        proxy_cache=args.proxy_cache,
        predictor_options={
            name: {"epochs": epochs[name]} for name in torch_names if epochs[name] is not None
        },
        predictor_train_sizes={name: torch_sizes for name in torch_names if torch_sizes},
        progress=True,
    )
    counts = ", ".join(f"{status} {count}" for status, count in evaluation.status_counts.items())
    print(f"stored trainings: {counts}; evaluated statuses: {', '.join(evaluation.statuses)}")
    for target, sizes in evaluation.skipped_sizes.items():
        for size, pool in sizes.items():
            print(f"skipped {target} training size {size}: the training pool has {pool}")
    columns = [
        "predictor", "target", "train_size", "kendall_tau_mean", "kendall_tau_std",
        "spearman_mean", "mae_mean", "mae_std", "within_10pct_mean", "p_vs_best", "note",
    ]  # fmt: skip
    print(evaluation.summary[columns].to_string(index=False))
    if args.output:
        evaluation.summary.to_csv(args.output, index=False)
        print(args.output)
    return 0


def cmd_fit(args) -> int:
    from cnngen.evaluation import fit_on_results

    if args.output.suffix != ".joblib":
        raise CNNGenError(
            f"-o {str(args.output)!r}: a predictor file name must end in .joblib, such as "
            "rf_energy.joblib"
        )
    _check_output_folder(args.output)
    predictor, count = fit_on_results(
        args.database,
        args.predictor,
        args.target,
        statuses=args.statuses,
        random_state=args.seed,
        progress=sys.stderr.isatty(),
    )
    path = predictor.save(args.output)
    print(f"{args.predictor} fitted on {count} trainings to predict {args.target}")
    print(path)
    return 0


def cmd_score(args) -> int:
    import time

    import pandas as pd

    from cnngen.predictors import load_predictor
    from cnngen.predictors.scoring import CandidatePool, check_scorable

    # Check every argument before sampling, which can take minutes.
    checked_integer("epochs", args.epochs, 1)
    predictors = {}
    for path in args.predictors:
        predictor = load_predictor(path)
        try:
            check_scorable(predictor)
        except CNNGenError as error:
            raise CNNGenError(f"{path}: {error}") from None
        predictors[Path(path).stem] = predictor
    if len(predictors) != len(args.predictors):
        raise CNNGenError(
            f"predictor files {[str(p) for p in args.predictors]} share a file name; give "
            "each a distinct name, which becomes its column"
        )
    if "phrase" in predictors:
        raise CNNGenError(
            "a predictor file is named phrase.joblib, and its column would replace the "
            "phrase column; rename the file"
        )
    if args.output is not None:
        inputs = {Path(path).resolve() for path in args.predictors}
        if args.output.resolve() in inputs or args.output.suffix in (".joblib", ".pt"):
            raise CNNGenError(
                f"-o {str(args.output)!r} would overwrite a predictor file; write the "
                "scores to a .csv file"
            )
        _check_output_folder(args.output)
    progress = sys.stderr.isatty()
    start = time.perf_counter()
    if args.phrases is not None:
        pool = CandidatePool(args.dataset, seed=args.seed)
        _add_phrases(pool, args.phrases, progress)
    else:
        pool = CandidatePool.sample(
            args.sample, args.dataset, seed=args.seed, sampling=args.sampling, progress=progress
        )
    prepared = time.perf_counter()
    table = pd.DataFrame({"phrase": pool.phrases()})
    for column, predictor in predictors.items():
        table[column] = pool.score(predictor, args.epochs)
    scored = time.perf_counter()
    noun = "predictor" if len(predictors) == 1 else "predictors"
    print(
        f"{len(pool):,} architectures: solved and featurised in {prepared - start:.1f} s, "
        f"scored by {len(predictors)} {noun} in {scored - prepared:.2f} s",
        file=sys.stderr,
    )
    if args.output is None:
        table.to_csv(sys.stdout, index=False)
    else:
        table.to_csv(args.output, index=False)
        print(args.output)
    return 0


def _check_output_folder(path: Path) -> None:
    """Raise before any work if the folder of an output file does not exist."""
    folder = path.parent
    if not folder.is_dir():
        raise CNNGenError(f"-o {str(path)!r}: folder {str(folder)!r} not found; create it first")


def _add_phrases(pool, path: Path, progress: bool) -> None:
    """Add the phrases of a file to a pool. An error names the line of the bad phrase."""
    try:
        # utf-8-sig drops the byte-order mark that some editors write.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CNNGenError(f"{path} is not UTF-8 text; write one phrase per line") from None
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)]
    lines = [(number, line) for number, line in lines if line and not line.startswith("#")]
    if not lines:
        raise CNNGenError(f"{path} contains no phrase; write one phrase per line")
    try:
        pool.add([phrase for _, phrase in lines], progress=progress)
    except CNNGenError as error:
        # Phrases before the bad one stay in the pool, so its length locates the bad one.
        number = lines[len(pool)][0]
        if isinstance(error, PhraseSyntaxError):
            message = f"invalid phrase at column {error.column}: {error.reason}"
        else:
            message = str(error)
        raise CNNGenError(f"{path}, line {number}: {message}") from None


def _parse_assignment(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise CNNGenError(f"-p expects KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _add_phrase_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("phrase", nargs="+", help="the phrase (quoted, or as separate words)")
    parser.add_argument(
        "--dataset", required=True, help="digits, fashion_mnist, cifar10 or cifar100"
    )
    parser.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="seed of the values the phrase leaves open (default 0)",
    )


def _add_results_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "database",
        type=Path,
        help="results.sqlite, a run directory, or results.parquet of scripts/export_reference.py",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``cnngen`` command."""
    parser = argparse.ArgumentParser(
        prog="cnngen", description="Generate, train and measure CNN architectures."
    )
    parser.add_argument("--version", action="version", version=f"cnngen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="parse a phrase and print its canonical form")
    check.add_argument("phrase", nargs="+", help="the phrase (quoted, or as separate words)")
    check.set_defaults(handler=cmd_check)

    sample = commands.add_parser("sample", help="print fully pinned random phrases")
    sample.add_argument("--count", type=int, required=True, help="number of phrases")
    sample.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="run seed; each phrase gets a seed derived from it",
    )
    sample.add_argument(
        "--dataset", required=True, help="data set whose input shape the values fit"
    )
    sample.add_argument(
        "--bare", action="store_true", help="print phrases without hyper-parameters"
    )
    sample.set_defaults(handler=cmd_sample)

    describe = commands.add_parser(
        "describe", help="print parameters, FLOPs and layers of a phrase"
    )
    _add_phrase_arguments(describe)
    describe.add_argument("--json", action="store_true", help="print a JSON object")
    describe.set_defaults(handler=cmd_describe)

    emit = commands.add_parser("emit", help="write the standalone Keras file of a phrase")
    _add_phrase_arguments(emit)
    emit.add_argument("-o", "--output", required=True, help="path of the .py file to write")
    emit.add_argument("--png", help="also draw the model with plot_model to this PNG path")
    emit.set_defaults(handler=cmd_emit)

    run = commands.add_parser(
        "run", help="execute the notebooks with papermill for a parameter file"
    )
    run.add_argument("params", help="a YAML parameters file, such as parameters/quickstart.yaml")
    run.add_argument(
        "--output", required=True, help="run directory for notebooks, database, CSV and figures"
    )
    run.add_argument(
        "-p", "--parameter", action="append", default=[], help="override a parameter: KEY=VALUE"
    )
    run.add_argument(
        "--shard",
        metavar="I/N",
        help="train only shard I of N (1 <= I <= N); give each shard its own --output and "
        "join their results.sqlite with cnngen merge",
    )
    run.set_defaults(handler=cmd_run)

    merge = commands.add_parser(
        "merge", help="merge the results stores of shards or runs into a new store"
    )
    merge.add_argument("output", type=Path, help="the new results.sqlite to write")
    merge.add_argument("inputs", type=Path, nargs="+", help="results stores to merge")
    merge.set_defaults(handler=cmd_merge)

    evaluate = commands.add_parser(
        "evaluate", help="evaluate the predictors on a run's results or a Parquet export"
    )
    _add_results_argument(evaluate)
    evaluate.add_argument(
        "--predictors", nargs="+", default=["DT", "Py_code", "RF", "GB"],
        help="predictor names (default: DT Py_code RF GB)",
    )  # fmt: skip
    evaluate.add_argument(
        "--targets", nargs="+", default=["test_accuracy", "energy_kwh", "energy_per_epoch_kwh"],
        help="targets to predict (default: all three)",
    )  # fmt: skip
    evaluate.add_argument(
        "--sizes", nargs="+", default=["10", "25", "50", "100", "200", "400", "all"],
        help="training sizes in distinct architectures, or 'all' (default: 10 to 400 and all)",
    )  # fmt: skip
    evaluate.add_argument(
        "--repetitions", type=int, default=10, help="subsamples and seeds per training size"
    )
    evaluate.add_argument(
        "--seed", type=int, default=0, help="seed of the held-out split and of the subsamples"
    )
    evaluate.add_argument(
        "--statuses", nargs="+", default=["ok"], help="training statuses to evaluate (default: ok)"
    )
    evaluate.add_argument(
        "--proxies", action="store_true",
        help="also compute the zero-cost proxies (needs TensorFlow and the run's data set)",
    )  # fmt: skip
    evaluate.add_argument(
        "--proxy-cache",
        type=Path,
        help="Parquet cache of the proxies (default: beside the results)",
    )
    evaluate.add_argument(
        "--torch-sizes", nargs="+",
        help="training sizes at which Neural and Img are fitted (default: those of --sizes)",
    )  # fmt: skip
    evaluate.add_argument(
        "--neural-epochs", type=int,
        help="training epochs of the Neural predictor (default: 300, as its authors)",
    )  # fmt: skip
    evaluate.add_argument(
        "--image-epochs", type=int,
        help="training epochs of the Img predictor (default: 30, as the CNNGen paper)",
    )  # fmt: skip
    evaluate.add_argument("-o", "--output", type=Path, help="also write the summary to this CSV")
    evaluate.set_defaults(handler=cmd_evaluate)

    fit = commands.add_parser(
        "fit", help="fit a predictor on every training of a run's results and save it"
    )
    _add_results_argument(fit)
    fit.add_argument("--predictor", default="RF", help="DT, Py_code, RF or GB (default: RF)")
    fit.add_argument(
        "--target", required=True,
        help="test_accuracy, energy_kwh or energy_per_epoch_kwh",
    )  # fmt: skip
    fit.add_argument(
        "--statuses", nargs="+", default=["ok"], help="training statuses to fit on (default: ok)"
    )
    fit.add_argument(
        "--seed", type=_non_negative_int, default=0, help="seed of the predictor (default 0)"
    )
    fit.add_argument(
        "-o", "--output", type=Path, required=True, help="the predictor file to write (.joblib)"
    )
    fit.set_defaults(handler=cmd_fit)

    score = commands.add_parser(
        "score", help="predict accuracy or energy of many architectures without training them"
    )
    score.add_argument(
        "predictors", type=Path, nargs="+",
        help="predictor files written by `cnngen fit` or a predictor's save(); each file's "
        "name (without suffix) names its column",
    )  # fmt: skip
    source = score.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--sample", type=_non_negative_int, help="score this many sampled architectures"
    )
    source.add_argument("--phrases", type=Path, help="score the phrases of a file, one per line")
    score.add_argument(
        "--dataset", required=True, help="digits, fashion_mnist, cifar10 or cifar100"
    )
    score.add_argument(
        "--epochs", type=int, required=True, help="the epochs they would be trained for"
    )
    score.add_argument(
        "--seed", type=_non_negative_int, default=0,
        help="run seed of the sample, or seed of the values the phrases leave open (default 0)",
    )  # fmt: skip
    score.add_argument(
        "--sampling", default="configured",
        help="sampling preset: configured or original_effective (default: configured)",
    )  # fmt: skip
    score.add_argument(
        "-o", "--output", type=Path, help="write the CSV here instead of standard output"
    )
    score.set_defaults(handler=cmd_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``cnngen`` command and return its exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.handler(args)
    except PhraseSyntaxError as error:
        print(f"cnngen {args.command}: invalid phrase: {error.one_line}", file=sys.stderr)
    except CNNGenError as error:
        # Some messages list one problem per line (every invalid parameter of a file), so the
        # whole message is printed; none of them carries a traceback.
        message = str(error) or type(error).__name__
        print(f"cnngen {args.command}: {message}", file=sys.stderr)
    except OSError as error:
        # A file the user named could not be written or read (a folder, a missing parent).
        if error.filename:
            print(
                f"cnngen {args.command}: cannot use {error.filename}: {error.strerror}",
                file=sys.stderr,
            )
        else:
            print(f"cnngen {args.command}: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"cnngen {args.command}: interrupted", file=sys.stderr)
        return 130
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
