"""Experiment (not shipped): our server with each model version computed in a child process.

Why: inside one process the model worker thread shares the GIL with the event loop; after
TensorFlow computes it waits for the loop to let go of the GIL (see "The GIL" in
docs/benchmarks.md). Here the batcher sends each batch over a pipe to a process with its own
interpreter and reads the outputs back on the event loop (`add_reader`): no thread hand-off and
no GIL shared with the model. The rest of the server is unchanged (it still loads the model
itself, for metadata and warm-up, so memory is about doubled). `make bench` measures it next to
the real thing, to show what this design would buy before anyone builds it properly (child
restarts, hot reload, one process per version, failure isolation).

    python -m benchmarks.model_process_prototype --model-dir BASE [mnist-server flags]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

PIXELS = 28 * 28
CLASSES = 10


def _child(connection, model_path: str, intra_op_threads: int) -> None:
    """Loads the SavedModel and answers batches until the pipe closes."""
    import tensorflow as tf

    from mnist_server.runtime_tensorflow import disable_thread_spinning

    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    disable_thread_spinning()
    signature = tf.saved_model.load(model_path).signatures["serving_default"]
    connection.send_bytes(b"ready")
    while True:
        try:
            data = connection.recv_bytes()
        except EOFError:
            return
        images = np.frombuffer(data, np.uint8).reshape(-1, 28, 28)
        outputs = signature(images=tf.constant(images))
        connection.send_bytes(
            b"".join(
                (
                    outputs["probabilities"].numpy().astype(np.float32).tobytes(),
                    outputs["logits"].numpy().astype(np.float32).tobytes(),
                    outputs["classes"].numpy().astype(np.int64).tobytes(),
                )
            )
        )


class ChildModel:
    def __init__(self, model_path: Path, intra_op_threads: int):
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(
            target=_child, args=(child_end, str(model_path), intra_op_threads), daemon=True, name="model-child"
        )
        self._process.start()
        if self._connection.recv_bytes() != b"ready":
            raise RuntimeError("model child did not start")

    async def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        fd = self._connection.fileno()

        def readable() -> None:
            loop.remove_reader(fd)
            try:
                answer.set_result(self._connection.recv_bytes())
            except BaseException as exc:  # the child died: this batch fails like a model error
                answer.set_exception(exc)

        loop.add_reader(fd, readable)
        self._connection.send_bytes(np.ascontiguousarray(images).tobytes())  # the child is idle: no wait
        data = await answer
        count = len(images)
        floats = count * CLASSES
        return {
            "probabilities": np.frombuffer(data, np.float32, floats, 0).reshape(count, CLASSES),
            "logits": np.frombuffer(data, np.float32, floats, 4 * floats).reshape(count, CLASSES),
            "classes": np.frombuffer(data, np.int64, count, 8 * floats),
        }


def _patch_server() -> None:
    from mnist_server import app, batcher
    from mnist_server.model import cpu_count

    make_batcher = app.ModelServer._make_batcher

    def make_batcher_with_child(self, model):
        made = make_batcher(self, model)
        made.child_model = ChildModel(model.path, self.settings.intra_op_threads or cpu_count())
        return made

    async def call_child(self, inputs, waits=None):
        started, ok = time.perf_counter(), False
        try:
            outputs = await self.child_model.predict(inputs)
            ok = True
            return outputs
        finally:
            self._observer.batch_finished(len(inputs), time.perf_counter() - started, ok, waits)

    app.ModelServer._make_batcher = make_batcher_with_child
    batcher.Batcher._call_model = call_child


if __name__ == "__main__":
    _patch_server()
    from mnist_server.__main__ import main

    sys.exit(main())
