"""Tests of cnngen.analysis on results stores written by cnngen.store."""

import dataclasses

import pandas as pd
import pytest
from matplotlib.figure import Figure

from cnngen import analysis
from cnngen.energy import EnergyReading
from cnngen.errors import CNNGenError
from cnngen.evaluation import run_evaluation
from cnngen.metrics import compute_metrics
from cnngen.sampling import sample_many
from cnngen.store import ArchitectureRecord, ResultsStore
from cnngen.training import EpochRecord, TrainingResult

TDP_DISCLOSURE = {
    "cpu_energy_source": "TDP estimate (load-scaled)",
    "cpu_energy_is_estimate": True,
    "gpu_energy_source": "none",
    "ram_energy_method": "estimate from machine memory size",
}
RAPL_DISCLOSURE = {**TDP_DISCLOSURE, "cpu_energy_source": "RAPL", "cpu_energy_is_estimate": False}

STATUSES = ["ok"] * 6 + ["diverged", "failed"]


def result_for(arch_id: str, status: str, flops: int) -> TrainingResult:
    """Return a three-epoch training whose energy grows with FLOPs; failed ones stop early."""
    if status == "failed":
        return TrainingResult(arch_id, "failed", epochs=3, error="ValueError: broken")
    epoch_kwh = [2e-5 + flops * 1e-12, flops * 1e-12, flops * 1e-12]
    epochs = [
        EpochRecord(n + 1, 1.0 / (n + 1), 0.3 + 0.2 * n, 1.1 / (n + 1), 0.25 + 0.2 * n, 1.0, kwh)
        for n, kwh in enumerate(epoch_kwh)
    ]
    accuracy = 0.1 if status == "diverged" else 0.5 + (flops % 40) / 100
    return TrainingResult(
        arch_id, status, epochs=3, epochs_run=3, test_accuracy=accuracy, training_time_s=3.0,
        energy=EnergyReading(duration_s=3.0, energy_kwh=sum(epoch_kwh)), epoch_rows=epochs,
    )  # fmt: skip


def write_run(run_dir, disclosure=TDP_DISCLOSURE):
    run_dir.mkdir(parents=True, exist_ok=True)
    sampled = sample_many(2, len(STATUSES), (8, 8, 1), 10)
    with ResultsStore(run_dir / "results.sqlite") as store:
        if disclosure is not None:
            store.record_disclosure(disclosure)
        for (seed, resolved), status in zip(sampled, STATUSES, strict=True):
            metrics = compute_metrics(resolved)
            arch_id = f"a{seed}"
            record = ArchitectureRecord(arch_id, resolved.to_phrase(), seed, "digits")
            store.add_architecture(
                dataclasses.replace(record, params=metrics.params, flops=metrics.flops)
            )
            store.record_training(result_for(arch_id, status, metrics.flops))
    return run_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return analysis.load_run(write_run(tmp_path_factory.mktemp("runs") / "tdp"))


def test_load_run_reads_store(run):
    assert len(run.trainings) == len(STATUSES)
    assert len(run.epochs) == 3 * STATUSES.count("ok") + 3 * STATUSES.count("diverged")
    assert run.disclosure["cpu_energy_source"] == "TDP estimate (load-scaled)"


def test_load_run_missing_store(tmp_path):
    message = r"no results store at .*; run notebooks 01 and 02 with output_dir=.* first"
    with pytest.raises(CNNGenError, match=message):
        analysis.load_run(tmp_path / "empty")


@pytest.mark.parametrize(
    ("disclosure", "expected"),
    [
        (TDP_DISCLOSURE, "energy per epoch (kWh, estimated)"),
        (RAPL_DISCLOSURE, "energy per epoch (kWh, measured)"),
        ({**TDP_DISCLOSURE, "cpu_energy_is_estimate": None}, "energy per epoch (kWh, estimated)"),
        (None, "energy per epoch (kWh, source unknown)"),
        ({}, "energy per epoch (kWh, source unknown)"),
    ],
)
def test_energy_label(disclosure, expected):
    assert analysis.energy_label(disclosure, "energy per epoch") == expected


def test_energy_source_note_names_every_part():
    note = analysis.energy_source_note(TDP_DISCLOSURE)
    assert "CPU: TDP estimate (load-scaled)" in note
    assert "GPU: none" in note
    assert "RAM: estimate from machine memory size" in note
    assert analysis.energy_source_note(None) == "energy source: not recorded"


