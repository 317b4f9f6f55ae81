"""The Neural Predictor (Wen et al., 2019), and the PyTorch training it shares with Img.

:class:`NeuralPredictor` is a graph convolutional network over the Keras layer graph of
:mod:`cnngen.graph`. Each of its three directed GCN layers (144 units) averages two passes: one
over the row-normalised adjacency with self-loops, which carries information from a layer to
its readers, and one over the transpose, which carries it back. A ReLU follows each pass and
dropout (0.1) each layer. The node states are mean-pooled and go through a 144-to-128 fully
connected layer with a ReLU, then a linear output. Training uses Adam (learning rate 1e-4,
weight decay 1e-3) with a cosine schedule, 300 epochs and batches of 10: the settings of Wen et
al., "Neural Predictor for Neural Architecture Search" (arXiv:1912.00848).

:class:`TorchRegressor` is the base of both PyTorch predictors, this one and
:class:`cnngen.predictors.image.ImagePredictor`. It resolves the input rows, z-normalises the
targets, trains with gradients cleared before every step, seeds PyTorch from ``random_state``
without changing the caller's global generator, and saves the weights, hyper-parameters and
target scale to a file with a format header.

Building graphs is left to :mod:`cnngen.graph` and scoring to :mod:`cnngen.evaluation`.
PyTorch is imported inside functions, so importing this module stays light. Fitting needs the
``torch`` extra (``pip install -e .[torch]``).
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from cnngen import __version__
from cnngen.errors import CNNGenError
from cnngen.graph import FEATURE_NAMES, architecture_graph
from cnngen.solver import ResolvedArchitecture

logger = logging.getLogger(__name__)

FILE_FORMAT = "cnngen-torch-predictor"
FILE_FORMAT_VERSION = 1
INPUT_COLUMNS = ("phrase", "dataset")
_PREDICT_BATCH_SIZE = 256


def resolve_inputs(X) -> list[ResolvedArchitecture]:  # noqa: N803 (scikit-learn's argument name)
    """Return the resolved architectures of predictor input rows.

    Args:
        X: A DataFrame with ``phrase`` and ``dataset`` columns and, for phrases that leave
            values open, ``seed`` (such as ``ResultsStore.trainings_frame()``), or a list of
            :class:`cnngen.solver.ResolvedArchitecture`.

    Raises:
        CNNGenError: If X is empty, lacks a column, contains other objects, or a row's
            phrase does not parse or solve for its data set. An unknown data set raises
            DatasetError.
    """
    from cnngen.features import resolve_stored

    if hasattr(X, "columns"):
        missing = [name for name in INPUT_COLUMNS if name not in X.columns]
        if missing:
            raise CNNGenError(
                f"the input table lacks the columns {missing} (columns: {list(X.columns)}); "
                "pass rows with phrase, dataset and seed, such as ResultsStore.trainings_frame()"
            )
        seeds = X["seed"] if "seed" in X.columns else [None] * len(X)
        rows = zip(X["phrase"], seeds, X["dataset"], strict=True)
        resolved = [
            resolve_stored(phrase, _seed_or_none(seed), name) for phrase, seed, name in rows
        ]
    else:
        resolved = list(X)
        others = {type(item).__name__ for item in resolved if not _is_resolved(item)}
        if others:
            raise CNNGenError(
                f"X contains {sorted(others)} objects; pass a DataFrame with phrase, dataset "
                "and seed columns, or a list of cnngen.solver.ResolvedArchitecture"
            )
    if not resolved:
        raise CNNGenError("X contains no architectures; pass at least one row")
    return resolved


def import_torch():
    """Import and return PyTorch, first keeping it from loading triton after TensorFlow.

    NOTE: with tensorflow-cpu 2.21, torch 2.14.1 and triton 3.8, loading triton after
    TensorFlow crashes the process (segmentation fault), and torch.optim, torch._dynamo and
    torchvision load triton on first use. When TensorFlow is loaded and triton is not, triton
    is marked as absent, which only torch.compile on GPUs needs. Call this before each use of
    PyTorch that may follow a TensorFlow import, such as drawing pictures with Keras.
    """
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        logger.debug("TensorFlow is loaded: marking triton as absent before using PyTorch")
        sys.modules["triton"] = None
    import torch

    return torch


def select_device(device: str | None) -> str:
    """Return ``device``, or ``"cuda"`` when it is None and CUDA is available, else ``"cpu"``.

    Raises:
        CNNGenError: If CUDA is requested but not available.
    """
    torch = import_torch()

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise CNNGenError(
            f"device {device!r} was requested but PyTorch finds no CUDA GPU; pass device='cpu' "
            "or device=None to choose automatically"
        )
    return str(device)


class TorchRegressor(RegressorMixin, BaseEstimator):
    """Base of the PyTorch predictors: targets, seeded training, prediction, save and load.

    Subclasses define their hyper-parameters in ``__init__`` (with ``epochs``, ``batch_size``,
    ``learning_rate``, ``weight_decay``, ``device``, ``verbose`` and ``random_state``),
    :meth:`_build_network`, and the names of extra learned attributes that :meth:`save` keeps.

    NOTE: the same random_state gives the same predictions on a CPU, which the tests check.
    On CUDA, some kernels are not deterministic, so predictions may differ slightly.
    """

    _saved_attributes: tuple[str, ...] = ()

    def _build_network(self):
        raise NotImplementedError

    def _check_training_parameters(self) -> None:
        checks = [
            ("epochs", _is_integer(self.epochs) and self.epochs >= 1, "an integer >= 1"),
            (
                "batch_size",
                _is_integer(self.batch_size) and self.batch_size >= 1,
                "an integer >= 1",
            ),
            ("learning_rate", _is_number(self.learning_rate) and self.learning_rate > 0, "> 0"),
            ("weight_decay", _is_number(self.weight_decay) and self.weight_decay >= 0, ">= 0"),
        ]
        for name, valid, expected in checks:
            if not valid:
                raise CNNGenError(f"invalid {name} {getattr(self, name)!r}: expected {expected}")

    def _normalise_targets(self, y, num_rows: int) -> np.ndarray:
        """Check the targets, store their mean and standard deviation, and return z-scores."""
        target = np.asarray(y, dtype=float)
        if target.ndim != 1 or len(target) != num_rows:
            raise CNNGenError(
                f"y has shape {target.shape} but X has {num_rows} rows; pass one target per row"
            )
        if not np.all(np.isfinite(target)):
            raise CNNGenError(
                f"y contains {int(np.sum(~np.isfinite(target)))} missing or infinite values; "
                "drop the rows of failed trainings before fitting"
            )
        self.target_mean_ = float(target.mean())
        spread = float(target.std())
        self.target_std_ = spread if spread > 0 else 1.0
        return (target - self.target_mean_) / self.target_std_

    def _fit_network(self, make_batch, z_targets: np.ndarray) -> None:
        """Build and train the network on z-scored targets; ``make_batch(rows, device)``."""
        torch = import_torch()

        self.device_ = select_device(self.device)
        started = time.perf_counter()
        with _seeded_torch(_torch_seed(self.random_state), self.device_) as generator:
            network = self._build_network().to(self.device_)
            targets = torch.as_tensor(z_targets, dtype=torch.float32, device=self.device_)
            self.loss_curve_ = _train(network, make_batch, targets, self, generator)
        self.network_ = network.eval()
        logger.info(
            "%s fitted on %d architectures in %.1f s on %s; final training loss %.4g",
            type(self).__name__, len(z_targets), time.perf_counter() - started, self.device_,
            self.loss_curve_[-1],
        )  # fmt: skip

    def _predict_network(self, make_batch, num_rows: int) -> np.ndarray:
        torch = import_torch()

        check_is_fitted(self, "network_")
        outputs = []
        with torch.no_grad():
            for start in range(0, num_rows, _PREDICT_BATCH_SIZE):
                rows = np.arange(start, min(start + _PREDICT_BATCH_SIZE, num_rows))
                outputs.append(
                    self.network_(*make_batch(rows, self.device_)).reshape(-1).cpu().numpy()
                )
        return np.concatenate(outputs).astype(float) * self.target_std_ + self.target_mean_

    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights, hyper-parameters and target scale to a file, and return the path.

        The file is read by :meth:`load` with ``torch.load(weights_only=True)``, which does
        not run code from the file.

        Raises:
            sklearn.exceptions.NotFittedError: If called before ``fit``.
            CNNGenError: If random_state is not an integer or None, or the file cannot be
                written.
        """
        torch = import_torch()

        check_is_fitted(self, "network_")
        # Paths are stored as text, because loading with weights_only accepts no Path objects.
        params = {
            name: os.fspath(value) if isinstance(value, os.PathLike) else value
            for name, value in self.get_params().items()
        }
        if params["random_state"] is not None and not _is_integer(params["random_state"]):
            raise CNNGenError(
                f"cannot save a predictor with random_state {params['random_state']!r}; set "
                "random_state to an integer or None before fitting"
            )
        payload = {
            "format": FILE_FORMAT,
            "format_version": FILE_FORMAT_VERSION,
            "class": type(self).__name__,
            "cnngen_version": __version__,
            "torch_version": str(torch.__version__),
            "params": params,
            "learned": {name: getattr(self, name) for name in self._learned_names()},
            "state_dict": {k: v.detach().cpu() for k, v in self.network_.state_dict().items()},
        }
        path = Path(path)
        if not path.parent.is_dir():
            raise CNNGenError(
                f"folder {str(path.parent)!r} not found, so predictor file {path.name!r} cannot "
                "be written; create the folder first"
            )
        try:
            torch.save(payload, path)
        except OSError as error:
            raise CNNGenError(f"could not write predictor file {str(path)!r}: {error}") from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None):
        """Read a predictor written by :meth:`save`.

        Args:
            path: The file.
            device: Where to place the network; None keeps the saved ``device`` setting,
                which is None (automatic) unless one was chosen before fitting.

        Raises:
            CNNGenError: If the file is missing, is not a CNNGen PyTorch predictor file, has
                another format version, or contains another kind of predictor.
        """
        payload = _read_payload(Path(path))
        if payload["class"] != cls.__name__:
            raise CNNGenError(
                f"{str(path)!r} contains a predictor of class {payload['class']}, not "
                f"{cls.__name__}; load it with that class"
            )
        predictor = cls(**payload["params"])
        if device is not None:
            predictor.device = device
        for name, value in payload["learned"].items():
            setattr(predictor, name, value)
        predictor.device_ = select_device(predictor.device)
        network = predictor._build_network()
        network.load_state_dict(payload["state_dict"])
        predictor.network_ = network.to(predictor.device_).eval()
        return predictor

    def _learned_names(self) -> tuple[str, ...]:
        return ("target_mean_", "target_std_", "loss_curve_", *self._saved_attributes)


