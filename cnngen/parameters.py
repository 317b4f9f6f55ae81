"""The declared parameters of a run, their validation, and the YAML files that hold them.

This module owns the table :data:`PARAMETERS`: the name, type, range, default and meaning of
every parameter that a notebook of the pipeline declares. :func:`load_parameters` and
:func:`validate_parameters` turn a YAML file, a dictionary or papermill values into one
checked dictionary, which :func:`training_config` and :func:`dataset_options` map onto
:class:`cnngen.training_config.TrainingConfig` and :func:`cnngen.datasets.load_dataset`. The
module leaves generating, training and executing notebooks to :mod:`cnngen.generation`,
:mod:`cnngen.training` and :mod:`cnngen.pipeline`.

Conversions are explicit and are the only ones made, so a typo fails before anything trains:

* A float parameter accepts an int and a numeric string. PyYAML follows YAML 1.1, which reads
  ``1e-3`` (no dot) as the string ``"1e-3"``.
* An int parameter accepts a string of decimal digits, but no float such as ``12.0``.
* A boolean parameter accepts the strings ``"true"`` and ``"false"`` in any case.
* A parameter that may be None accepts the strings ``"None"`` and ``"null"``.
* A list parameter accepts a string holding a YAML or JSON list, as passed by ``papermill -p``.
* A string parameter rejects booleans, because YAML 1.1 reads unquoted ``yes``, ``no``, ``on``
  and ``off`` as booleans (so ``country_iso_code: NO`` for Norway arrives as False).
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cnngen.datasets import DATASETS
from cnngen.energy import TRACKING_MODES
from cnngen.errors import MeasurementError, ParameterError

logger = logging.getLogger(__name__)

SAMPLING_PRESETS = ("configured", "original_effective")
_INT_PATTERN = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Parameter:
    """One declared run parameter.

    Attributes:
        name: The name used in YAML files and notebooks.
        kind: "int", "float", "bool", "str", "path" (a string naming a file or folder) or
            "str_list".
        default: The value when a file or notebook omits the parameter.
        help: What the parameter sets, with its unit.
        minimum: Smallest allowed number, or None.
        maximum: Largest allowed number, or None.
        exclusive: Whether the bounds themselves are excluded.
        choices: The allowed strings, or None for any string.
        optional: Whether None is allowed.
        fixed_per_run: Whether a rerun into an existing run directory must keep the value,
            because the stored architectures or trainings depend on it.
    """

    name: str
    kind: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False
    choices: tuple[str, ...] | None = None
    optional: bool = False
    fixed_per_run: bool = True


PARAMETERS: dict[str, Parameter] = {
    parameter.name: parameter
    for parameter in (
        # Shared by every notebook.
        Parameter("output_dir", "path", "runs/notebook-default",
                  "run directory; created when missing", fixed_per_run=False),
        Parameter("dataset", "str", "digits", "data set name", choices=tuple(DATASETS)),
        Parameter("seed", "int", 0, "run seed of architectures, splits and weights",
                  minimum=0, maximum=2**32 - 1),
        # 01_generate_architectures.
        Parameter("num_architectures", "int", 8, "number of architectures to sample",
                  minimum=1, maximum=1_000_000, fixed_per_run=False),
        Parameter("phrases", "str_list", [],
                  "hand-written phrases used instead of sampling; empty to sample"),
        Parameter("sampling", "str", "configured",
                  "sampling probabilities: the original generator's configured values, or "
                  "those its code effectively used", choices=SAMPLING_PRESETS),
        # 02_train_architectures.
        Parameter("epochs", "int", 3, "maximum number of training epochs", minimum=1,
                  maximum=100_000),
        Parameter("batch_size", "int", 64, "images per gradient step", minimum=1,
                  maximum=1_000_000),
        Parameter("learning_rate", "float", 0.001, "Adam learning rate", minimum=0.0,
                  maximum=math.inf, exclusive=True),
        Parameter("max_train", "int", None, "maximum number of training images; None for all",
                  minimum=1, maximum=10**9, optional=True),
        Parameter("max_test", "int", None, "maximum number of test images; None for all",
                  minimum=1, maximum=10**9, optional=True),
        Parameter("test_fraction", "float", 0.2, "fraction of all images held out for testing",
                  minimum=0.0, maximum=1.0, exclusive=True),
        Parameter("validation_fraction", "float", 0.2,
                  "fraction of the training images held out for validation",
                  minimum=0.0, maximum=1.0, exclusive=True),
        Parameter("data_dir", "path", None,
                  "folder searched first for the data set files; None for the default places",
                  optional=True, fixed_per_run=False),
        Parameter("early_stopping", "bool", False,
                  "stop when the validation loss stops improving"),
        Parameter("patience", "int", 3, "epochs without improvement before early stopping",
                  minimum=0, maximum=100_000),
        Parameter("deterministic", "bool", False,
                  "enable TensorFlow op determinism (slower, reproducible)"),
        Parameter("mixed_precision", "bool", False,
                  "train under Keras's mixed_float16 policy (faster on GPUs with tensor cores, "
                  "slower on CPUs)"),
        Parameter("inference_batches", "int", 30,
                  "minimum number of timed inference batches after each training; 0 skips "
                  "the inference measurement", minimum=0, maximum=1_000_000),
        Parameter("country_iso_code", "str", "BEL",
                  "ISO 3166-1 alpha-3 code of the electricity mix used for emissions"),
        Parameter("measure_power_secs", "float", 1.0, "CodeCarbon power sampling interval, s",
                  minimum=0.0, maximum=math.inf, exclusive=True),
        Parameter("tracking_mode", "str", "machine", "CodeCarbon tracking mode",
                  choices=TRACKING_MODES),
        Parameter("idle_duration_s", "float", 5.0,
                  "length of the once-per-run idle power measurement, s", minimum=0.0,
                  maximum=math.inf, exclusive=True, fixed_per_run=False),
        Parameter("architectures_per_process", "int", 10,
                  "trainings per child process before it is replaced, which bounds memory over "
                  "long batches; 0 trains in the notebook's own process", minimum=0,
                  maximum=1_000_000, fixed_per_run=False),
        Parameter("retry_failed", "bool", False,
                  "train again the architectures whose training failed", fixed_per_run=False),
        Parameter("shard", "str", None,
                  "train only shard INDEX/COUNT of the architectures, such as 1/4; give each "
                  "shard its own output directory and combine them with `cnngen merge`",
                  optional=True),
        # 04_evaluate_predictors.
        Parameter("results_dir", "path", None,
                  "results to evaluate: a run directory or a folder written by "
                  "scripts/export_reference.py, such as data/reference; None for output_dir",
                  optional=True, fixed_per_run=False),
        Parameter("eval_predictors", "str_list", ["Neural", "Img", "Py_code", "DT", "RF", "GB"],
                  "predictors to evaluate, in table order", fixed_per_run=False),
        Parameter("train_sizes", "str_list", ["10", "25", "50", "100", "200", "400", "all"],
                  "training-set sizes in distinct architectures, or all", fixed_per_run=False),
        Parameter("torch_train_sizes", "str_list", ["10", "25", "50", "100"],
                  "training-set sizes at which Neural and Img are fitted", fixed_per_run=False),
        Parameter("repetitions", "int", 10, "subsamples and seeds per training size",
                  minimum=1, maximum=10_000, fixed_per_run=False),
        Parameter("max_architectures", "int", None,
                  "evaluate only the first N architectures by id; None for all", minimum=1,
                  maximum=10**9, optional=True, fixed_per_run=False),
        Parameter("neural_epochs", "int", 100, "training epochs of the Neural predictor",
                  minimum=1, maximum=100_000, fixed_per_run=False),
        Parameter("image_epochs", "int", 5, "training epochs of the Img predictor", minimum=1,
                  maximum=100_000, fixed_per_run=False),
        Parameter("proxies", "bool", False,
                  "compute the zero-cost proxies synflow and NASWOT (cached in the run)",
                  fixed_per_run=False),
        Parameter("num_candidates", "int", 1000,
                  "sampled architectures whose accuracy and energy notebook 04 predicts with "
                  "RF fitted on every training; 0 skips", minimum=0, maximum=10**7,
                  fixed_per_run=False),
    )
}  # fmt: skip


def default_parameters() -> dict[str, Any]:
    """Return every declared parameter with its default value."""
    return {name: _copy(parameter.default) for name, parameter in PARAMETERS.items()}


def validate_parameters(
    values: Mapping[str, Any],
    *,
    source: str | os.PathLike | None = None,
    fill_defaults: bool = True,
) -> dict[str, Any]:
    """Check parameter values and convert the few documented string forms.

    Args:
        values: Parameter names and values, for example from a YAML file or a notebook.
        source: The file the values come from, named in error messages.
        fill_defaults: Whether to add the declared parameters missing from ``values``.

    Returns:
        The checked values, in the order of :data:`PARAMETERS`.

    Raises:
        ParameterError: If a name is unknown or a value has the wrong type or range. The
            message lists every invalid parameter, not only the first.
    """
    where = f" in {os.fspath(source)}" if source is not None else ""
    if not isinstance(values, Mapping):
        raise ParameterError(
            f"parameters{where} must be a mapping of names to values, got "
            f"{type(values).__name__}; write one `name: value` per line"
        )

    problems = [_unknown_message(name) for name in values if name not in PARAMETERS]
    checked = {}
    for name, value in values.items():
        if name in PARAMETERS:
            try:
                checked[name] = _check_value(PARAMETERS[name], value)
            except ParameterError as error:
                problems.append(str(error))
    if problems:
        raise ParameterError(f"invalid parameters{where}:\n  " + "\n  ".join(problems))

    names = PARAMETERS if fill_defaults else checked
    defaults = default_parameters()
    return {name: checked[name] if name in checked else defaults[name] for name in names}


def load_parameters(
    source: str | os.PathLike | Mapping[str, Any], *, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Read parameters from a YAML file or a dictionary, apply overrides, and validate them.

    Args:
        source: A YAML file of ``name: value`` lines, or a dictionary of the same.
        overrides: Values that replace those of ``source``, for example from a command line.

    Returns:
        Every declared parameter, checked, with defaults for those not given.

    Raises:
        ParameterError: If the file is missing, empty, not valid YAML or repeats a name, or a
            parameter is invalid (see :func:`validate_parameters`).
    """
    path = None
    if isinstance(source, Mapping):
        values = dict(source)
    else:
        path = Path(source)
        values = read_parameters_file(path)
    if overrides:
        # Check the overrides on their own first, so an error does not blame the file.
        try:
            validate_parameters(dict(overrides), fill_defaults=False)
        except ParameterError as error:
            problems = str(error).split("\n", 1)[-1]
            raise ParameterError(f"invalid parameters given with -p:\n{problems}") from None
    values.update(overrides or {})
    return validate_parameters(values, source=path)


