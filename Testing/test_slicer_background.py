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
    release = threading.Event()
    ran, delivered = [], []

    def work(name, block=False):
        def run():
            if block:
                release.wait(5)
            ran.append(name)
            return name
        return run

    jobs.submit("segment", work("first", block=True), delivered.append, None)  # running when the others come
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