class NeuralPredictor(TorchRegressor):
    """Graph convolutional regressor of an architecture's accuracy or energy (Wen et al.).

    ``fit`` and ``predict`` take the rows described in :func:`resolve_inputs`: a DataFrame
    with ``phrase``, ``dataset`` and ``seed``, or a list of resolved architectures.

    With the default settings, fitting 100 architectures took 54 s on 2 CPU cores at load
    average 3.5, and 110 s at load average 3 to 5 (one PyTorch thread, measured with
    ``benchmarks/bench_torch_predictors.py``). On busy cores, PyTorch's default of two
    threads was 4 times slower than one, which ``torch.set_num_threads(1)`` selects.

    Args:
        hidden_units: Units of each GCN layer.
        num_gcn_layers: Number of directed GCN layers.
        fc_units: Units of the fully connected layer after pooling.
        dropout: Dropout rate after each GCN layer, in [0, 1).
        learning_rate: Adam's learning rate at the start of the cosine schedule.
        weight_decay: Adam's L2 penalty.
        epochs: Passes over the training architectures.
        batch_size: Architectures per optimizer step.
        device: ``"cpu"``, ``"cuda"`` or None to use CUDA when available.
        verbose: Show a progress bar over epochs.
        random_state: Seed of the weights, dropout and batch order; None draws one from
            NumPy's global generator.

    Attributes:
        network_: The trained ``torch.nn.Module``, in evaluation mode.
        target_mean_: Mean of the training targets.
        target_std_: Their standard deviation (1 when all are equal).
        loss_curve_: Mean training loss (MSE on z-scored targets) of each epoch.
        device_: The device the network runs on.
    """

    _saved_attributes = ("num_node_features_",)

    def __init__(
        self,
        hidden_units: int = 144,
        num_gcn_layers: int = 3,
        fc_units: int = 128,
        dropout: float = 0.1,
        learning_rate: float = 1e-4,
        weight_decay: float = 1e-3,
        epochs: int = 300,
        batch_size: int = 10,
        device: str | None = None,
        verbose: bool = False,
        random_state: int | None = None,
    ):
        self.hidden_units = hidden_units
        self.num_gcn_layers = num_gcn_layers
        self.fc_units = fc_units
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.device = device
        self.verbose = verbose
        self.random_state = random_state

    def fit(self, X, y) -> NeuralPredictor:  # noqa: N803 (scikit-learn's argument name)
        """Fit the network on architectures X and targets y.

        Args:
            X: Rows as described in :func:`resolve_inputs`.
            y: One finite target per row (test accuracy, energy in kWh, ...).

        Returns:
            This predictor.

        Raises:
            CNNGenError: If a hyper-parameter or input is invalid (see :func:`resolve_inputs`),
                or y contains missing values or has another length than X.
        """
        self._check_parameters()
        graphs = [architecture_graph(resolved) for resolved in resolve_inputs(X)]
        z_targets = self._normalise_targets(y, len(graphs))
        self.num_node_features_ = len(FEATURE_NAMES)
        self._fit_network(_GraphBatches(graphs), z_targets)
        return self

    def predict(self, X) -> np.ndarray:  # noqa: N803 (scikit-learn's argument name)
        """Predict one target per row of X.

        Raises:
            sklearn.exceptions.NotFittedError: If called before :meth:`fit`.
            CNNGenError: If X is invalid (see :func:`resolve_inputs`).
        """
        check_is_fitted(self, "network_")
        graphs = [architecture_graph(resolved) for resolved in resolve_inputs(X)]
        return self._predict_network(_GraphBatches(graphs), len(graphs))

    def _check_parameters(self) -> None:
        self._check_training_parameters()
        for name in ("hidden_units", "num_gcn_layers", "fc_units"):
            value = getattr(self, name)
            if not (_is_integer(value) and value >= 1):
                raise CNNGenError(f"invalid {name} {value!r}: expected an integer >= 1")
        if not (_is_number(self.dropout) and 0 <= self.dropout < 1):
            raise CNNGenError(f"invalid dropout {self.dropout!r}: expected a rate in [0, 1)")

    def _build_network(self):
        return _graph_network(
            self.num_node_features_,
            self.hidden_units,
            self.num_gcn_layers,
            self.fc_units,
            self.dropout,
        )


