"""Plots and summary tables of a run's results, for notebooks 03 and 04.

Every plot function draws on a new ``matplotlib.figure.Figure`` (rendered with Agg when saved,
so no pyplot state or display is needed), returns it, and writes ``<figures_dir>/<name>.png``
when a folder is given. Energy axis labels end in "estimated" unless the measurement
disclosure in the results store records that a hardware counter such as RAPL measured the CPU
energy.

Reading the store is left to :class:`cnngen.store.ResultsStore`, and scores to
:mod:`cnngen.evaluation`.
"""

from __future__ import annotations

import logging
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

from cnngen.errors import CNNGenError

logger = logging.getLogger(__name__)

STATUS_ORDER = ("ok", "diverged", "failed")
STATUS_COLOURS = {"ok": "tab:blue", "diverged": "tab:orange", "failed": "tab:red"}
TARGET_LABELS = {
    "test_accuracy": "test accuracy",
    "energy_kwh": "energy per training",
    "energy_per_epoch_kwh": "energy per epoch",
}


@dataclass
class RunResults:
    """The results of one run directory, or of a reference export of one.

    Attributes:
        output_dir: The run directory, or the export's folder.
        trainings: ``ResultsStore.trainings_frame()``: one row per training.
        epochs: ``ResultsStore.epochs_frame()``: one row per epoch, possibly empty.
        disclosure: The measurement disclosure, or None if the run recorded none.
        run_dir: The folder that relative code and picture paths are read from: the run
            directory, or None for an export, whose files are regenerated from the phrases.
    """

    output_dir: Path
    trainings: object
    epochs: object
    disclosure: dict | None
    run_dir: Path | None = None


def load_run(output_dir: str | os.PathLike) -> RunResults:
    """Read the results store of a run directory without locking it, or a reference export.

    A folder without ``results.sqlite`` but with the ``results.parquet`` and
    ``epochs.parquet`` of ``scripts/export_reference.py`` is read as an export.

    Raises:
        CNNGenError: If the directory has neither. The message names the commands that produce
            a store.
    """
    from cnngen.store import ResultsStore

    output_dir = Path(output_dir)
    db_path = output_dir / "results.sqlite"
    if not db_path.is_file() and (output_dir / "results.parquet").is_file():
        return _load_export(output_dir)
    if not db_path.is_file():
        raise CNNGenError(
            f"no results store at {str(db_path)!r}; run notebooks 01 and 02 with "
            f"output_dir={str(output_dir)!r} first, or `cnngen run parameters/quickstart.yaml "
            f"--output {output_dir}`"
        )
    with ResultsStore(db_path, read_only=True) as store:
        return RunResults(
            output_dir,
            store.trainings_frame(),
            store.epochs_frame(),
            store.disclosure,
            run_dir=output_dir,
        )


def _load_export(folder: Path) -> RunResults:
    import pandas as pd

    from cnngen.evaluation_inputs import read_results

    trainings = read_results(folder / "results.parquet")
    epochs_path = folder / "epochs.parquet"
    if not epochs_path.is_file():
        raise CNNGenError(
            f"{str(epochs_path)!r} not found beside results.parquet; export the run again with "
            "scripts/export_reference.py"
        )
    disclosure = trainings.attrs["run_metadata"].get("disclosure")
    return RunResults(folder, trainings, pd.read_parquet(epochs_path), disclosure, run_dir=None)


def energy_label(disclosure: dict | None, quantity: str = "energy") -> str:
    """Return an energy axis label in kWh that states whether the energy is estimated.

    Args:
        disclosure: The store's measurement disclosure (its ``cpu_energy_source`` and
            ``cpu_energy_is_estimate`` fields), or None.
        quantity: What the energy is of, such as "energy per epoch".
    """
    if not disclosure or not disclosure.get("cpu_energy_source"):
        return f"{quantity} (kWh, source unknown)"
    if disclosure.get("cpu_energy_is_estimate") is False:
        return f"{quantity} (kWh, measured)"
    return f"{quantity} (kWh, estimated)"


def energy_source_note(disclosure: dict | None) -> str:
    """Return one line naming the CodeCarbon sources of the CPU, GPU and RAM energy."""
    if not disclosure:
        return "energy source: not recorded"
    parts = [
        f"CPU: {disclosure.get('cpu_energy_source', 'unknown')}",
        f"GPU: {disclosure.get('gpu_energy_source', 'unknown')}",
        f"RAM: {disclosure.get('ram_energy_method', 'unknown')}",
    ]
    return "CodeCarbon energy sources: " + "; ".join(parts)


