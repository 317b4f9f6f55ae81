"""The settings of a run's trainings, shared by every architecture, and their validation.

This module owns :class:`TrainingConfig`: the training protocol's values, the CodeCarbon
settings and the inference measurement settings derived from it. It leaves training to
``cnngen.training``, the meter to ``cnngen.energy`` and the inference loop to
``cnngen.inference``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnngen.energy import MeterSettings
from cnngen.errors import ParameterError
from cnngen.inference import InferenceSettings


@dataclass(frozen=True)
class TrainingConfig:
    """Training and measurement settings shared by every architecture of a run.

    Attributes:
        epochs: Maximum number of epochs.
        batch_size: Images per gradient step.
        learning_rate: Adam's learning rate.
        seed: Seed passed to ``keras.utils.set_random_seed`` before a model is built, when
            the architecture has no seed of its own (see the module docstring).
        country_iso_code: ISO 3166-1 alpha-3 code of the country whose electricity mix turns
            energy into emissions. The default "BEL" is the country of the original CNNGen
            measurements; set the country where the machine runs. Only emissions depend on it.
        measure_power_secs: CodeCarbon's power sampling interval, in seconds.
        tracking_mode: CodeCarbon tracking mode, "machine" or "process" (see cnngen.energy).
        idle_duration_s: Length of the once-per-run idle power measurement, in seconds.
        early_stopping: Stop when the validation loss has not improved for ``patience``
            epochs. The model of the last epoch run is evaluated, matching the energy spent.
        patience: Epochs without improvement before early stopping.
        deterministic: Call ``tf.config.experimental.enable_op_determinism()``, which stays on
            for the rest of the process and slows some operations.
        chance_margin: Test accuracy at or below chance plus this margin counts as diverged.
        verbose: Keras ``fit`` verbosity (0 silent, 1 progress bar, 2 one line per epoch).
        mixed_precision: Train under Keras's "mixed_float16" policy with float32 outputs. It
            speeds up GPUs with tensor cores and slows CPUs.
        inference_batches: Minimum number of timed inference batches after training, each of
            ``batch_size`` test images; 0 skips the inference measurement.
        inference_warmup_batches: Untimed inference batches run before the timed ones.
        inference_duration_s: Minimum length of the measured inference loop, in seconds.
    """

    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    country_iso_code: str = "BEL"
    measure_power_secs: float = 1.0
    tracking_mode: str = "machine"
    idle_duration_s: float = 5.0
    early_stopping: bool = False
    patience: int = 3
    deterministic: bool = False
    chance_margin: float = 0.01
    verbose: int = 0
    mixed_precision: bool = False
    inference_batches: int = 30
    inference_warmup_batches: int = 3
    inference_duration_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            check_number(name, getattr(self, name), int, minimum=1)
        check_number("seed", self.seed, int, minimum=0)
        check_number("patience", self.patience, int, minimum=0)
        check_number("verbose", self.verbose, int, minimum=0)
        check_number("learning_rate", self.learning_rate, float, minimum=0, exclusive=True)
        check_number("idle_duration_s", self.idle_duration_s, float, minimum=0, exclusive=True)
        check_number("chance_margin", self.chance_margin, float, minimum=0)
        for name in ("inference_batches", "inference_warmup_batches"):
            check_number(name, getattr(self, name), int, minimum=0)
        check_number("inference_duration_s", self.inference_duration_s, float, minimum=0)
        for name in ("early_stopping", "deterministic", "mixed_precision"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(
                    f"invalid training parameter {name}={getattr(self, name)!r}: expected "
                    "True or False"
                )
        self.meter_settings()  # validates the country, interval and tracking mode

    def meter_settings(self, gpu_ids: tuple[int, ...] | None = None) -> MeterSettings:
        """Return the CodeCarbon settings of this configuration.

        Args:
            gpu_ids: NVML indices of the GPUs to measure, such as
                ``cnngen.devices.training_device().gpu_ids``; None lets CodeCarbon choose.
        """
        return MeterSettings(
            country_iso_code=self.country_iso_code,
            measure_power_secs=self.measure_power_secs,
            tracking_mode=self.tracking_mode,
            gpu_ids=gpu_ids,
        )

    def inference_settings(self) -> InferenceSettings:
        """Return the inference measurement settings, with the training batch size."""
        return InferenceSettings(
            batch_size=self.batch_size,
            min_batches=self.inference_batches,
            warmup_batches=self.inference_warmup_batches,
            min_duration_s=self.inference_duration_s,
        )


def check_number(name: str, value, kind: type, *, minimum: float, exclusive: bool = False) -> None:
    """Raise ParameterError unless value is an int (or, for float, a number) above minimum."""
    accepted = (int,) if kind is int else (int, float)
    valid = isinstance(value, accepted) and not isinstance(value, bool)
    if valid:
        valid = value > minimum if exclusive else value >= minimum
    if not valid:
        bound = f"> {minimum}" if exclusive else f">= {minimum}"
        raise ParameterError(
            f"invalid training parameter {name}={value!r}: expected {kind.__name__} {bound}"
        )
