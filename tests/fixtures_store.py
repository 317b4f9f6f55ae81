"""Store fixtures shared by the tests of the results store and of merges: plausible rows."""

import dataclasses

from cnngen.energy import EnergyReading
from cnngen.inference import InferenceCost
from cnngen.store import ArchitectureRecord, ResultsStore
from cnngen.training import EpochRecord, TrainingResult

DISCLOSURE = {
    "codecarbon_version": "3.3.2",
    "tracking_mode": "machine",
    "measure_power_secs": 1.0,
    "country_iso_code": "BEL",
    "carbon_intensity_g_per_kwh": 138.1,
    "cpu_energy_source": "TDP estimate (load-scaled)",
    "cpu_tdp_w": 8.0,
    "cpu_energy_is_estimate": True,
    "gpu_energy_source": "none",
    "ram_energy_method": "estimate from machine memory size",
    "energy_is_estimate": True,
    "cpu_model": "Test CPU",
    "cpu_count": 2,
    "gpu_model": None,
    "gpu_count": 0,
    "gpu_ids": None,
    "gpu_driver_version": None,
    "training_device": "CPU",
    "training_gpu_name": None,
    "ram_total_gb": 16.0,
    "idle_power_w": 12.5,
    "idle_duration_s": 5.0,
    "python_version": "3.11.7",
    "tensorflow_version": "2.21.0",
    "keras_version": "3.15.1",
    "cuda_version": None,
    "cudnn_version": None,
    "error": None,
}


def make_result(arch_id: str, status: str = "ok", **changes) -> TrainingResult:
    """Return a two-epoch result with plausible metrics and energy."""
    energy = EnergyReading(
        duration_s=3.0,
        energy_kwh=2e-5,
        cpu_energy_kwh=5e-6,
        gpu_energy_kwh=0.0,
        ram_energy_kwh=1.5e-5,
        emissions_kg=2.8e-6,
        emissions_rate_kg_per_s=2.8e-6 / 3.0,
        cpu_power_w=6.0,
        gpu_power_w=0.0,
        ram_power_w=20.0,
    )
    epochs = [
        EpochRecord(1, 1.5, 0.5, 1.4, 0.55, 2.0, 1.2e-5),
        EpochRecord(2, 0.9, 0.7, 1.0, 0.68, 1.0, 0.7e-5),
    ]
    result = TrainingResult(
        arch_id=arch_id,
        status=status,
        epochs=2,
        epochs_run=2,
        test_accuracy=0.7,
        train_accuracy=0.72,
        val_accuracy=0.68,
        test_loss=0.95,
        train_loss=0.9,
        val_loss=1.0,
        training_time_s=3.0,
        num_layers=4,
        params=2970,
        energy=energy,
        epoch_rows=epochs,
        started_at="2025-01-01T10:00:00+00:00",
        finished_at="2025-01-01T10:00:04+00:00",
        training_seed=7,
        device="CPU",
        mixed_precision=False,
        inference=InferenceCost(
            batch_size=64,
            num_batches=30,
            latency_s=0.004,
            latency_per_image_s=0.004 / 64,
            energy_kwh=3e-9,
            energy_per_image_kwh=3e-9 / 64,
            duration_s=2.1,
        ),
    )
    return dataclasses.replace(result, **changes)


def make_architecture(arch_id: str, **changes) -> ArchitectureRecord:
    record = ArchitectureRecord(
        arch_id=arch_id,
        phrase=f"input conv flatten dense output # {arch_id}",
        seed=7,
        dataset="digits",
        flops=12345,
    )
    return dataclasses.replace(record, **changes)


def add_trained(store: ResultsStore, arch_id: str, status: str = "ok", **changes) -> None:
    store.add_architecture(make_architecture(arch_id))
    store.record_training(make_result(arch_id, status, **changes))
