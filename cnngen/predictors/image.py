"""The Img predictor: a convolutional network on the plot_model picture of an architecture.

:class:`ImagePredictor` reads each architecture's plot_model PNG (``architectures/<id>.png``
of a run directory), or draws it from the phrase into a cache folder when the file is missing,
and regresses accuracy or energy from the picture alone.

Pictures are turned into tensors with torchvision: grayscale, inverted so that the background
is 0, padded with background to the input's aspect ratio, and resized to ``image_height`` x
``image_width`` (512 x 256 by default). plot_model draws one row of boxes per layer, about 120
pixels high at 72 dpi, so pictures are tall (1,400 to 2,600 pixels high and 500 to 1,300 wide
for sampled architectures) and their height grows with depth. Padding to a 2:1 aspect before
resizing keeps that: a deep network fills the frame and a shallow one leaves background below
it, whereas stretching every picture to the same height would hide the depth. In a 512-pixel
frame, a layer of a 2,600-pixel picture is still about 23 pixels high, so boxes, branches and
merges stay visible, though the text does not.

Two backbones are trained from scratch (no pretrained weights): ``"small"`` (the default),
five stride-2 convolutions with batch normalisation, and torchvision's ``"resnet18"`` with a
one-channel stem and a one-output head. ResNet-18 is about 80 times slower on a CPU; see
:class:`ImagePredictor` for measured times.

Training, seeding and saving come from :class:`cnngen.predictors.neural.TorchRegressor`;
drawing pictures from :mod:`cnngen.keras_source`. PyTorch, torchvision and Keras are imported
inside functions, so importing this module stays light.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from cnngen.errors import CNNGenError
from cnngen.predictors.neural import TorchRegressor, import_torch, resolve_inputs
from cnngen.solver import ResolvedArchitecture

logger = logging.getLogger(__name__)

BACKBONES = ("small", "resnet18")
_SMALL_CHANNELS = (16, 32, 64, 64, 128)


class ImagePredictor(TorchRegressor):
    """CNN regressor of an architecture's accuracy or energy from its plot_model picture.

    ``fit`` and ``predict`` take a DataFrame with ``phrase``, ``dataset``, ``seed`` and
    ``image_path`` (such as ``ResultsStore.trainings_frame()``), or a list of resolved
    architectures, whose pictures are drawn into ``cache_dir``. A relative ``image_path`` is
    read from the ``run_dir`` argument, or from a ``run_dir`` column. A row without a picture
    path, or whose PNG file is missing, gets its picture drawn from its phrase, which needs
    TensorFlow and Graphviz. A picture folder that does not exist raises an error, because it
    points to a wrong ``run_dir``.

    Fitting 100 architectures for 30 epochs took 197 s with the small backbone, plus 141 s to
    draw 125 pictures, on 2 busy CPU cores (load average 3 to 5, one PyTorch thread). One
    ResNet-18 epoch took 88 s, so 30 epochs would take about 45 minutes. These were measured
    with ``benchmarks/bench_torch_predictors.py``.

    Args:
        backbone: ``"small"`` (five strided convolutions) or ``"resnet18"``.
        image_height: Height of the network's input in pixels.
        image_width: Width of the network's input in pixels.
        learning_rate: Adam's learning rate at the start of the cosine schedule.
        weight_decay: Adam's L2 penalty.
        epochs: Passes over the training architectures.
        batch_size: Pictures per optimizer step.
        cache_dir: Folder of pictures drawn from phrases; None uses
            ``$XDG_CACHE_HOME/cnngen/pictures`` (``~/.cache/cnngen/pictures``).
        device: ``"cpu"``, ``"cuda"`` or None to use CUDA when available.
        verbose: Show a progress bar over epochs.
        random_state: Seed of the weights and batch order; None draws one from NumPy's
            global generator.

    Attributes:
        network_: The trained ``torch.nn.Module``, in evaluation mode.
        target_mean_: Mean of the training targets.
        target_std_: Their standard deviation (1 when all are equal).
        loss_curve_: Mean training loss (MSE on z-scored targets) of each epoch.
        device_: The device the network runs on.
    """

    def __init__(
        self,
        backbone: str = "small",
        image_height: int = 512,
        image_width: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        epochs: int = 30,
        batch_size: int = 16,
        cache_dir: str | os.PathLike | None = None,
        device: str | None = None,
        verbose: bool = False,
        random_state: int | None = None,
    ):
        self.backbone = backbone
        self.image_height = image_height
        self.image_width = image_width
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.device = device
        self.verbose = verbose
        self.random_state = random_state

    def fit(self, X, y, run_dir: str | os.PathLike | None = None) -> ImagePredictor:  # noqa: N803
        """Fit the network on the pictures of architectures X and targets y.

        Args:
            X: Rows as described in the class docstring.
            y: One finite target per row (test accuracy, energy in kWh, ...).
            run_dir: Folder that relative ``image_path`` values are read from.

        Returns:
            This predictor.

        Raises:
            CNNGenError: If a hyper-parameter or input is invalid, a picture folder does not
                exist, a picture cannot be drawn, or y contains missing values or has another
                length than X.
        """
        self._check_parameters()
        pictures = self.picture_tensors(X, run_dir)
        z_targets = self._normalise_targets(y, len(pictures))
        self._fit_network(_PictureBatches(pictures), z_targets)
        return self

    def predict(self, X, run_dir: str | os.PathLike | None = None) -> np.ndarray:  # noqa: N803
        """Predict one target per row of X.

        Raises:
            sklearn.exceptions.NotFittedError: If called before :meth:`fit`.
            CNNGenError: If X is invalid or a picture cannot be found or drawn.
        """
        check_is_fitted(self, "network_")
        pictures = self.picture_tensors(X, run_dir)
        return self._predict_network(_PictureBatches(pictures), len(pictures))

    def picture_tensors(self, X, run_dir: str | os.PathLike | None = None):  # noqa: N803
        """Load the picture of each row of X as the network reads it, drawing missing ones.

        Returns:
            A uint8 tensor of shape ``(len(X), 1, image_height, image_width)`` in which 0 is
            the background.

        Raises:
            CNNGenError: If X is invalid, a picture folder does not exist, or a picture cannot
                be read or drawn.
        """
        from tqdm.auto import tqdm

        torch = import_torch()
        paths = picture_paths(X, run_dir, self._cache_dir())
        paths = tqdm(paths, desc="pictures", unit="picture", disable=not self.verbose)
        tensors = [load_picture(path, self.image_height, self.image_width) for path in paths]
        return torch.stack(tensors)

    def _check_parameters(self) -> None:
        self._check_training_parameters()
        if self.backbone not in BACKBONES:
            raise CNNGenError(
                f"invalid backbone {self.backbone!r}: expected one of {', '.join(BACKBONES)}"
            )
        # Five stride-2 stages halve the input five times.
        for name in ("image_height", "image_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 32:
                raise CNNGenError(f"invalid {name} {value!r}: expected an integer >= 32 pixels")

    def _cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(cache_home) / "cnngen" / "pictures"

    def _build_network(self):
        if self.backbone == "resnet18":
            return _resnet18()
        return _small_network()


def picture_paths(X, run_dir, cache_dir: Path) -> list[Path]:  # noqa: N803
    """Find the PNG file of each row, drawing missing pictures into ``cache_dir``.

    Raises:
        CNNGenError: If a relative ``image_path`` has no run directory, or a picture folder
            does not exist.
    """
    resolved = resolve_inputs(X)
    if not hasattr(X, "columns"):
        return [draw_cached_picture(item, cache_dir) for item in resolved]
    image_paths = X["image_path"] if "image_path" in X.columns else [None] * len(X)
    run_dirs = X["run_dir"] if "run_dir" in X.columns else [run_dir] * len(X)
    rows = zip(image_paths, run_dirs, strict=True)
    paths = [_stored_path(image_path, base) for image_path, base in rows]
    missing = [path for path in paths if path is not None and not path.is_file()]
    if missing:
        logger.warning(
            "%d pictures are missing, such as %s; drawing them from their phrases into %s",
            len(missing), missing[0], cache_dir,
        )  # fmt: skip
    return [
        draw_cached_picture(item, cache_dir) if path is None or not path.is_file() else path
        for path, item in zip(paths, resolved, strict=True)
    ]


def _stored_path(image_path, run_dir) -> Path | None:
    if not isinstance(image_path, str | os.PathLike) or not str(image_path):
        return None
    path = Path(image_path)
    if not path.is_absolute():
        if not isinstance(run_dir, str | os.PathLike):
            raise CNNGenError(
                f"image_path {str(image_path)!r} is relative, but no run directory is given; "
                "pass run_dir= to fit and predict, or add a run_dir column"
            )
        path = Path(run_dir) / path
    if not path.parent.is_dir():
        raise CNNGenError(
            f"picture folder {str(path.parent)!r} of image_path {str(image_path)!r} not found; "
            "check run_dir, or drop the image_path column to draw pictures from the phrases"
        )
    return path


def draw_cached_picture(resolved: ResolvedArchitecture, cache_dir: Path) -> Path:
    """Draw the plot_model picture of an architecture into ``cache_dir``, unless already there.

    The file name is a hash of the pinned phrase, input shape and class count.

    Raises:
        CNNGenError: If Graphviz is missing or the picture cannot be drawn.
    """
    key = f"{resolved.to_phrase()}|{tuple(resolved.input_shape)}|{resolved.num_classes}"
    path = Path(cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.png"
    if path.is_file() and path.stat().st_size > 0:
        return path
    import keras

    from cnngen.keras_source import load_build_model, render_png, write_source

    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary files are named after the process, so parallel processes never share one.
    source = write_source(resolved, path.with_name(f"{path.stem}_{os.getpid()}.py"))
    partial = path.with_name(f"{path.stem}_{os.getpid()}.png")
    try:
        model = load_build_model(source)()
        try:
            render_png(model, partial)
        except AssertionError:
            # NOTE: Graphviz 2.43 aborts on some graphs with orthogonal edges, and pydot
            # reports it as an AssertionError; straight edge segments draw those graphs.
            keras.utils.plot_model(
                model, to_file=str(partial), show_shapes=True, show_layer_names=True, dpi=72,
                splines="polyline",
            )  # fmt: skip
        if not partial.is_file():
            raise CNNGenError(
                f"plot_model wrote no picture for {resolved.to_phrase()!r}; check that pydot "
                "and Graphviz are installed"
            )
        os.replace(partial, path)
    finally:
        source.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
        keras.backend.clear_session()
    return path


def load_picture(path: Path, height: int, width: int):
    """Read a PNG as an inverted grayscale ``(1, height, width)`` uint8 tensor, letterboxed."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    import_torch()
    from torchvision.transforms.v2 import functional

    try:
        with Image.open(path) as image:
            gray = ImageOps.invert(image.convert("L"))
    except (OSError, UnidentifiedImageError) as error:
        raise CNNGenError(f"could not read picture {str(path)!r}: {error}") from None
    picture = functional.pil_to_tensor(gray)
    # Pad with background to the frame's aspect ratio, centring the picture across and adding
    # rows below it.
    rows, columns = picture.shape[1:]
    padded_columns = max(columns, math.ceil(rows * width / height))
    padded_rows = max(rows, math.ceil(columns * height / width))
    left = (padded_columns - columns) // 2
    padding = [left, 0, padded_columns - columns - left, padded_rows - rows]
    picture = functional.pad(picture, padding, fill=0)
    return functional.resize(picture, [height, width], antialias=True)


class _PictureBatches:
    def __init__(self, pictures):
        self.pictures = pictures

    def __call__(self, rows: np.ndarray, device: str):
        torch = import_torch()

        batch = self.pictures[torch.as_tensor(rows)].to(device)
        return (batch.float() / 255.0,)


def _small_network():
    from torch import nn

    layers, channels = [], 1
    for index, width in enumerate(_SMALL_CHANNELS):
        kernel = 5 if index == 0 else 3
        layers += [
            nn.Conv2d(channels, width, kernel, stride=2, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        channels = width
    # A 4 x 2 grid keeps where in the picture (top, bottom, left, right) the features are.
    layers += [nn.AdaptiveAvgPool2d((4, 2)), nn.Flatten(), nn.Linear(channels * 8, 1)]
    return nn.Sequential(*layers)


def _resnet18():
    from torch import nn
    from torchvision.models import resnet18

    network = resnet18(weights=None, num_classes=1)
    network.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return network