def read_parameters_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML parameters file without validating the values.

    Raises:
        ParameterError: If the file is missing, empty, not valid YAML, not a mapping, or
            repeats a name (PyYAML would keep the last value without a warning).
    """
    path = Path(path)
    if not path.is_file():
        raise ParameterError(
            f"parameters file {path} not found; pass a YAML file such as parameters/quickstart.yaml"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ParameterError(
            f"parameters file {path} is not UTF-8 text (byte {error.start}); save it as UTF-8"
        ) from None
    try:
        values = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        position = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ParameterError(
            f"parameters file {path} is not valid YAML: {position}{error.problem}; "
            "write one `name: value` per line"
        ) from None
    if values is None:
        raise ParameterError(
            f"parameters file {path} is empty; write one `name: value` per line, "
            "for example `dataset: digits`"
        )
    if not isinstance(values, dict):
        raise ParameterError(
            f"parameters file {path} contains a {type(values).__name__}, not a mapping; "
            "write one `name: value` per line"
        )
    return values


def write_parameters(params: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write parameters as YAML, one ``name: value`` per line in declaration order."""
    path = Path(path)
    text = yaml.safe_dump(dict(params), sort_keys=False, default_flow_style=None)
    path.write_text(text, encoding="utf-8")
    return path


def changed_fixed_parameters(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Return the names of fixed-per-run parameters whose value differs between two sets."""
    return [
        name
        for name, parameter in PARAMETERS.items()
        if parameter.fixed_per_run and previous.get(name) != current.get(name)
    ]


def training_config(params: Mapping[str, Any]):
    """Return the :class:`cnngen.training_config.TrainingConfig` of validated parameters."""
    from cnngen.training_config import TrainingConfig

    names = (
        "epochs", "batch_size", "learning_rate", "seed", "country_iso_code",
        "measure_power_secs", "tracking_mode", "idle_duration_s", "early_stopping",
        "patience", "deterministic", "mixed_precision", "inference_batches",
    )  # fmt: skip
    return TrainingConfig(**{name: params[name] for name in names})


def dataset_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the keyword arguments of :func:`cnngen.datasets.load_dataset` for parameters."""
    names = ("data_dir", "seed", "test_fraction", "validation_fraction", "max_train", "max_test")
    return {"name": params["dataset"], **{name: params[name] for name in names}}


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"parameter {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _unknown_message(name: object) -> str:
    message = f"unknown parameter {name!r}"
    close = difflib.get_close_matches(str(name), PARAMETERS, n=1, cutoff=0.6)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    return f"{message}; the parameters are listed in docs/notebooks.md"


def _check_value(parameter: Parameter, value: Any) -> Any:
    if parameter.optional and (value is None or value in ("None", "null")):
        return None
    if value is None:
        raise _invalid(parameter, value, "it has no value (null)")
    converted = _CONVERTERS[parameter.kind](parameter, value)
    if parameter.choices is not None and converted not in parameter.choices:
        raise _invalid(parameter, value, _choices_hint(parameter, converted))
    if parameter.kind in ("int", "float") and not _in_range(parameter, converted):
        raise _invalid(parameter, value, f"expected a value in {_describe_range(parameter)}")
    if parameter.name == "country_iso_code":
        _check_country(parameter, converted)
    return converted


def _to_int(parameter: Parameter, value: Any) -> int:
    if isinstance(value, str) and _INT_PATTERN.fullmatch(value.strip()):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(parameter, value, "expected an integer")
    return value


def _to_float(parameter: Parameter, value: Any) -> float:
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _invalid(parameter, value, "expected a number such as 0.001") from None
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise _invalid(parameter, value, "expected a number")
    if not math.isfinite(number):
        raise _invalid(parameter, value, "expected a finite number")
    return float(number)


def _to_bool(parameter: Parameter, value: Any) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise _invalid(parameter, value, "expected true or false")
    return value


def _to_str(parameter: Parameter, value: Any) -> str:
    if isinstance(value, bool):
        raise _invalid(
            parameter,
            value,
            "expected a string, but YAML 1.1 reads unquoted yes, no, on and off as booleans; "
            "quote the value",
        )
    if not isinstance(value, str) or not value.strip():
        raise _invalid(parameter, value, "expected a non-empty string; quote the value")
    return value


def _to_str_list(parameter: Parameter, value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise _invalid(parameter, value, 'expected a list such as ["a", "b"]') from None
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise _invalid(parameter, value, 'expected a list of strings such as ["a", "b"]')
    if not all(isinstance(item, str) and item.strip() for item in value):
        raise _invalid(parameter, value, "expected every item to be a non-empty string")
    return value


_CONVERTERS = {
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "str": _to_str,
    "path": _to_str,
    "str_list": _to_str_list,
}


def _in_range(parameter: Parameter, value: float) -> bool:
    low, high = parameter.minimum, parameter.maximum
    if parameter.exclusive:
        return (low is None or value > low) and (high is None or value < high)
    return (low is None or value >= low) and (high is None or value <= high)


def _describe_range(parameter: Parameter) -> str:
    opening, closing = ("(", ")") if parameter.exclusive else ("[", "]")
    low = "-inf" if parameter.minimum is None else _format_bound(parameter.minimum)
    high = "inf" if parameter.maximum is None else _format_bound(parameter.maximum)
    return f"{opening}{low}, {high}{closing}"


def _format_bound(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _choices_hint(parameter: Parameter, value: str) -> str:
    hint = f"expected one of {', '.join(parameter.choices)}"
    close = difflib.get_close_matches(value, parameter.choices, n=1, cutoff=0.5)
    return f"{hint}; did you mean {close[0]!r}?" if close else hint


def _check_country(parameter: Parameter, value: str) -> None:
    from cnngen.energy import validate_country_iso_code

    try:
        validate_country_iso_code(value)
    except MeasurementError as error:
        raise _invalid(parameter, value, str(error).split(": ", 1)[-1]) from None


def _invalid(parameter: Parameter, value: Any, reason: str) -> ParameterError:
    return ParameterError(f"invalid {parameter.name} {value!r} ({parameter.help}): {reason}")


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value
