"""Bidirectional streams answered in request order while up to `window` requests compute at once
(so one stream's requests can share batches). A failed request becomes a response built by the
adapter (the stream goes on); when the server starts draining, the stream ends UNAVAILABLE after
the answers already owed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from ..errors import ShuttingDown
from ..inference import InferenceCore

Request = TypeVar("Request")
Response = TypeVar("Response")
_END, _DRAIN = object(), object()


async def ordered_stream(
    core: InferenceCore,
    requests: AsyncIterator[Request],
    answer: Callable[[Request], Awaitable[Response]],
    window: int = 64,
):
    """Yields answer(request) for each request, in order. `answer` must not raise."""
    answers: asyncio.Queue = asyncio.Queue()  # answer tasks in request order, then _END/_DRAIN
    slots = asyncio.Semaphore(window)

    async def read() -> None:
        try:
            async for request in requests:
                await slots.acquire()
                if core.draining:
                    return  # the _DRAIN marker (queued first) ends the stream
                answers.put_nowait(asyncio.ensure_future(answer(request)))
        finally:
            answers.put_nowait(_END)

    unsubscribe = core.on_drain(lambda: answers.put_nowait(_DRAIN))
    reader = asyncio.create_task(read())
    try:
        while True:
            item = await answers.get()
            if item is _END:
                break
            if item is _DRAIN:
                raise ShuttingDown()  # UNAVAILABLE via the metered handler, counted before it is sent
            yield await item
            slots.release()
        await reader  # surfaces a failure of the request stream itself
    finally:
        unsubscribe()
        reader.cancel()
        while not answers.empty():
            item = answers.get_nowait()
            if isinstance(item, asyncio.Future):
                item.cancel()
