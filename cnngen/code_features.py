"""Features read from an architecture's generated Keras source with Python's ``ast`` module.

This module owns the features of the Py_code predictor (:data:`CODE_FEATURE_COLUMNS`, all
prefixed ``code_``). They are computed from the text of the file that
:func:`cnngen.keras_source.emit_source` writes, not from the solver's layer graph, so they
describe exactly what the stored code builds:

* the number of ``layers.X(...)`` calls of each Keras class (other classes are counted in
  ``code_num_other_layers``);
* the mean, maximum and sum of each numeric keyword argument (``filters``, ``kernel_size``,
  ``strides``, ``pool_size``, ``units``, ``rate``, ``epsilon``). A tuple such as
  ``kernel_size=(3, 3)`` counts as the mean of its items, and ``units=num_classes`` as the
  file's ``NUM_CLASSES``;
* the number of calls with each ``padding`` and each ``activation`` value;
* the number of lines of ``build_model`` and of assignments in it (the file's header, which
  holds the wrapped phrase, is left out, so a header that changes between CNNGen versions
  changes no feature);
* ``code_depth``, the longest chain of assigned variables from the input to the output;
* ``code_width``, the maximum number of tensors that are alive at once (assigned and still
  read by a later statement);
* ``code_num_merges``, the calls that read a list of tensors, and ``code_merge_inputs``,
  the tensors those lists contain;
* the ``INPUT_SHAPE`` and ``NUM_CLASSES`` constants of the file.

Emitting the source is left to :mod:`cnngen.keras_source`, and fitting to
:mod:`cnngen.predictors`. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterable

from cnngen.errors import CNNGenError

logger = logging.getLogger(__name__)

CODE_LAYER_CLASSES = (
    "Conv2D",
    "BatchNormalization",
    "MaxPooling2D",
    "AveragePooling2D",
    "Dropout",
    "Dense",
    "Add",
    "Concatenate",
    "Flatten",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
)
CODE_KEYWORDS = ("filters", "kernel_size", "strides", "pool_size", "units", "rate", "epsilon")
CODE_PADDINGS = ("same", "valid")
CODE_ACTIVATIONS = ("relu", "selu", "tanh", "gelu", "softmax")
_STATISTICS = ("mean", "max", "sum")

CODE_FEATURE_COLUMNS = (
    *(f"code_num_{name.lower()}" for name in CODE_LAYER_CLASSES),
    "code_num_other_layers",
    *(f"code_{keyword}_{statistic}" for keyword in CODE_KEYWORDS for statistic in _STATISTICS),
    *(f"code_padding_{padding}" for padding in CODE_PADDINGS),
    *(f"code_activation_{activation}" for activation in CODE_ACTIVATIONS),
    "code_num_lines",
    "code_num_assignments",
    "code_depth",
    "code_width",
    "code_num_merges",
    "code_merge_inputs",
    "code_input_size",
    "code_input_channels",
    "code_num_classes",
)


def code_features(source: str) -> dict[str, float]:
    """Compute the features of :data:`CODE_FEATURE_COLUMNS` from one generated Keras file.

    Args:
        source: The text of a file written by :func:`cnngen.keras_source.emit_source`.

    Returns:
        The features by column name, in :data:`CODE_FEATURE_COLUMNS` order. Statistics of a
        keyword that no call uses are 0.

    Raises:
        CNNGenError: If the source is not valid Python, or defines no ``build_model``
            function or no ``INPUT_SHAPE`` and ``NUM_CLASSES`` constants.
    """
    try:
        module = ast.parse(source)
    except SyntaxError as error:
        raise CNNGenError(
            f"the architecture source is not valid Python (line {error.lineno}: {error.msg}); "
            "regenerate it with `cnngen emit`"
        ) from None
    constants = _module_constants(module)
    function = _build_model_function(module)
    statements = _build_model_assignments(function)

    tally = _Tally()
    for _, call, _ in statements:
        if isinstance(call, ast.Call) and _is_layers_call(call):
            arguments = [
                (keyword.arg, _keyword_value(keyword.value, constants)) for keyword in call.keywords
            ]
            tally.add_layer(call.func.attr, arguments)
    return tally.features(
        statements,
        num_lines=function.end_lineno - function.lineno + 1,
        input_shape=constants["input_shape"],
        num_classes=constants["num_classes"],
    )


def architecture_code_features(resolved) -> dict[str, float]:
    """Compute the code features of a resolved architecture without emitting its source.

    The values equal those of :func:`code_features` on ``emit_source(resolved)``, which the
    tests check on 900 sampled architectures of three input shapes: each Keras layer is one
    ``layers.X(...)`` line whose keywords are the layer's configuration. Reading the layer
    graph takes a small fraction of the time of emitting and parsing the text, which matters
    when a search scores many architectures.

    Args:
        resolved: A :class:`cnngen.solver.ResolvedArchitecture`.

    Returns:
        The features by column name, in :data:`CODE_FEATURE_COLUMNS` order.
    """
    from cnngen.keras_source import build_model_line_count

    tally = _Tally()
    statements = []
    for layer in resolved.layers:
        statements.append((layer.name, None, layer.inputs))
        # The input is ``keras.Input(...)``, not a ``layers.X(...)`` call.
        if layer.class_name != "InputLayer":
            arguments = [(key, _number_or_text(value)) for key, value in layer.config.items()]
            tally.add_layer(layer.class_name, arguments)
    statements.append(("<return>", None, (resolved.layers[-1].name,)))
    return tally.features(
        statements,
        num_lines=build_model_line_count(len(resolved.layers)),
        input_shape=resolved.input_shape,
        num_classes=resolved.num_classes,
    )


def code_feature_frame(items: Iterable):
    """Compute the code features of several architectures as a table.

    Args:
        items: Source texts, parsed with :func:`code_features`, or
            :class:`cnngen.solver.ResolvedArchitecture` objects, read with
            :func:`architecture_code_features` (the same values as their emitted source).

    Returns:
        A pandas DataFrame with one row per item, in input order, and the columns of
        :data:`CODE_FEATURE_COLUMNS`.
    """
    import pandas as pd

    rows = [
        code_features(item) if isinstance(item, str) else architecture_code_features(item)
        for item in items
    ]
    return pd.DataFrame(rows, columns=list(CODE_FEATURE_COLUMNS))


_LAYER_COLUMNS = {name: f"code_num_{name.lower()}" for name in CODE_LAYER_CLASSES}
_PADDING_COLUMNS = {padding: f"code_padding_{padding}" for padding in CODE_PADDINGS}
_ACTIVATION_COLUMNS = {name: f"code_activation_{name}" for name in CODE_ACTIVATIONS}


class _Tally:
    """Counts of layer calls and keyword values, shared by the source and object paths."""

    def __init__(self):
        self.counts = dict.fromkeys(CODE_FEATURE_COLUMNS, 0.0)
        self.values = {keyword: [] for keyword in CODE_KEYWORDS}

    def add_layer(self, class_name: str, arguments) -> None:
        """Count one ``layers.X(...)`` call and its ``(keyword, value)`` arguments."""
        self.counts[_LAYER_COLUMNS.get(class_name, "code_num_other_layers")] += 1
        for keyword, value in arguments:
            if keyword in self.values and isinstance(value, int | float):
                self.values[keyword].append(float(value))
            elif keyword == "padding" and value in _PADDING_COLUMNS:
                self.counts[_PADDING_COLUMNS[value]] += 1
            elif keyword == "activation" and value in _ACTIVATION_COLUMNS:
                self.counts[_ACTIVATION_COLUMNS[value]] += 1

    def features(self, statements, *, num_lines: int, input_shape, num_classes: int) -> dict:
        """Return every code feature, given the data flow and the file's constants."""
        features = self.counts
        for keyword, numbers in self.values.items():
            features[f"code_{keyword}_mean"] = sum(numbers) / len(numbers) if numbers else 0.0
            features[f"code_{keyword}_max"] = max(numbers, default=0.0)
            features[f"code_{keyword}_sum"] = float(sum(numbers))
        features.update(_graph_features(statements))
        features["code_num_lines"] = num_lines
        features["code_num_assignments"] = sum(
            1 for target, _, _ in statements if target != "<return>"
        )
        features["code_input_size"] = input_shape[0]
        features["code_input_channels"] = input_shape[-1]
        features["code_num_classes"] = num_classes
        return {name: float(features[name]) for name in CODE_FEATURE_COLUMNS}


