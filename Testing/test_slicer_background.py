"""Background jobs: work off the calling thread, results on the polling thread, stale results dropped."""
import threading
import time

from SAMMed3DSlicerLib.background import BackgroundJobs


def poll_until_idle(jobs, timeout=5.0):
    deadline = time.monotonic() + timeout
    while jobs.poll():
        assert time.monotonic() < deadline, "jobs did not finish"
        time.sleep(0.005)


def test_results_arrive_on_the_polling_thread_and_work_runs_elsewhere():
    jobs = BackgroundJobs()
    main = threading.get_ident()
    seen = {}
    jobs.submit("segment", threading.get_ident, lambda worker: seen.update(worker=worker,
                                                                            callback=threading.get_ident()), None)
    poll_until_idle(jobs)
    assert seen["worker"] != main and seen["callback"] == main
    jobs.shutdown()


def test_a_newer_request_makes_older_ones_stale():
    jobs = BackgroundJobs()
    release, started = threading.Event(), threading.Event()
    ran, delivered = [], []

    def work(name, block=False):
        def run():
            if block:
                started.set()
                release.wait(5)
            ran.append(name)
            return name
        return run

    jobs.submit("segment", work("first", block=True), delivered.append, None)  # running when the others come
    assert started.wait(5)
    jobs.submit("segment", work("second"), delivered.append, None)  # queued, superseded before it starts
    jobs.submit("segment", work("third"), delivered.append, None)
    jobs.submit("model", work("model"), delivered.append, None)  # another kind is never stale for "segment"
    release.set()
    poll_until_idle(jobs)
    assert ran == ["first", "third", "model"]  # "second" was skipped: newer work existed when the worker got to it
    assert delivered == ["third", "model"]  # "first" ran, but its result was stale on arrival
    jobs.shutdown()


def test_errors_go_to_the_error_callback_and_poll_callbacks_run_while_waiting():
    jobs = BackgroundJobs()
    release = threading.Event()
    errors, polls = [], []

    def fail():
        release.wait(5)
        raise ValueError("boom")

    jobs.submit("model", fail, None, errors.append, lambda: polls.append(1))
    jobs.poll()
    release.set()
    poll_until_idle(jobs)
    assert [str(e) for e in errors] == ["boom"] and polls
    jobs.shutdown()


def test_callbacks_may_submit_follow_up_jobs():
    jobs = BackgroundJobs()
    results = []
    jobs.submit("model", lambda: "model", lambda _: jobs.submit("segment", lambda: "mask", results.append, None),
                None)
    poll_until_idle(jobs)
    assert results == ["mask"]
    jobs.shutdown()


def test_invalidate_drops_a_result_still_on_its_way():
    jobs = BackgroundJobs()
    release = threading.Event()
    delivered = []
    jobs.submit("segment", lambda: release.wait(5) and "mask", delivered.append, None)
    jobs.invalidate("segment")
    release.set()
    poll_until_idle(jobs)
    assert delivered == []
    jobs.shutdown()


def test_jobs_are_newest_wins_per_key_not_per_kind():
    """A click in segment B must not drop the pending result of segment A."""
    jobs = BackgroundJobs()
    release = threading.Event()
    delivered = []
    jobs.submit(("segment", "A"), lambda: release.wait(5) and "A", delivered.append, None)
    jobs.submit(("segment", "B"), lambda: "B", delivered.append, None)
    release.set()
    poll_until_idle(jobs)
    assert sorted(delivered) == ["A", "B"]
    jobs.shutdown()


def test_invalidate_by_predicate_and_all():
    jobs = BackgroundJobs()
    release = threading.Event()
    delivered = []
    jobs.submit(("segment", "seg1", "A"), lambda: release.wait(5) and "A", delivered.append, None)
    jobs.submit(("segment", "seg2", "B"), lambda: "B", delivered.append, None)
    jobs.submit("model", lambda: "model", delivered.append, None)
    jobs.invalidate(predicate=lambda key: key[0] == "segment" and key[1] == "seg1")
    release.set()
    poll_until_idle(jobs)
    assert sorted(delivered) == ["B", "model"]
    jobs.submit("model", lambda: release.wait(5) and "again", delivered.append, None)
    jobs.invalidate()
    poll_until_idle(jobs)
    assert sorted(delivered) == ["B", "model"]
    jobs.shutdown()


def test_poll_waits_for_the_worker_releasing_the_gil():
    """Slicer's event loop holds the GIL between timer callbacks (emulated: a C sleep that keeps it). The worker
    must make progress while the main thread is inside poll() and poll() must return while the job still runs."""
    import ctypes

    libc = ctypes.PyDLL(None)  # PyDLL: calls keep the GIL, as Qt's event loop does in Slicer
    jobs = BackgroundJobs(wait_seconds=0.04)
    assert jobs.wait_seconds <= 0.05  # the GUI gets control back at least every 50 ms
    stop = threading.Event()
    counter = [0]

    def python_heavy_job():  # needs the GIL for every step
        while not stop.is_set():
            counter[0] += 1
        return counter[0]

    result = []
    jobs.submit("segment", python_heavy_job, result.append, None)
    jobs.poll(wait=0.02)  # let the worker start
    during_poll = []
    for _ in range(5):
        libc.usleep(30000)  # the "event loop": GIL held
        before = counter[0]
        still_running = jobs.poll()
        during_poll.append(counter[0] - before)
        assert still_running and not result  # poll returned although the job runs on
    assert min(during_poll) > 0, during_poll  # the worker ran inside every poll
    stop.set()
    poll_until_idle(jobs)
    assert result and result[0] == counter[0]
    jobs.shutdown()


def test_without_a_job_poll_does_not_wait():
    jobs = BackgroundJobs(wait_seconds=30.0)
    assert jobs.poll() is False  # returns at once: nothing pending (a 30 s wait would hang the test)
    finished = []
    jobs.submit("k", lambda: 1, finished.append, None)
    jobs.wait(5)
    assert jobs.poll() is False and finished == [1]  # a finished job is delivered without waiting
    jobs.shutdown()


def test_exit_never_waits_for_a_running_job():
    """The worker is a daemon thread: the interpreter exits while a job still runs (Slicer's Py_Finalize)."""
    import subprocess
    import sys

    from conftest import MODULE_DIR

    code = ("import sys, time; sys.path.insert(0, %r)\n"
            "from SAMMed3DSlicerLib.background import BackgroundJobs\n"
            "jobs = BackgroundJobs(); jobs.submit('model', lambda: time.sleep(600), print, print)\n"
            "jobs.poll(wait=0.1); print('exiting')\n" % str(MODULE_DIR))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "exiting" in result.stdout, result.stderr
