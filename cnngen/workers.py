"""Training in child processes that are replaced after a set number of architectures.

TensorFlow keeps part of the state of every model it has fitted for the life of the process.
With TensorFlow 2.21, about 20 MiB per small architecture stays allocated after
``keras.backend.clear_session()`` and a garbage collection, in a plain Keras loop as in CNNGen,
so a process that trains hundreds of architectures grows without bound. A
:class:`WorkerPool` trains each architecture in a child process started with the ``spawn``
method and replaces the child after ``architectures_per_process`` trainings, so the memory of
a batch is bounded by what one child accumulates, whatever the batch's length.

A child that dies, killed by the kernel's out-of-memory killer or by a crash in a native
library, costs only the architecture it was training. That architecture gets a ``failed``
result naming the exit code or signal, and the next one starts a fresh child. A child also
exits as soon as its parent is gone, so an interrupted run leaves no training behind.

This module owns the children's life cycle and the messages between parent and child. What a
training does is left to ``cnngen.training``, what the batch records to ``cnngen.batch``.

Because children are spawned, a script that uses a pool must guard its top level with
``if __name__ == "__main__":``, and ``build_model_for`` must be picklable: a function defined
at module level or :class:`cnngen.keras_source.CodeFileModels`, not a lambda.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from types import SimpleNamespace

from cnngen.errors import ParameterError, TrainingError
from cnngen.training import TrainingConfig, TrainingResult, failed_result, train_item

logger = logging.getLogger(__name__)

# How often a waiting parent checks that its child is alive, and a child that its parent is alive.
_POLL_INTERVAL_S = 0.5
# How long a child may take to exit on request before the parent terminates it.
_EXIT_TIMEOUT_S = 30.0


class WorkerDiedError(TrainingError):
    """Raised into a ``failed`` result when a child process ends in the middle of a training."""


class WorkerPool:
    """Train architectures one at a time in a child process replaced every N trainings.

    Use it as a context manager, so that the last child is stopped::

        with WorkerPool(data, config, CodeFileModels(run_dir), 10) as pool:
            result = pool.train(item)

    Args:
        data: The splits, as for :func:`cnngen.training.train_architecture`. Each new child
            receives a copy of the images, labels and data set shape.
        config: Training and measurement settings.
        build_model_for: Returns the ``build_model(input_shape, num_classes)`` of an item; it
            is called in the child, so it must be picklable.
        architectures_per_process: Trainings per child before it is replaced (>= 1).

    Attributes:
        processes_started: Number of children started so far.

    Raises:
        ParameterError: If architectures_per_process is not an integer >= 1, or
            build_model_for cannot be pickled.
    """

    def __init__(self, data, config: TrainingConfig, build_model_for, architectures_per_process):
        valid = isinstance(architectures_per_process, int) and not isinstance(
            architectures_per_process, bool
        )
        if not valid or architectures_per_process < 1:
            raise ParameterError(
                f"invalid architectures_per_process {architectures_per_process!r}: expected an "
                "integer >= 1 (0 in a parameters file trains in the calling process)"
            )
        _check_picklable(build_model_for)
        self._payload = (_training_data(data), config, build_model_for)
        self._config = config
        self._per_process = architectures_per_process
        self._process = None
        self._connection = None
        self._trained_by_process = 0
        self.processes_started = 0

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def train(self, item) -> TrainingResult:
        """Train one item in the current child, starting a new child first when needed.

        Returns:
            The child's result, or a ``failed`` result when the child ended without one.

        Raises:
            TrainingError: What :func:`cnngen.training.train_item` raised in the child, such
                as for an invalid seed.
        """
        if self._process is None or self._trained_by_process >= self._per_process:
            self.close()
            self._start()
        self._connection.send(_picklable_item(item))
        self._trained_by_process += 1
        reply = self._receive()
        if reply is None:
            return self._died(item)
        kind, value = reply
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        """Ask the current child to exit, and terminate it when it does not."""
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if process is None:
            return
        try:
            connection.send(None)
        except (BrokenPipeError, OSError):
            pass
        process.join(_EXIT_TIMEOUT_S)
        if process.is_alive():
            logger.warning("training process %d did not exit; terminating it", process.pid)
            process.terminate()
            process.join()
        connection.close()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child_end, *self._payload, os.getpid(), logging.getLogger().level),
            name="cnngen-training",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        self._connection = parent_end
        self._trained_by_process = 0
        self.processes_started += 1
        logger.debug("started training process %d", self._process.pid)

    def _receive(self):
        """Return the child's reply, or None when the child ended without one."""
        while True:
            if self._connection.poll(_POLL_INTERVAL_S):
                try:
                    return self._connection.recv()
                except EOFError:
                    return None
            if not self._process.is_alive():
                # The child may have replied just before it ended.
                return self._connection.recv() if self._connection.poll(0) else None

    def _died(self, item) -> TrainingResult:
        process = self._process
        process.join()
        reason = describe_exit(process.exitcode)
        self._connection.close()
        self._process = self._connection = None
        logger.warning("the process training %s %s", item.arch_id, reason)
        error = WorkerDiedError(
            f"the process training {item.arch_id} {reason} before it returned a result"
        )
        return failed_result(item.arch_id, self._config, error)


def describe_exit(exitcode: int | None) -> str:
    """Describe a child's exit code, naming the signal of a negative one."""
    if exitcode is None or exitcode >= 0:
        return f"exited with code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    text = f"was killed by {name}"
    if name == "SIGKILL":
        text += " (the kernel's out-of-memory killer sends it when memory runs out)"
    return text


def _check_picklable(build_model_for) -> None:
    try:
        pickle.dumps(build_model_for)
    except Exception as error:
        raise ParameterError(
            f"build_model_for {build_model_for!r} cannot be sent to a training process "
            f"({error}); pass a function defined at module level or "
            "cnngen.keras_source.CodeFileModels, or train in the calling process"
        ) from None


def _picklable_item(item):
    """Return the item's fields in a form that pickles.

    Rows of ``DataFrame.itertuples`` are named tuples of a class made on the fly, which pickle
    cannot find by name.
    """
    if hasattr(item, "_asdict"):
        return SimpleNamespace(**item._asdict())
    return item


def _training_data(data) -> SimpleNamespace:
    """Return the parts of the splits a training reads, in a form that pickles."""
    info = SimpleNamespace(
        name=getattr(data.info, "name", None),
        input_shape=tuple(data.info.input_shape),
        num_classes=data.info.num_classes,
    )
    arrays = {
        name: getattr(data, name)
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    }
    return SimpleNamespace(info=info, **arrays)


def _serve(connection, data, config, build_model_for, parent_pid: int, log_level: int) -> None:
    """Child process: train the items received until None arrives or the parent is gone."""
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    _exit_with_parent(parent_pid)
    while True:
        try:
            item = connection.recv()
        except EOFError:
            return
        if item is None:
            return
        try:
            reply = ("result", train_item(item, data, config, build_model_for))
        except Exception as error:
            reply = ("error", error)
        gc.collect()
        connection.send(reply)


def _exit_with_parent(parent_pid: int) -> None:
    """Start a thread that ends this process once its parent has exited."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_POLL_INTERVAL_S)
        os._exit(1)

    threading.Thread(target=watch, name="cnngen-parent-watch", daemon=True).start()
