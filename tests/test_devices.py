"""Tests of cnngen.devices on this machine (no GPU needed) and on descriptions of GPUs."""

import pytest

from cnngen.devices import (
    TrainingDevice,
    gpu_energy_flag,
    nvml_driver_version,
    parse_pci_bus_id,
    training_device,
)


@pytest.mark.parametrize(
    ("description", "bus_id"),
    [
        (
            "device: 0, name: NVIDIA H200, pci bus id: 0000:19:00.0, compute capability: 9.0",
            "0000:19:00.0",
        ),
        ("name: Tesla T4, pci bus id: 0000:AF:00.0, compute capability: 7.5", "0000:af:00.0"),
        ("device: 0, name: NVIDIA A100-SXM4-40GB, compute capability: 8.0", None),
        ("", None),
        (None, None),
    ],
)  # fmt: skip
def test_parse_pci_bus_id(description, bus_id):
    assert parse_pci_bus_id(description) == bus_id


@pytest.mark.parametrize(
    ("device_kind", "gpu_energy_kwh", "flag"),
    [
        ("CPU", 0.0, None),
        ("CPU", None, None),
        (None, 0.0, None),
        ("GPU", 1.5e-4, None),
        ("GPU", 0.0, "zero"),
        ("GPU", -0.0, "zero"),
        ("GPU", None, "missing"),
    ],
)
def test_gpu_energy_flag(device_kind, gpu_energy_kwh, flag):
    assert gpu_energy_flag(device_kind, gpu_energy_kwh) == flag


@pytest.mark.parametrize(
    ("device", "gpu_ids"),
    [
        (TrainingDevice(kind="CPU"), None),
        (TrainingDevice(kind="GPU", gpu_name="NVIDIA H200", num_visible_gpus=2), None),
        (TrainingDevice(kind="GPU", num_visible_gpus=1, nvml_index=3), (3,)),
    ],
)
def test_training_device_gpu_ids(device, gpu_ids):
    assert device.gpu_ids == gpu_ids


def test_training_device_here():
    import tensorflow as tf

    device = training_device()

    if tf.config.list_physical_devices("GPU"):
        assert device.kind == "GPU"
        assert device.num_visible_gpus >= 1
    else:
        assert device == TrainingDevice(kind="CPU")
    assert training_device() is device


def test_driver_version_without_nvml():
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        assert nvml_driver_version() is None
    else:
        pynvml.nvmlShutdown()
        assert nvml_driver_version()


def test_gpu_detection_enables_memory_growth(monkeypatch):
    # No GPU here: TensorFlow's listing is replaced to reach the GPU branch.
    import tensorflow as tf

    from cnngen import devices

    gpus = [tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")]
    grown = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus)
    monkeypatch.setattr(
        tf.config.experimental, "set_memory_growth", lambda gpu, on: grown.append((gpu, on))
    )
    description = "device: 0, name: NVIDIA H200, pci bus id: 0000:19:00.0"
    monkeypatch.setattr(devices, "_first_gpu_description", lambda: description)
    monkeypatch.setattr(devices, "_nvml_index", lambda bus_id: 0)
    monkeypatch.setattr(devices, "nvml_driver_version", lambda: "550.54")

    device = devices.training_device.__wrapped__()

    assert device.kind == "GPU"
    assert device.gpu_name == "NVIDIA H200"
    assert grown == [(gpus[0], True)]
