"""Awaiting receipts: the writes of one group commit resume their requests with one wake-up
of the event loop, and a failed write raises its error."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

import pytest

from riverbed.exceptions import ServerError
from riverbed.receipts import Receipt


async def test_one_commit_wakes_the_loop_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    scheduled: list[Any] = []
    original = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        scheduled.append(callback)
        return original(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    futures: list[Future[None]] = [Future() for _ in range(5)]

    async def wait(receipt: Receipt[int]) -> int:
        return await receipt

    tasks = [asyncio.ensure_future(wait(Receipt(n, f))) for n, f in enumerate(futures)]
    await asyncio.sleep(0)  # every task now waits on its receipt

    def commit() -> None:  # what the store's writer thread does after one commit
        for future in futures:
            future.set_result(None)

    writer = threading.Thread(target=commit)
    writer.start()
    writer.join()  # all five completed before the loop runs again
    assert await asyncio.gather(*tasks) == [0, 1, 2, 3, 4]
    assert len(scheduled) == 1


async def test_a_failed_write_raises_its_error() -> None:
    future: Future[None] = Future()
    receipt = Receipt("value", future)
    threading.Thread(target=future.set_exception, args=(ServerError("disk full"),)).start()
    with pytest.raises(ServerError, match="disk full"):
        await receipt


async def test_a_committed_receipt_answers_at_once() -> None:
    future: Future[None] = Future()
    future.set_result(None)
    assert await Receipt(7, future) == 7
