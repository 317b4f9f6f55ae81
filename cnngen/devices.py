"""The device Keras trains on, and what the energy measurement needs to know about it.

This module owns the detection of the GPU that TensorFlow trains on and of its NVML index, so
that CodeCarbon measures that GPU and not its neighbours. It also reads the NVIDIA driver
version and flags a GPU training whose GPU energy is zero or missing. It leaves the measurement to
``cnngen.energy`` and the choice of device to TensorFlow: nothing here hides or selects a GPU.

Without a distribution strategy, Keras places a model on the first GPU TensorFlow lists
(``/GPU:0``), and on the CPU when there is none. ``/GPU:0`` is numbered in CUDA's order among
the GPUs of ``CUDA_VISIBLE_DEVICES``, while NVML numbers every GPU of the machine in PCI order,
so the two indices are matched through the GPU's PCI bus id.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

logger = logging.getLogger(__name__)

GPU_ENERGY_FLAGS = ("zero", "missing")
_PCI_BUS_ID_PATTERN = re.compile(r"pci bus id:\s*([0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+\.\d+)")
_NAME_PATTERN = re.compile(r"name:\s*([^,]+)")


@dataclass(frozen=True)
class TrainingDevice:
    """The device Keras trains on in this process.

    Attributes:
        kind: "GPU" when TensorFlow lists a GPU, else "CPU".
        gpu_name: Name of the training GPU as TensorFlow reports it, or None.
        num_visible_gpus: Number of GPUs TensorFlow lists. Keras trains on the first one.
        nvml_index: NVML index of the training GPU, or None when it could not be matched.
        driver_version: NVIDIA driver version read through NVML, or None.
    """

    kind: str
    gpu_name: str | None = None
    num_visible_gpus: int = 0
    nvml_index: int | None = None
    driver_version: str | None = None

    @property
    def gpu_ids(self) -> tuple[int, ...] | None:
        """NVML indices for CodeCarbon: the training GPU, or None to let CodeCarbon choose."""
        return None if self.nvml_index is None else (self.nvml_index,)


@functools.cache
def training_device() -> TrainingDevice:
    """Detect the device Keras trains on; the result is cached for the process.

    Returns:
        A CPU device when TensorFlow lists no GPU. For a GPU, the NVML index and driver version
        are None when NVML or TensorFlow's device description is unavailable, and a warning
        says that CodeCarbon then chooses which GPUs to measure.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return TrainingDevice(kind="CPU")
    _grow_gpu_memory(gpus)
    description = _first_gpu_description()
    bus_id = parse_pci_bus_id(description)
    match = _NAME_PATTERN.search(description)
    nvml_index = _nvml_index(bus_id) if bus_id else None
    if nvml_index is None:
        logger.warning(
            "could not match TensorFlow's /GPU:0 to an NVML index (description %r); "
            "CodeCarbon measures the GPUs of CUDA_VISIBLE_DEVICES, or all of them",
            description,
        )
    return TrainingDevice(
        kind="GPU",
        gpu_name=match.group(1).strip() if match else None,
        num_visible_gpus=len(gpus),
        nvml_index=nvml_index,
        driver_version=nvml_driver_version(),
    )


def parse_pci_bus_id(description: str) -> str | None:
    """Return the PCI bus id in TensorFlow's description of a GPU, or None.

    Args:
        description: A ``physical_device_desc`` such as "device: 0, name: NVIDIA H200, pci bus
            id: 0000:19:00.0, compute capability: 9.0".
    """
    match = _PCI_BUS_ID_PATTERN.search(description or "")
    return match.group(1).lower() if match else None


def nvml_driver_version() -> str | None:
    """Return the NVIDIA driver version, or None when NVML is unavailable."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        # Machines without an NVIDIA driver end here: there is no version to report.
        return None
    try:
        version = pynvml.nvmlSystemGetDriverVersion()
    except Exception as error:
        logger.warning("NVML did not report the driver version: %s", error)
        return None
    finally:
        pynvml.nvmlShutdown()
    return version.decode() if isinstance(version, bytes) else str(version)


def gpu_energy_flag(device_kind: str | None, gpu_energy_kwh: float | None) -> str | None:
    """Flag a GPU measurement whose GPU energy cannot be a real value.

    A GPU doing work draws power, so a GPU energy of zero means CodeCarbon did not read the GPU
    (no NVML, another GPU measured, or a failed reading).

    Args:
        device_kind: "GPU" or "CPU", as in :attr:`TrainingDevice.kind`.
        gpu_energy_kwh: CodeCarbon's GPU energy of the interval, None when it has none.

    Returns:
        None for a CPU measurement or a positive GPU energy, "zero" when CodeCarbon reported 0
        kWh, and "missing" when it reported nothing.
    """
    if device_kind != "GPU":
        return None
    if gpu_energy_kwh is None:
        return "missing"
    if gpu_energy_kwh <= 0:
        return "zero"
    return None


def _grow_gpu_memory(gpus) -> None:
    """Let TensorFlow allocate GPU memory as needed instead of all of it at start-up.

    Describing the GPUs initialises them. Without memory growth, that reserves nearly all GPU
    memory in this process, which would leave none to the training processes of
    ``cnngen.workers`` when this process is their parent.
    """
    import tensorflow as tf

    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as error:
            # Raised when the GPUs were initialised earlier in this process.
            logger.warning("could not enable memory growth on %s: %s", gpu.name, error)


def _first_gpu_description() -> str:
    """Return TensorFlow's description of /GPU:0, or "" when it is unavailable."""
    try:
        # NOTE: device_lib is not part of TensorFlow's public API, but it is the only place
        # that gives the PCI bus id. A TensorFlow that drops it leaves the index to CodeCarbon.
        from tensorflow.python.client import device_lib

        for device in device_lib.list_local_devices():
            if device.device_type == "GPU":
                return device.physical_device_desc
    except Exception as error:
        logger.warning("TensorFlow did not describe its GPUs: %s", error)
    return ""


def _nvml_index(bus_id: str) -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as error:
        logger.warning("NVML is unavailable, so the GPU energy cannot be read: %s", error)
        return None
    try:
        return int(pynvml.nvmlDeviceGetIndex(pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)))
    except Exception as error:
        logger.warning("NVML has no GPU with PCI bus id %s: %s", bus_id, error)
        return None
    finally:
        pynvml.nvmlShutdown()
