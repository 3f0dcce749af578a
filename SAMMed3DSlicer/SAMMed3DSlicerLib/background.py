"""Run model work on one worker thread; hand results to callbacks on the thread that polls (Slicer's main thread).

Every job has a kind ("model", "segment") and a number. A job that is no longer the newest of its kind when the
worker reaches it is skipped, and a result (or error) that is no longer the newest when it arrives is dropped:
a newer click has made it stale. The caller polls (a Qt timer in Slicer); no Qt here, so it is testable anywhere.
"""
from __future__ import annotations

import concurrent.futures
import threading

SKIPPED = object()


class BackgroundJobs(object):
    """One worker thread, newest-wins per kind, results delivered by :meth:`poll`."""

    def __init__(self):
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="SAMMed3D")
        self._latest = {}
        self._lock = threading.Lock()
        self._pending = []

    def submit(self, kind, function, on_done, on_error, on_poll=None) -> int:
        """Queue ``function()``; later, from :meth:`poll`: ``on_done(result)`` or ``on_error(exception)`` if it is
        still the newest job of its kind, and ``on_poll()`` at every poll while it runs. Returns its number."""
        with self._lock:
            number = self._latest.get(kind, 0) + 1
            self._latest[kind] = number

        def run():
            with self._lock:
                if self._latest.get(kind) != number:
                    return SKIPPED
            return function()

        self._pending.append((kind, number, self._executor.submit(run), on_done, on_error, on_poll))
        return number

    def invalidate(self, kind) -> None:
        """Make every queued or running job of ``kind`` stale (e.g. the user reset the segment)."""
        with self._lock:
            self._latest[kind] = self._latest.get(kind, 0) + 1

    def is_newest(self, kind, number) -> bool:
        with self._lock:
            return self._latest.get(kind) == number

    def busy(self, kind=None) -> bool:
        return any(kind is None or job[0] == kind for job in self._pending)

    def poll(self) -> bool:
        """Deliver finished jobs' results (call from the main thread); True while jobs are still pending."""
        pending, self._pending = self._pending, []  # callbacks may submit new jobs meanwhile
        still = []
        for job in pending:
            kind, number, future, on_done, on_error, on_poll = job
            if not future.done():
                if on_poll is not None:
                    on_poll()
                still.append(job)
                continue
            if not self.is_newest(kind, number):
                continue  # stale: a newer job of the same kind exists
            error = future.exception()
            if error is not None:
                on_error(error)
            elif future.result() is not SKIPPED:
                on_done(future.result())
        self._pending = still + self._pending
        return bool(self._pending)

    def wait(self, timeout=None) -> None:
        """Block until the queued jobs have run (tests and the self-test)."""
        concurrent.futures.wait([job[2] for job in self._pending], timeout=timeout)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False)