def test_summary_table(run):
    table = analysis.summary_table(run.trainings)
    assert list(table.index) == ["ok", "diverged", "failed", "all"]
    assert table.loc["ok", "architectures"] == 6
    assert table.loc["all", "architectures"] == len(STATUSES)
    assert table.loc["diverged", "test_accuracy_mean"] == pytest.approx(0.1)
    assert pd.isna(table.loc["failed", "energy_kwh_total"])
    assert table.loc["all", "energy_kwh_total"] > table.loc["ok", "energy_kwh_total"]


# Plot function, the table it draws (trainings or epochs), and whether it takes a disclosure.
TRAINING_PLOTS = [
    (analysis.plot_status_counts, "trainings", False),
    (analysis.plot_accuracy_distribution, "trainings", False),
    (analysis.plot_energy_distribution, "trainings", True),
    (analysis.plot_accuracy_vs_energy, "trainings", True),
    (analysis.plot_energy_vs_flops, "trainings", True),
    (analysis.plot_energy_per_epoch, "epochs", True),
    (analysis.plot_accuracy_vs_cumulative_energy, "epochs", True),
]
PLOT_IDS = [plot.__name__.removeprefix("plot_") for plot, _, _ in TRAINING_PLOTS]


def draw(run, plot, table, takes_disclosure, figures_dir):
    if takes_disclosure:
        return plot(getattr(run, table), run.disclosure, figures_dir=figures_dir)
    return plot(getattr(run, table), figures_dir=figures_dir)


@pytest.mark.parametrize(("plot", "table", "takes_disclosure"), TRAINING_PLOTS, ids=PLOT_IDS)
def test_plot_saves_labelled_figure(run, tmp_path, plot, table, takes_disclosure):
    figure = draw(run, plot, table, takes_disclosure, tmp_path / "figures")
    axes = figure.axes[0]
    name = plot.__name__.removeprefix("plot_")
    assert isinstance(figure, Figure)
    assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0
    assert axes.get_title()
    assert axes.get_xlabel()
    assert axes.get_ylabel()


@pytest.mark.parametrize(("plot", "table", "takes_disclosure"), TRAINING_PLOTS, ids=PLOT_IDS)
def test_plot_without_figures_dir_writes_nothing(
    run, tmp_path, monkeypatch, plot, table, takes_disclosure
):
    monkeypatch.chdir(tmp_path)
    assert isinstance(draw(run, plot, table, takes_disclosure, None), Figure)
    assert list(tmp_path.iterdir()) == []


def test_energy_axes_say_estimated(run):
    figure = analysis.plot_accuracy_vs_energy(run.trainings, run.disclosure)
    assert figure.axes[0].get_xlabel() == "energy per training (kWh, estimated)"
    assert "TDP estimate (load-scaled)" in figure.get_supxlabel()


def test_energy_axes_say_measured_with_rapl(tmp_path):
    rapl_run = analysis.load_run(write_run(tmp_path / "rapl", RAPL_DISCLOSURE))
    figure = analysis.plot_energy_vs_flops(rapl_run.trainings, rapl_run.disclosure)
    assert figure.axes[0].get_ylabel() == "energy per training (kWh, measured)"
    assert figure.axes[0].get_xscale() == "log"


def test_run_without_disclosure(tmp_path):
    bare_run = analysis.load_run(write_run(tmp_path / "bare", None))
    assert bare_run.disclosure is None
    figure = analysis.plot_energy_distribution(bare_run.trainings, bare_run.disclosure)
    assert figure.axes[0].get_xlabel() == "energy per training (kWh, source unknown)"


def test_status_counts_include_zero_bars(run):
    only_ok = run.trainings[run.trainings["status"] == "ok"]
    figure = analysis.plot_status_counts(only_ok)
    heights = [bar.get_height() for bar in figure.axes[0].patches]
    assert heights == [6, 0, 0]


@pytest.mark.parametrize(
    ("plot", "table", "takes_disclosure"), TRAINING_PLOTS[1:], ids=PLOT_IDS[1:]
)
def test_plot_without_rows_says_so(run, plot, table, takes_disclosure):
    empty = analysis.RunResults(
        run.output_dir, run.trainings.iloc[:0], run.epochs.iloc[:0], run.disclosure
    )
    figure = draw(empty, plot, table, takes_disclosure, None)
    texts = [text.get_text() for text in figure.axes[0].texts]
    assert any(text.startswith("no ") for text in texts), texts


