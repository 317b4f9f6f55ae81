"""Features of resolved architectures, the inputs of the accuracy and energy predictors.

This module owns the feature table: the four features of the decision tree of Gratia et al.,
"CNNGen: A Generator and a Dataset for Energy-Aware Neural Architecture Search"
(:data:`PAPER_FEATURES`: Keras layer count, epochs, FLOPs, parameters), and cheap structural
features read from the solver's layer graph and the architecture tree (:data:`FEATURE_COLUMNS`).
It also rebuilds the resolved architecture of a stored row. A stored phrase is fully pinned,
so solving it with its stored seed for its data set's input shape gives the trained network
and therefore the same features.

Counting parameters and FLOPs is left to :mod:`cnngen.metrics`, fitting to
:mod:`cnngen.predictors`, and splits and scores to :mod:`cnngen.evaluation`. Nothing here
imports TensorFlow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

from cnngen.architecture import Architecture, Merge
from cnngen.errors import CNNGenError, checked_integer
from cnngen.metrics import compute_metrics
from cnngen.solver import ResolvedArchitecture

logger = logging.getLogger(__name__)

PAPER_FEATURES = ("num_layers", "epochs", "flops", "params")

# Keras classes counted one by one, with the name of the count's column.
_CLASS_COUNTS = {
    "Conv2D": "num_conv2d",
    "BatchNormalization": "num_batch_normalization",
    "MaxPooling2D": "num_max_pooling2d",
    "AveragePooling2D": "num_average_pooling2d",
    "Dropout": "num_dropout",
    "Dense": "num_dense",
    "Add": "num_add",
    "Concatenate": "num_concatenate",
}
_INTERSTICES = ("flatten", "global_avg_pooling", "global_max_pooling")
_ACTIVATIONS = ("relu", "selu", "tanh", "gelu")

FEATURE_COLUMNS = (
    *PAPER_FEATURES,
    "depth",
    *_CLASS_COUNTS.values(),
    "num_merges",
    "num_merge_bodies",
    "num_identity_shortcuts",
    "max_merge_nesting",
    "kernel_mean",
    "kernel_max",
    "num_strided_conv2d",
    "filters_mean",
    "filters_max",
    "filters_last",
    "dropout_rate_mean",
    "dropout_rate_max",
    "hidden_dense_units",
    "final_spatial_size",
    "interstice_size",
    "activation_values",
    "max_tensor_values",
    *(f"interstice_{kind}" for kind in _INTERSTICES),
    *(f"activation_{name}" for name in _ACTIVATIONS),
    "input_size",
    "input_channels",
    "num_classes",
)


def architecture_features(resolved: ResolvedArchitecture, epochs: int) -> dict[str, float]:
    """Compute every feature of :data:`FEATURE_COLUMNS` for one resolved architecture.

    Args:
        resolved: The architecture with its Keras layer graph.
        epochs: The number of epochs it is (or was) trained for, as requested before training.
            Python and NumPy integers are accepted.

    Returns:
        The features by column name, in :data:`FEATURE_COLUMNS` order. Means and maxima of
        absent layers (a network without dropout, say) are 0.

    Raises:
        CNNGenError: If epochs is not a positive integer.
    """
    epochs = checked_integer("epochs", epochs, 1)
    metrics = compute_metrics(resolved)
    features: dict[str, float] = {
        "num_layers": metrics.num_layers,
        "epochs": epochs,
        "flops": metrics.flops,
        "params": metrics.params,
        "depth": metrics.depth,
    }
    features.update(_class_counts(resolved))
    features.update(_merge_features(resolved.architecture))
    features.update(_layer_statistics(resolved))
    features.update(_head_features(resolved))
    features["input_size"], _, features["input_channels"] = resolved.input_shape
    features["num_classes"] = resolved.num_classes
    return {name: features[name] for name in FEATURE_COLUMNS}


def feature_frame(resolved_list: Iterable[ResolvedArchitecture], epochs: int | Iterable[int]):
    """Compute the features of several architectures as a table.

    Args:
        resolved_list: Resolved architectures.
        epochs: One epoch count for all of them, or one per architecture, in order.

    Returns:
        A pandas DataFrame with one row per architecture, in input order, and the columns of
        :data:`FEATURE_COLUMNS`.

    Raises:
        CNNGenError: If an epoch count is invalid, or the number of epoch counts differs from
            the number of architectures.
    """
    import pandas as pd

    resolved_list = list(resolved_list)
    # Lists, NumPy arrays and pandas Series give one count per architecture.
    if isinstance(epochs, Iterable) and not isinstance(epochs, str):
        epochs_list = list(epochs)
        if len(epochs_list) != len(resolved_list):
            raise CNNGenError(
                f"got {len(epochs_list)} epoch counts for {len(resolved_list)} architectures; "
                "pass one count per architecture or a single count for all"
            )
    else:
        epochs_list = [epochs] * len(resolved_list)
    rows = [architecture_features(r, e) for r, e in zip(resolved_list, epochs_list, strict=True)]
    return pd.DataFrame(rows, columns=list(FEATURE_COLUMNS))


def resolve_stored(phrase: str, seed: int | None, dataset: str) -> ResolvedArchitecture:
    """Rebuild the resolved architecture of a stored phrase for its data set.

    Args:
        phrase: The stored phrase, normally fully pinned.
        seed: The architecture's stored seed; the solver draws from it any value the phrase
            leaves open.
        dataset: The name of the data set the architecture was solved for.

    Returns:
        The resolved architecture, identical to the one that was trained.

    Raises:
        CNNGenError: If the phrase does not parse or solve, the data set is unknown, or the
            phrase leaves values open and no seed is stored to draw them again.
    """
    from cnngen.datasets import get_dataset_info
    from cnngen.grammar import parse
    from cnngen.solver import solve

    architecture = parse(phrase)
    if seed is None and not architecture.is_fully_pinned:
        raise CNNGenError(
            f"stored phrase {phrase!r} leaves hyper-parameters open and has no seed, so the "
            "trained network cannot be rebuilt; store fully pinned phrases or their seeds"
        )
    info = get_dataset_info(dataset)
    return solve(architecture, info.input_shape, info.num_classes, 0 if seed is None else seed)


def stored_features(frame, *, progress: bool = False):
    """Compute the features of the architectures of a results table.

    Args:
        frame: Rows with ``arch_id``, ``phrase``, ``seed``, ``dataset`` and ``epochs`` (the
            requested epochs), such as ``ResultsStore.trainings_frame()``. A ``params`` column,
            when present, is compared with the recomputed parameter count.
        progress: Show a tqdm progress bar.

    Returns:
        A DataFrame of :data:`FEATURE_COLUMNS` indexed by ``arch_id``, in the frame's order.

    Raises:
        CNNGenError: If a column is missing, a phrase cannot be rebuilt, or a rebuilt network
            has another parameter count than the stored one.
    """
    from tqdm.auto import tqdm

    missing = [
        name for name in ("arch_id", "phrase", "seed", "dataset", "epochs") if name not in frame
    ]
    if missing:
        raise CNNGenError(
            f"results table lacks the columns {missing}; pass ResultsStore.trainings_frame()"
        )
    resolved_list, epochs_list = [], []
    rows = frame.to_dict("records")
    for row in tqdm(rows, desc="features", unit="arch", disable=not progress):
        seed = None if _is_missing(row["seed"]) else int(row["seed"])
        resolved = resolve_stored(row["phrase"], seed, row["dataset"])
        _check_stored_params(row, resolved)
        if _is_missing(row["epochs"]):
            raise CNNGenError(f"architecture {row['arch_id']!r} has no stored epoch count")
        resolved_list.append(resolved)
        epochs_list.append(int(row["epochs"]))
    features = feature_frame(resolved_list, epochs_list)
    features.index = [row["arch_id"] for row in rows]
    features.index.name = "arch_id"
    return features


def _check_stored_params(row: dict, resolved: ResolvedArchitecture) -> None:
    stored = row.get("params")
    if _is_missing(stored):
        return
    rebuilt = compute_metrics(resolved).params
    if int(stored) != rebuilt:
        raise CNNGenError(
            f"architecture {row['arch_id']!r} was stored with {int(stored)} parameters but its "
            f"phrase rebuilds a network of {rebuilt} for data set {row['dataset']!r}; check "
            "that the row's seed and data set are those it was generated with"
        )


def _is_missing(value) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _class_counts(resolved: ResolvedArchitecture) -> dict[str, int]:
    counts = dict.fromkeys(_CLASS_COUNTS.values(), 0)
    for layer in resolved.layers:
        column = _CLASS_COUNTS.get(layer.class_name)
        if column is not None:
            counts[column] += 1
    return counts


def _merge_features(architecture: Architecture) -> dict[str, int]:
    merges = []

    def visit(nodes, nesting: int) -> None:
        for node in nodes:
            if isinstance(node, Merge):
                merges.append((node, nesting + 1))
                for body in node.bodies:
                    visit(body.left, nesting + 1)

    visit(architecture.features, 0)
    bodies = [body for merge, _ in merges for body in merge.bodies]
    return {
        "num_merges": len(merges),
        "num_merge_bodies": len(bodies),
        "num_identity_shortcuts": sum(1 for body in bodies if not body.right),
        "max_merge_nesting": max((nesting for _, nesting in merges), default=0),
    }


def _layer_statistics(resolved: ResolvedArchitecture) -> dict[str, float]:
    convs = [layer.config for layer in resolved.layers if layer.class_name == "Conv2D"]
    kernels = [config["kernel_size"] for config in convs]
    filters = [config["filters"] for config in convs]
    rates = [layer.config["rate"] for layer in resolved.layers if layer.class_name == "Dropout"]
    return {
        "kernel_mean": _mean(kernels),
        "kernel_max": max(kernels, default=0),
        "num_strided_conv2d": sum(1 for config in convs if config["strides"] > 1),
        "filters_mean": _mean(filters),
        "filters_max": max(filters, default=0),
        "filters_last": filters[-1] if filters else 0,
        "dropout_rate_mean": _mean(rates),
        "dropout_rate_max": max(rates, default=0.0),
    }


def _head_features(resolved: ResolvedArchitecture) -> dict[str, float]:
    layers = resolved.layers
    interstice_index = next(i for i, layer in enumerate(layers) if layer.token in _INTERSTICES)
    interstice = layers[interstice_index]
    dense = [layer for layer in layers if layer.class_name == "Dense"]
    # The classifier's softmax is fixed, so only convolutions and hidden dense layers count.
    convs = [layer for layer in layers if layer.class_name == "Conv2D"]
    activated = [layer.config["activation"] for layer in convs + dense[:-1]]
    values = [math.prod(layer.output_shape) for layer in layers]
    features: dict[str, float] = {
        "hidden_dense_units": sum(layer.config["units"] for layer in dense[:-1]),
        "final_spatial_size": interstice.input_shapes[0][0],
        "interstice_size": math.prod(interstice.output_shape),
        "activation_values": sum(values),
        "max_tensor_values": max(values),
    }
    for kind in _INTERSTICES:
        features[f"interstice_{kind}"] = int(interstice.token == kind)
    for name in _ACTIVATIONS:
        features[f"activation_{name}"] = (
            activated.count(name) / len(activated) if activated else 0.0
        )
    return features


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
