"""A process pool for CPU-heavy media work (encoding, decoding), so the event loop never waits."""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import wait
from typing import Any, TypeVar

T = TypeVar("T")


class CpuPool:
    def __init__(self, workers: int = 1) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: forking a process that runs an event loop and threads is unsafe.
            self._pool = ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=end_with_parent)
        return self._pool

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        if kwargs:
            fn = functools.partial(fn, **kwargs)
        return await loop.run_in_executor(self._executor(), fn, *args)

    def shutdown(self) -> None:
        """End the workers now (whatever they were making is redone by the task's next lease)
        and wait for the executor to wind down: that frees its queues' semaphores, which a
        process leaving without the wait left for the resource tracker to warn about."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


def end_with_parent() -> None:
    """Run in each pool worker: end it as soon as the process that started it is gone.

    A worker waits on its call queue, and holds both ends of that pipe itself, so a parent killed
    with SIGKILL never wakes it: without this it would run forever under init, and so would the
    resource tracker it keeps open. The parent's end of the spawn pipe closes when the parent dies
    however it dies; the parent pid changing (re-parented) is the fallback.
    """
    parent = multiprocessing.parent_process()
    sentinel = parent.sentinel if parent is not None else None
    ppid = os.getppid()
    threading.Thread(target=_exit_when_orphaned, args=(sentinel, ppid), name="end-with-parent",
                     daemon=True).start()


def _exit_when_orphaned(sentinel: int | None, ppid: int) -> None:
    while os.getppid() == ppid:
        if sentinel is not None:
            if wait([sentinel], timeout=1.0):
                break
        else:
            time.sleep(0.5)
    # Nothing of this process is worth finishing for a parent that cannot receive it.
    os._exit(1)