def _module_constants(module: ast.Module) -> dict:
    found = {}
    for node in module.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("INPUT_SHAPE", "NUM_CLASSES"):
                found[target.id.lower()] = ast.literal_eval(node.value)
    missing = [name.upper() for name in ("input_shape", "num_classes") if name not in found]
    if missing:
        raise CNNGenError(
            f"the architecture source defines no {' or '.join(missing)}; regenerate it with "
            "`cnngen emit`"
        )
    return found


def _build_model_function(module: ast.Module) -> ast.FunctionDef:
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == "build_model":
            return node
    raise CNNGenError(
        "the architecture source defines no build_model function; regenerate it with `cnngen emit`"
    )


def _build_model_assignments(function: ast.FunctionDef) -> list[tuple[str, ast.Call, list[str]]]:
    """Return ``(variable, layer call, input variables)`` of each assignment in build_model."""
    statements = []
    for node in function.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            statements.append(_assignment(node))
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Call):
            # keras.Model(inputs=..., outputs=...) reads the output tensor, not the input's.
            outputs = [k.value for k in node.value.keywords if k.arg == "outputs"]
            statements.append(("<return>", node.value, _names(outputs[0]) if outputs else []))
    return statements


def _assignment(node: ast.Assign) -> tuple[str, ast.Call | None, list[str]]:
    value = node.value
    # ``layers.X(config)(inputs)``: the outer call applies the layer to its inputs.
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Call):
        return node.targets[0].id, value.func, _names_in_arguments(value)
    return node.targets[0].id, value if isinstance(value, ast.Call) else None, []