def summary_table(trainings):
    """Summarise trainings per status, with an ``all`` row.

    Returns:
        A DataFrame indexed by status (ok, diverged, failed, all) with the number of
        architectures, mean and maximum test accuracy, total and mean energy (kWh), and mean
        training time (s). Statistics of a status without rows are NaN.
    """
    import pandas as pd

    groups = [(status, trainings[trainings["status"] == status]) for status in STATUS_ORDER]
    rows = {}
    for status, group in [*groups, ("all", trainings)]:
        accuracy = pd.to_numeric(group["test_accuracy"], errors="coerce").astype(float)
        energy = pd.to_numeric(group["energy_kwh"], errors="coerce").astype(float)
        duration = pd.to_numeric(group["training_time_s"], errors="coerce").astype(float)
        rows[status] = {
            "architectures": len(group),
            "test_accuracy_mean": accuracy.mean(),
            "test_accuracy_max": accuracy.max(),
            "energy_kwh_total": energy.sum(min_count=1),
            "energy_kwh_mean": energy.mean(),
            "training_time_s_mean": duration.mean(),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "status"
    return table


def plot_status_counts(trainings, figures_dir=None):
    """Draw the number of trainings per status (ok, diverged, failed) as bars."""
    counts = [int((trainings["status"] == status).sum()) for status in STATUS_ORDER]
    figure, axes = _new_figure()
    bars = axes.bar(STATUS_ORDER, counts, color=[STATUS_COLOURS[s] for s in STATUS_ORDER])
    axes.bar_label(bars)
    axes.set(xlabel="training status", ylabel="architectures")
    axes.set_title(f"Outcome of {len(trainings)} trainings")
    return _finish(figure, figures_dir, "status_counts")


def plot_accuracy_distribution(trainings, figures_dir=None):
    """Draw a histogram of test accuracy, stacked by training status."""
    data = _numeric(trainings, ["test_accuracy"])
    figure, axes = _new_figure()
    if _has_rows(axes, data, "no training has a test accuracy"):
        _histogram(axes, data, "test_accuracy")
    axes.set(xlabel="test accuracy", ylabel="architectures")
    axes.set_title("Distribution of test accuracy")
    return _finish(figure, figures_dir, "accuracy_distribution")


def plot_energy_distribution(trainings, disclosure=None, figures_dir=None):
    """Draw a histogram of the energy of each training, stacked by training status."""
    data = _numeric(trainings, ["energy_kwh"])
    figure, axes = _new_figure()
    if _has_rows(axes, data, "no training has an energy reading"):
        _histogram(axes, data, "energy_kwh")
    axes.set(xlabel=energy_label(disclosure, "energy per training"), ylabel="architectures")
    axes.set_title("Distribution of training energy")
    return _finish(figure, figures_dir, "energy_distribution", energy_source_note(disclosure))


def plot_accuracy_vs_energy(trainings, disclosure=None, figures_dir=None):
    """Draw test accuracy against training energy, one point per architecture."""
    data = _numeric(trainings, ["energy_kwh", "test_accuracy"])
    figure, axes = _new_figure()
    if _has_rows(axes, data, "no training has both an accuracy and an energy reading"):
        _scatter(axes, data, "energy_kwh", "test_accuracy")
    axes.set(xlabel=energy_label(disclosure, "energy per training"), ylabel="test accuracy")
    axes.set_title("Test accuracy against training energy")
    return _finish(figure, figures_dir, "accuracy_vs_energy", energy_source_note(disclosure))


def plot_energy_vs_flops(trainings, disclosure=None, figures_dir=None):
    """Draw training energy against FLOPs per image, on logarithmic axes when possible."""
    data = _numeric(trainings, ["flops", "energy_kwh"])
    figure, axes = _new_figure()
    if _has_rows(axes, data, "no training has an energy reading"):
        _scatter(axes, data, "flops", "energy_kwh")
        _log_axes(axes, data, "flops", "energy_kwh")
    axes.set(
        xlabel="FLOPs of one forward pass on one image",
        ylabel=energy_label(disclosure, "energy per training"),
    )
    axes.set_title("Training energy against FLOPs")
    return _finish(figure, figures_dir, "energy_vs_flops", energy_source_note(disclosure))


def plot_energy_per_epoch(epochs, disclosure=None, figures_dir=None):
    """Draw the energy of each epoch number over all architectures, as box plots.

    The first epoch of a training includes TensorFlow's graph tracing, so it usually costs
    more than the next ones.
    """
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    data = _numeric(epochs, ["epoch", "energy_kwh"])
    data["epoch"] = data["epoch"].astype(int)
    figure, axes = _new_figure()
    if _has_rows(axes, data, "no per-epoch energy readings"):
        # native_scale keeps the epoch numbers numeric instead of turning them into categories.
        sns.boxplot(
            data=data, x="epoch", y="energy_kwh", native_scale=True, ax=axes, color="tab:blue"
        )
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(xlabel="epoch", ylabel=energy_label(disclosure, "energy per epoch"))
    axes.set_title("Energy per epoch (epoch 1 includes graph tracing)")
    return _finish(figure, figures_dir, "energy_per_epoch", energy_source_note(disclosure))


def plot_accuracy_vs_cumulative_energy(epochs, disclosure=None, figures_dir=None):
    """Draw each architecture's validation accuracy against its energy spent so far."""
    import seaborn as sns

    data = _numeric(epochs, ["epoch", "energy_kwh", "val_accuracy"])
    data = data.sort_values(["arch_id", "epoch"])
    data["cumulative_energy_kwh"] = data.groupby("arch_id")["energy_kwh"].cumsum()
    figure, axes = _new_figure()
    if _has_rows(axes, data, "no per-epoch energy readings"):
        sns.lineplot(
            data=data, x="cumulative_energy_kwh", y="val_accuracy", units="arch_id",
            estimator=None, marker="o", alpha=0.6, ax=axes,
        )  # fmt: skip
    axes.set(xlabel=energy_label(disclosure, "cumulative energy"), ylabel="validation accuracy")
    axes.set_title("Validation accuracy against energy spent, one line per architecture")
    return _finish(
        figure, figures_dir, "accuracy_vs_cumulative_energy", energy_source_note(disclosure)
    )


def plot_predicted_vs_measured(
    predictions, target: str, disclosure=None, figures_dir=None, train_size=None
):
    """Draw predicted against measured values of held-out architectures, with the diagonal.

    Args:
        predictions: ``Evaluation.predictions``: columns predictor, target, train_size,
            measured, predicted (every repetition of the training size is drawn).
        target: The target to draw, such as ``test_accuracy`` or ``energy_kwh``.
        disclosure: The measurement disclosure, for energy axis labels.
        figures_dir: Folder of the PNG ``predicted_vs_measured_<target>.png``, or None.
        train_size: The training size whose predictions are drawn; None draws the largest.
    """
    import seaborn as sns

    data = predictions[predictions["target"] == target]
    if len(data) and "train_size" in data:
        size = data["train_size"].max() if train_size is None else train_size
        data = data[data["train_size"] == size]
    label = TARGET_LABELS.get(target, target)
    if target.startswith("energy"):
        label = energy_label(disclosure, label)
    figure, axes = _new_figure()
    if _has_rows(axes, data, f"no predictions of {target}"):
        sns.scatterplot(data=data, x="measured", y="predicted", hue="predictor", alpha=0.6, ax=axes)
        low = min(data["measured"].min(), data["predicted"].min())
        high = max(data["measured"].max(), data["predicted"].max())
        axes.plot(
            [low, high], [low, high], color="grey", linestyle="--", label="prediction = measured"
        )
        axes.legend()
    axes.set(xlabel=f"measured {label}", ylabel=f"predicted {label}")
    title = f"Held-out predictions of {TARGET_LABELS.get(target, target)}"
    if len(data) and "train_size" in data:
        title += f", {int(data['train_size'].iloc[0])} training architectures"
    axes.set_title(title)
    note = energy_source_note(disclosure) if target.startswith("energy") else None
    return _finish(figure, figures_dir, f"predicted_vs_measured_{target}", note)


def plot_candidates(candidates, disclosure=None, figures_dir=None):
    """Draw the predicted accuracy against the predicted energy of scored candidates.

    Args:
        candidates: Columns ``predicted_test_accuracy``, ``predicted_energy_kwh`` and
            ``pareto`` (True for the candidates on the Pareto front).
        disclosure: The measurement disclosure of the results the predictors learned from,
            for the energy axis label.
        figures_dir: Folder of the PNG ``candidates.png``, or None.
    """
    figure, axes = _new_figure()
    data = candidates
    if _has_rows(axes, data, "no candidates were scored"):
        axes.scatter(
            data["predicted_energy_kwh"], data["predicted_test_accuracy"], s=8, alpha=0.4,
            color="tab:blue", label="candidate",
        )  # fmt: skip
        front = data[data["pareto"]].sort_values("predicted_energy_kwh")
        axes.plot(
            front["predicted_energy_kwh"], front["predicted_test_accuracy"], marker="o",
            color="tab:red", label="Pareto front",
        )  # fmt: skip
        axes.set_xscale("log")
        axes.legend()
    axes.set(
        xlabel=f"predicted {energy_label(disclosure, 'energy per training')}",
        ylabel="predicted test accuracy",
        title=f"{len(data):,} candidates scored without training",
    )
    return _finish(figure, figures_dir, "candidates", energy_source_note(disclosure))


def plot_tau_vs_train_size(summary, target: str, figures_dir=None):
    """Draw each predictor's mean Kendall tau against the number of training architectures.

    Trained predictors are solid lines with the standard deviation over repetitions as a
    band; rankings with no training (parameters, FLOPs, proxies) are dashed lines. A size
    where tau is undefined in every repetition leaves a gap.

    Args:
        summary: ``Evaluation.summary``.
        target: The target to draw.
        figures_dir: Folder of the PNG ``tau_vs_train_size_<target>.png``, or None.
    """
    import pandas as pd

    data = summary[(summary["target"] == target) & summary["train_size"].notna()].copy()
    for column in ("train_size", "kendall_tau_mean", "kendall_tau_std"):
        data[column] = pd.to_numeric(data[column], errors="coerce").astype(float)
    figure, axes = _new_figure()
    if _has_rows(axes, data, f"no scores of {target}"):
        _tau_lines(axes, data)
        axes.legend(fontsize="small", ncol=2)
    axes.axhline(0.0, color="grey", linewidth=0.8)
    axes.set(xlabel="training architectures (log scale)", ylabel="Kendall tau on the test set")
    axes.set_title(f"Kendall tau of {TARGET_LABELS.get(target, target)} against training size")
    return _finish(figure, figures_dir, f"tau_vs_train_size_{target}")


def _tau_lines(axes, data) -> None:
    import seaborn as sns

    trained = data[data["kind"] == "predictor"]
    names = list(dict.fromkeys(trained["predictor"]))
    palette = dict(zip(names, sns.color_palette(n_colors=len(names)), strict=True))
    sns.lineplot(
        data=trained, x="train_size", y="kendall_tau_mean", hue="predictor", palette=palette,
        marker="o", ax=axes,
    )  # fmt: skip
    for name, group in trained.groupby("predictor", sort=False):
        std = group["kendall_tau_std"].fillna(0.0)
        mean = group["kendall_tau_mean"]
        axes.fill_between(
            group["train_size"], mean - std, mean + std, color=palette[name], alpha=0.15
        )
    rankings = data[data["kind"] != "predictor"]
    for name, group in rankings.groupby("predictor", sort=False):
        axes.plot(
            group["train_size"],
            group["kendall_tau_mean"],
            linestyle="--",
            label=f"{name} (ranking)",
        )
    axes.set_xscale("log")
    sizes = sorted(set(data["train_size"].astype(int)))
    axes.set_xticks(sizes, [str(size) for size in sizes])
    axes.minorticks_off()


def _new_figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    return figure, figure.add_subplot()


def _finish(figure, figures_dir, name: str, footnote: str | None = None):
    """Add the footnote under the axes, and save the figure when figures_dir is given."""
    if footnote:
        text = textwrap.fill(footnote, width=90)
        figure.supxlabel(text, fontsize="small", color="dimgrey")
    if figures_dir is not None:
        path = Path(figures_dir) / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        logger.info("wrote %s", path)
    return figure


def _numeric(frame, columns: list[str]):
    """Return the rows of frame where every column is a finite number, those columns as floats."""
    import numpy as np
    import pandas as pd

    data = frame.copy()
    for column in columns:
        data[column] = pd.to_numeric(data[column], errors="coerce").astype(float)
    finite = np.isfinite(data[columns].to_numpy()).all(axis=1)
    return data[finite]


def _has_rows(axes, data, message: str) -> bool:
    if len(data):
        return True
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)
    return False


def _histogram(axes, data, column: str) -> None:
    import seaborn as sns

    sns.histplot(
        data=data, x=column, hue="status", hue_order=_present(data), palette=STATUS_COLOURS,
        multiple="stack", ax=axes,
    )  # fmt: skip


def _scatter(axes, data, x: str, y: str) -> None:
    import seaborn as sns

    sns.scatterplot(
        data=data, x=x, y=y, hue="status", hue_order=_present(data), palette=STATUS_COLOURS,
        ax=axes,
    )  # fmt: skip


def _present(data) -> list[str]:
    return [status for status in STATUS_ORDER if (data["status"] == status).any()]


def _log_axes(axes, data, x: str, y: str) -> None:
    if (data[x] > 0).all():
        axes.set_xscale("log")
    if (data[y] > 0).all():
        axes.set_yscale("log")