class _GraphBatches:
    """Pads the graphs of a batch to its largest node count and returns their tensors."""

    def __init__(self, graphs):
        self.features = [graph.node_features for graph in graphs]
        # A node reads its inputs and itself going forward, its readers and itself going back.
        with_loops = [graph.adjacency + np.eye(graph.num_nodes) for graph in graphs]
        self.forward = [_row_normalised(matrix.T) for matrix in with_loops]
        self.backward = [_row_normalised(matrix) for matrix in with_loops]

    def __call__(self, rows: np.ndarray, device: str):
        torch = import_torch()

        num_nodes = max(len(self.features[row]) for row in rows)
        features = np.zeros((len(rows), num_nodes, self.features[rows[0]].shape[1]), np.float32)
        forward = np.zeros((len(rows), num_nodes, num_nodes), np.float32)
        backward = np.zeros_like(forward)
        mask = np.zeros((len(rows), num_nodes), np.float32)
        for slot, row in enumerate(rows):
            size = len(self.features[row])
            features[slot, :size] = self.features[row]
            forward[slot, :size, :size] = self.forward[row]
            backward[slot, :size, :size] = self.backward[row]
            mask[slot, :size] = 1.0
        arrays = (features, forward, backward, mask)
        return tuple(torch.from_numpy(array).to(device) for array in arrays)