def test_cumulative_energy_is_per_architecture(run):
    figure = analysis.plot_accuracy_vs_cumulative_energy(run.epochs, run.disclosure)
    lines = [line for line in figure.axes[0].get_lines() if len(line.get_xdata()) == 3]
    assert len(lines) == STATUSES.count("ok") + STATUSES.count("diverged")
    for line in lines:
        x = list(line.get_xdata())
        assert x == sorted(x)


@pytest.fixture(scope="module")
def evaluation(run):
    return run_evaluation(
        run.output_dir, predictors=("DT", "Py_code"), train_sizes=(3, "all"), repetitions=2,
        predictor_options={"Py_code": {"n_estimators": 10}},
    )  # fmt: skip


@pytest.mark.parametrize("target", ["test_accuracy", "energy_kwh", "energy_per_epoch_kwh"])
def test_predicted_vs_measured(run, evaluation, tmp_path, target):
    figure = analysis.plot_predicted_vs_measured(
        evaluation.predictions, target, run.disclosure, tmp_path
    )
    axes = figure.axes[0]
    assert (tmp_path / f"predicted_vs_measured_{target}.png").stat().st_size > 0
    assert axes.get_xlabel().startswith("measured ")
    assert axes.get_ylabel().startswith("predicted ")
    assert ("estimated" in axes.get_xlabel()) == target.startswith("energy")


def test_predicted_vs_measured_draws_one_size(evaluation):
    largest = int(evaluation.predictions["train_size"].max())
    figure = analysis.plot_predicted_vs_measured(evaluation.predictions, "energy_kwh")
    assert figure.axes[0].get_title().endswith(f", {largest} training architectures")
    smallest = analysis.plot_predicted_vs_measured(
        evaluation.predictions, "energy_kwh", train_size=3
    )
    assert smallest.axes[0].get_title().endswith(", 3 training architectures")


@pytest.mark.parametrize("target", ["test_accuracy", "energy_kwh", "energy_per_epoch_kwh"])
def test_tau_vs_train_size(evaluation, tmp_path, target):
    figure = analysis.plot_tau_vs_train_size(evaluation.summary, target, tmp_path)
    axes = figure.axes[0]
    assert (tmp_path / f"tau_vs_train_size_{target}.png").stat().st_size > 0
    assert axes.get_title().startswith("Kendall tau of ")
    assert axes.get_xlabel() == "training architectures (log scale)"
    assert axes.get_ylabel() == "Kendall tau on the test set"
    labels = set(axes.get_legend_handles_labels()[1])
    assert {"DT", "Py_code", "params (ranking)", "flops (ranking)"} <= labels


def test_tau_vs_train_size_without_scores(evaluation):
    figure = analysis.plot_tau_vs_train_size(evaluation.summary, "no_such_target")
    assert figure.axes[0].texts[0].get_text() == "no scores of no_such_target"


def test_plots_leave_no_pyplot_figures(run):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    analysis.plot_energy_vs_flops(run.trainings, run.disclosure)
    assert plt.get_fignums() == before


def test_plot_candidates_draws_front(run, tmp_path):
    candidates = pd.DataFrame(
        {
            "predicted_test_accuracy": [0.2, 0.5, 0.4, 0.7],
            "predicted_energy_kwh": [1e-6, 2e-6, 3e-6, 9e-6],
            "pareto": [True, True, False, True],
        }
    )
    figure = analysis.plot_candidates(candidates, run.disclosure, tmp_path / "figures")
    axes = figure.axes[0]
    front_line = [line for line in axes.get_lines() if line.get_label() == "Pareto front"]
    assert (tmp_path / "figures" / "candidates.png").stat().st_size > 0
    assert axes.get_xlabel() == "predicted energy per training (kWh, estimated)"
    assert list(front_line[0].get_ydata()) == [0.2, 0.5, 0.7]
    assert axes.get_title() == "4 candidates scored without training"


def test_plot_candidates_without_rows_says_so(run):
    empty = pd.DataFrame(columns=["predicted_test_accuracy", "predicted_energy_kwh", "pareto"])
    figure = analysis.plot_candidates(empty, run.disclosure)
    texts = [text.get_text() for text in figure.axes[0].texts]
    assert any("no candidates were scored" in text for text in texts)