def _names_in_arguments(call: ast.Call) -> list[str]:
    names = []
    for argument in call.args:
        names.extend(_names(argument))
    return names


def _names(node: ast.AST) -> list[str]:
    return [child.id for child in ast.walk(node) if isinstance(child, ast.Name)]


def _is_layers_call(call: ast.Call) -> bool:
    function = call.func
    return (
        isinstance(function, ast.Attribute)
        and isinstance(function.value, ast.Name)
        and function.value.id == "layers"
    )


def _keyword_value(node: ast.AST, constants: dict):
    """Return a keyword's literal value, normalised by :func:`_number_or_text`."""
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    return _number_or_text(value)


def _number_or_text(value):
    """Return a number or text as is, the mean of a tuple of numbers, and None otherwise."""
    if isinstance(value, tuple | list) and value and all(isinstance(v, int | float) for v in value):
        return sum(value) / len(value)
    return value if not isinstance(value, bool) else None


def _graph_features(statements) -> dict[str, float]:
    """Compute depth, width and merges of the data flow between assigned variables."""
    depth, last_use, merges, merge_inputs = {}, {}, 0, 0
    deepest = 0
    for index, (target, _, inputs) in enumerate(statements):
        longest = 0
        known = 0
        for name in inputs:
            if name in depth:
                known += 1
                last_use[name] = index
                longest = max(longest, depth[name])
        depth[target] = longest + 1
        if target != "<return>":
            deepest = max(deepest, longest + 1)
            if known > 1:
                merges += 1
                merge_inputs += known
    # A variable is alive from its assignment up to the statement before its last reader.
    changes = [0] * (len(statements) + 1)
    for index, (target, _, _) in enumerate(statements):
        last = last_use.get(target, -1)
        if last > index:
            changes[index] += 1
            changes[last] -= 1
    width = alive = 0
    for change in changes:
        alive += change
        if alive > width:
            width = alive
    return {
        "code_depth": deepest,
        "code_width": width,
        "code_num_merges": merges,
        "code_merge_inputs": merge_inputs,
    }


def stored_code_features(frame, run_dir=None, *, progress: bool = False):
    """Compute the code features of the rows of a results table.

    A row's source is its stored file (``code_path``, relative to ``run_dir``) when that file
    exists, else the text that :func:`cnngen.keras_source.emit_source` regenerates from the
    row's phrase, seed and data set.

    Args:
        frame: Rows with ``arch_id``, ``phrase``, ``seed`` and ``dataset``, and optionally
            ``code_path``, such as ``ResultsStore.trainings_frame()``.
        run_dir: The run directory of relative code paths, or None to regenerate every source.
        progress: Show a tqdm progress bar.

    Returns:
        A DataFrame of :data:`CODE_FEATURE_COLUMNS` indexed by ``arch_id``, in the frame's order.

    Raises:
        CNNGenError: If a phrase cannot be rebuilt or a source cannot be parsed.
    """
    from pathlib import Path

    import pandas as pd
    from tqdm.auto import tqdm

    from cnngen.features import resolve_stored
    from cnngen.keras_source import emit_source

    rows = frame.to_dict("records")
    features = []
    for row in tqdm(rows, desc="code features", unit="arch", disable=not progress):
        code_path = row.get("code_path")
        path = Path(run_dir) / code_path if run_dir and isinstance(code_path, str) else None
        if path is not None and path.is_file():
            source = path.read_text(encoding="utf-8")
        else:
            seed = None if pd.isna(row["seed"]) else int(row["seed"])
            source = emit_source(resolve_stored(row["phrase"], seed, row["dataset"]))
        features.append(code_features(source))
    table = pd.DataFrame(features, columns=list(CODE_FEATURE_COLUMNS))
    table.index = pd.Index([row["arch_id"] for row in rows], name="arch_id")
    return table