def _row_normalised(matrix: np.ndarray) -> np.ndarray:
    return (matrix / matrix.sum(axis=1, keepdims=True)).astype(np.float32)


def _graph_network(num_features, hidden_units, num_gcn_layers, fc_units, dropout):
    """Build the GCN as a ``torch.nn.Module``; it maps padded graph tensors to one output each."""
    torch = import_torch()
    from torch import nn

    class DirectedGraphConvolution(nn.Module):
        def __init__(self, in_features: int, out_features: int):
            super().__init__()
            self.forward_weight = nn.Linear(in_features, out_features, bias=False)
            self.backward_weight = nn.Linear(in_features, out_features, bias=False)
            self.dropout = nn.Dropout(dropout)

        def forward(self, states, forward_adjacency, backward_adjacency):
            downstream = torch.relu(forward_adjacency @ self.forward_weight(states))
            upstream = torch.relu(backward_adjacency @ self.backward_weight(states))
            return self.dropout((downstream + upstream) / 2)

    class GraphRegressor(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [num_features] + [hidden_units] * num_gcn_layers
            self.convolutions = nn.ModuleList(
                DirectedGraphConvolution(a, b) for a, b in zip(widths, widths[1:], strict=False)
            )
            self.fully_connected = nn.Linear(hidden_units, fc_units)
            self.output = nn.Linear(fc_units, 1)

        def forward(self, features, forward_adjacency, backward_adjacency, mask):
            states = features
            for convolution in self.convolutions:
                states = convolution(states, forward_adjacency, backward_adjacency)
            # Mean over the graph's own nodes; padded nodes have mask 0.
            pooled = (states * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True)
            return self.output(torch.relu(self.fully_connected(pooled))).squeeze(-1)

    return GraphRegressor()


def _train(network, make_batch, targets, settings, generator) -> list[float]:
    """Train with Adam, MSE and a cosine schedule; return the mean loss of each epoch."""
    torch = import_torch()
    from tqdm.auto import tqdm

    num_rows = len(targets)
    steps_per_epoch = -(-num_rows // settings.batch_size)
    optimizer = torch.optim.Adam(
        network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=settings.epochs * steps_per_epoch
    )
    loss_function = torch.nn.MSELoss()
    curve = []
    network.train()
    epochs = tqdm(
        range(settings.epochs), desc="fitting", unit="epoch", disable=not settings.verbose
    )
    for _ in epochs:
        order = torch.randperm(num_rows, generator=generator).numpy()
        total = 0.0
        for start in range(0, num_rows, settings.batch_size):
            rows = order[start : start + settings.batch_size]
            # Gradients accumulate in PyTorch, so they are cleared before every step.
            optimizer.zero_grad()
            predicted = network(*make_batch(rows, targets.device)).reshape(-1)
            loss = loss_function(predicted, targets[rows])
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(rows)
        curve.append(total / num_rows)
        epochs.set_postfix(loss=f"{curve[-1]:.4g}")
    return curve


@contextlib.contextmanager
def _seeded_torch(seed: int, device: str):
    """Seed PyTorch inside a fork of its generators, and yield a generator for batch orders."""
    torch = import_torch()

    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed)


def _torch_seed(random_state) -> int:
    if _is_integer(random_state):
        return int(random_state)
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def _read_payload(path: Path) -> dict:
    torch = import_torch()

    if not path.is_file():
        raise CNNGenError(f"predictor file {str(path)!r} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a file of the wrong kind
        raise CNNGenError(
            f"{str(path)!r} is not a CNNGen PyTorch predictor file ({type(error).__name__}); "
            "pass a file written by the predictor's save()"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise CNNGenError(
            f"{str(path)!r} is not a CNNGen PyTorch predictor file; pass a file written by the "
            "predictor's save()"
        )
    if payload.get("format_version") != FILE_FORMAT_VERSION:
        raise CNNGenError(
            f"{str(path)!r} has predictor file format version {payload.get('format_version')!r}, "
            f"but this CNNGen {__version__} reads version {FILE_FORMAT_VERSION}; fit and save "
            "the predictor again, or load it with the CNNGen version that wrote it"
        )
    return payload


def _seed_or_none(value) -> int | None:
    import pandas as pd

    return None if value is None or pd.isna(value) else int(value)


def _is_resolved(item) -> bool:
    return isinstance(item, ResolvedArchitecture)


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
