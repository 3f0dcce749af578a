"""Run model work on one daemon worker thread; hand results to callbacks on the thread that polls (Slicer's main
thread).

Every job has a key (e.g. "model", or one key per segment) and a number. A job that is no longer the newest of its
key when the worker reaches it is skipped, and a result (or error) that is no longer the newest when it arrives is
dropped: a newer request for the same key made it stale. Jobs of other keys are never affected.

Slicer's main thread holds Python's GIL while its Qt event loop idles, so a worker thread only runs while the main
thread runs Python. :meth:`BackgroundJobs.poll` therefore *waits* for the worker (up to :attr:`wait_seconds`,
a wait that releases the GIL) while a job is running: the worker computes at full speed and the GUI gets control
back at least every ``wait_seconds``. The worker is a daemon thread: quitting never waits for a running job or
download (PythonQt's ``Py_Finalize`` joins non-daemon threads, ThreadPoolExecutor's included).

No Qt here: the caller drives :meth:`poll` (a QTimer in Slicer, an asyncio task in a web server).
"""
from __future__ import annotations

import collections
import concurrent.futures
import threading
from typing import Callable, Hashable, Optional

SKIPPED = object()

#: Longest time one :meth:`BackgroundJobs.poll` keeps the caller while a job runs (GUI stays responsive).
DEFAULT_WAIT_SECONDS = 0.03


class _Job(object):
    __slots__ = ("key", "number", "function", "future", "on_done", "on_error", "on_poll")

    def __init__(self, key, number, function, on_done, on_error, on_poll):
        self.key, self.number, self.function = key, number, function
        self.future = concurrent.futures.Future()
        self.on_done, self.on_error, self.on_poll = on_done, on_error, on_poll


class BackgroundJobs(object):
    """One daemon worker thread, newest-wins per key, results delivered by :meth:`poll` on the polling thread.

    wait_seconds: how long :meth:`poll` waits (releasing the GIL) for a running job before returning.
    """

    def __init__(self, wait_seconds: float = DEFAULT_WAIT_SECONDS, name: str = "SAMMed3D worker"):
        self.wait_seconds = wait_seconds
        self._name = name
        self._latest = {}  # key -> number of the newest job
        self._lock = threading.Lock()
        self._queue = collections.deque()
        self._wake = threading.Condition(self._lock)
        self._pending = []  # jobs submitted and not yet delivered (polling thread only)
        self._thread = None  # type: Optional[threading.Thread]
        self._closed = False

    # ---- submitting ------------------------------------------------------------------------------------------------
    def submit(self, key: Hashable, function: Callable, on_done: Callable, on_error: Callable,
               on_poll: Optional[Callable] = None) -> int:
        """Queue ``function()``; later, from :meth:`poll`: ``on_done(result)`` or ``on_error(exception)`` if it is
        still the newest job of ``key``, and ``on_poll()`` at every poll while it waits or runs. Returns its number.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("BackgroundJobs is shut down")
            number = self._latest.get(key, 0) + 1
            self._latest[key] = number
            job = _Job(key, number, function, on_done, on_error, on_poll)
            self._queue.append(job)
            self._start_worker()
            self._wake.notify()
        self._pending.append(job)
        return number

    def invalidate(self, key: Hashable = None, predicate: Optional[Callable[[Hashable], bool]] = None) -> None:
        """Make queued and running jobs stale: those of ``key``, those whose key satisfies ``predicate``, or (neither
        given) all. Their callbacks will not run (e.g. the user reset the segment, or closed the scene)."""
        with self._lock:
            keys = set(self._latest) | set(job.key for job in self._queue)
            for existing in keys:
                if (key is None and predicate is None) or existing == key or (predicate is not None
                                                                              and predicate(existing)):
                    self._latest[existing] = self._latest.get(existing, 0) + 1

    def is_newest(self, key: Hashable, number: int) -> bool:
        with self._lock:
            return self._latest.get(key) == number

    def busy(self, key: Hashable = None) -> bool:
        """True while a job (of ``key``, or any) is queued, running or not yet delivered."""
        return any(key is None or job.key == key for job in self._pending)

    # ---- delivering ------------------------------------------------------------------------------------------------
    def poll(self, wait: Optional[float] = None) -> bool:
        """Deliver finished jobs' results (call from the main thread); True while jobs are still pending.

        While no job has finished, first waits up to ``wait`` seconds (default :attr:`wait_seconds`) for one:
        the wait releases the GIL, which is what lets the worker run under Slicer's event loop.
        """
        if self._pending and not any(job.future.done() for job in self._pending):
            timeout = self.wait_seconds if wait is None else wait
            if timeout > 0:
                concurrent.futures.wait([job.future for job in self._pending], timeout=timeout,
                                        return_when=concurrent.futures.FIRST_COMPLETED)
        pending, self._pending = self._pending, []  # callbacks may submit new jobs meanwhile
        still = []
        for job in pending:
            if not job.future.done():
                if job.on_poll is not None and self.is_newest(job.key, job.number):
                    job.on_poll()
                still.append(job)
                continue
            if not self.is_newest(job.key, job.number):
                continue  # stale: a newer job of the same key exists, or it was invalidated
            error = job.future.exception()
            if error is not None:
                job.on_error(error)
            elif job.future.result() is not SKIPPED:
                job.on_done(job.future.result())
        self._pending = still + self._pending
        return bool(self._pending)

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until the queued jobs have run (tests and the self-test)."""
        concurrent.futures.wait([job.future for job in self._pending], timeout=timeout)

    def shutdown(self) -> None:
        """Stop taking jobs; the worker ends after its current job (never waited for: it is a daemon thread)."""
        with self._lock:
            self._closed = True
            for job in self._queue:
                self._latest[job.key] = self._latest.get(job.key, 0) + 1
            self._queue.clear()
            self._wake.notify_all()

    # ---- worker ----------------------------------------------------------------------------------------------------
    def _start_worker(self):
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()

    def _work(self):
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                stale = self._latest.get(job.key) != job.number
            if stale:
                job.future.set_result(SKIPPED)
                continue
            try:
                result = job.function()
            except BaseException as error:  # noqa: BLE001 - handed to on_error on the polling thread
                job.future.set_exception(error)
            else:
                job.future.set_result(result)
            job = None  # drop references to the result before waiting for the next job
