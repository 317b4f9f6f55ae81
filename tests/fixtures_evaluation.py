"""Results stores with known targets for sampled architectures, for the evaluation tests.

The stores are written through the real store API; accuracy and energy are functions of the
architecture, so that a predictor can learn them.
"""

from cnngen.energy import EnergyReading
from cnngen.metrics import compute_metrics
from cnngen.sampling import sample_many
from cnngen.store import ArchitectureRecord, ResultsStore
from cnngen.training import TrainingResult


def write_store(path, statuses, *, duplicates=0, accuracy=None, energy=None, epochs=2, run_seed=11):
    """Write one training per status for architectures sampled on digits.

    Accuracy and energy default to functions of the architecture, so a tree can learn them.
    The first ``duplicates`` architectures are stored a second time under another id.
    """
    sampled = list(sample_many(run_seed, len(statuses), (8, 8, 1), 10))
    with ResultsStore(path) as store:
        for index, ((seed, resolved), status) in enumerate(zip(sampled, statuses, strict=True)):
            metrics = compute_metrics(resolved)
            copies = 2 if index < duplicates else 1
            for copy in range(copies):
                arch_id = f"a{index:03d}" + ("b" * copy)
                store.add_architecture(
                    ArchitectureRecord(
                        arch_id, resolved.to_phrase(), seed, "digits", metrics.params,
                        metrics.flops, metrics.num_layers,
                    )
                )  # fmt: skip
                acc = (
                    0.3 + 0.5 * (metrics.params % 97) / 97 if accuracy is None else accuracy(index)
                )
                kwh = metrics.flops * epochs * 1e-12 if energy is None else energy(index)
                store.record_training(training_result(arch_id, status, acc, kwh, epochs))
    return path


def training_result(arch_id, status, accuracy, energy_kwh, epochs):
    """Return a TrainingResult with the given outcome; a failed one has no metrics."""
    failed = status == "failed"
    reading = EnergyReading(duration_s=2.0, energy_kwh=None if failed else energy_kwh)
    return TrainingResult(
        arch_id=arch_id,
        status=status,
        epochs=epochs,
        epochs_run=0 if failed else epochs,
        test_accuracy=None if failed else accuracy,
        energy=reading,
        error="ValueError: broken" if failed else None,
    )
