"""`sammed3d serve`'s HTTP API on a real uvicorn (127.0.0.1) with a tiny random SAM-Med3D.

Every operation of /openapi.json refuses requests without the right token and answers garbage with 4xx (never 5xx);
limits (body size, volume size, non-finite geometry, malformed voxels); one client cannot touch another's session;
two clients at once get independent results; least-recently-used eviction and idle expiry, after which the client
recovers by itself; stale client state is refused (409) instead of patched wrongly.
"""
import http.client
import json
import threading

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sammed3d
from sammed3d.remote import RemoteSession, ServerConnection, connect
from sammed3d.remote.wire import encode_volume, pack_mask, volume_hash
from sammed3d.session import InteractiveSession
from server_helpers import TOKEN, ServerThread

PUBLIC = {"/health"}


@pytest.fixture(scope="module")
def model():
    """The bundled demo model: trained, so clicks change masks (random weights fill the whole ROI)."""
    return sammed3d.load_model("demo", "cpu")


@pytest.fixture(scope="module")
def server(model):
    with ServerThread(model, max_upload_mb=8) as running:
        yield running


def small_image(seed=0, size=(40, 36, 24), spacing=(3.0, 3.0, 4.0)):
    rng = np.random.default_rng(seed)
    voxels = rng.integers(-200, 300, size=size[::-1]).astype(np.int16)
    voxels[8:16, 10:26, 12:28] = 900
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing(spacing)
    image.SetOrigin((-50.0, 20.0, 7.5))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    return image


def centre_ras(image, offset=(0.0, 0.0, 0.0)):
    lps = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in image.GetSize()])
    return (-lps[0] + offset[0], -lps[1] + offset[1], lps[2] + offset[2])


def raw(server, method, path, body=None, token=TOKEN, headers=None, client="tester"):
    """(status, parsed JSON or None) of one plain HTTP request."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    all_headers = {"X-Client-Id": client,
                   "Content-Type": "application/json" if isinstance(body, str) else "application/octet-stream"}
    if token is not None:
        all_headers["Authorization"] = "Bearer " + token
    all_headers.update(headers or {})
    try:
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(data) if data else None
    except ValueError:
        return response.status, None


def open_raw_session(server, image, client="tester"):
    digest, body = encode_volume(image)
    status, _ = raw(server, "PUT", "/volumes/" + digest, body)
    assert status in (200, 201)
    status, answer = raw(server, "POST", "/sessions", json.dumps({"volume": digest}), client=client)
    assert status == 201, answer
    return answer["session"], digest


def operations(server):
    status, spec = raw(server, "GET", "/openapi.json", token=None)
    assert status == 200
    found = [(path, method.upper()) for path, item in spec["paths"].items() for method in item]
    assert len(found) >= 12, found
    return found


def fill(path, session_id, volume_id):
    return path.replace("{session}", session_id).replace("{volume}", volume_id)


def test_every_operation_needs_the_token(server):
    session_id, volume_id = open_raw_session(server, small_image())
    for path, method in operations(server):
        url = fill(path, session_id, volume_id)
        if path in PUBLIC:
            assert raw(server, method, url, token=None)[0] == 200
            continue
        for token in (None, "wrong-" + TOKEN, "", TOKEN + "x"):
            status, answer = raw(server, method, url, body=b"{}", token=token)
            assert status in (401, 403), (method, path, token, status)
            assert answer["error"], answer
        status, answer = raw(server, method, url, body=b"{}", token=None, headers={"Authorization": "Basic " + TOKEN})
        assert status == 401
    # the refused requests changed nothing
    status, answer = raw(server, "GET", "/sessions/" + session_id)
    assert status == 200 and answer["version"] == 0 and answer["clicks"] == []


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(st.text(max_size=10), children, max_size=4), max_leaves=12)
_garbage = st.one_of(st.binary(max_size=300), _json.map(lambda v: json.dumps(v).encode()),
                     st.fixed_dictionaries({"clicks": _json, "point": _json, "mask": _json, "volume": _json,
                                            "if_version": _json}).map(lambda v: json.dumps(v).encode()))


def test_garbage_bodies_get_4xx_never_5xx_and_the_server_still_works(server, model):
    image = small_image(seed=1)
    session_id, volume_id = open_raw_session(server, image)
    targets = []
    for path, method in operations(server):
        if path in PUBLIC:
            continue
        for session_value, volume_value in ((session_id, volume_id), ("nope", "0" * 64), ("x" * 80, "zz")):
            targets.append((method, fill(path, session_value, volume_value)))

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=_garbage)
    def check(body):
        for method, url in targets:
            status, answer = raw(server, method, url, body=body, headers={"Content-Type": "application/json"})
            assert status < 500, (method, url, body, status, answer)
            if status >= 400:
                assert isinstance(answer, dict) and answer.get("error"), answer

    check()
    # specific malformed requests
    point = list(centre_ras(image))
    bad = [
        ("POST", "/sessions/%s/points" % session_id, {"point": [float("nan"), 0, 0]}),
        ("POST", "/sessions/%s/points" % session_id, {"point": [1e308 * 10, 0, 0]}),
        ("POST", "/sessions/%s/points" % session_id, {"point": [0, 0]}),
        ("POST", "/sessions/%s/points" % session_id, {"point": [1e6, 1e6, 1e6]}),  # outside the image
        ("POST", "/sessions/%s/clicks" % session_id, {"clicks": [[point, True]] * 1001}),
        ("POST", "/sessions/%s/seed" % session_id, {"mask": "AAAA"}),
        ("POST", "/sessions/%s/seed" % session_id, {"mask": pack_mask(np.ones((2, 2, 2)))}),  # wrong shape
        ("POST", "/sessions", {"volume": "0" * 64}),
        ("POST", "/sessions", {"volume": volume_id, "precision": "fp16"}),  # no fp16 on a CPU server
        ("POST", "/sessions", {"volume": volume_id, "seed": "bm90IHpsaWI="}),
        ("POST", "/sessions/unknown/undo", {}),
    ]
    for method, url, payload in bad:
        text = json.dumps(payload).replace("Infinity", "1e999")
        status, answer = raw(server, method, url, text.encode(), headers={"Content-Type": "application/json"})
        assert 400 <= status < 500 and answer["error"], (url, payload, status, answer)
    # the server still computes, and the session equals a local one
    reference = InteractiveSession(model, image)
    expected = sitk.GetArrayFromImage(reference.add_point(point))
    remote = RemoteSession(connect(server.url, TOKEN), image)
    assert np.array_equal(sitk.GetArrayFromImage(remote.add_point(point)), expected)


def test_volume_limits_and_malformed_uploads(server):
    image = small_image(seed=2)
    digest, body = encode_volume(image)
    assert raw(server, "PUT", "/volumes/" + "1" * 64, body)[0] == 400  # content does not match the hash
    assert raw(server, "PUT", "/volumes/" + digest, body[:-10])[0] == 400  # truncated
    assert raw(server, "PUT", "/volumes/" + digest, b"SM3DVOL1" + b"\xff" * 40)[0] == 400
    assert raw(server, "PUT", "/volumes/" + digest, b"x" * (9 << 20))[0] == 413  # over --max-upload-mb 8
    try:  # not valid chunked encoding: the HTTP layer answers 400 and closes, or resets before the answer is read
        status, answer = raw(server, "PUT", "/volumes/" + digest, body[:200],
                             headers={"Transfer-Encoding": "chunked", "Content-Length": ""})
        assert 400 <= status < 500
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
        pass  # refused either way; the requests below show the server is still up and stored nothing
    for change in ({"spacing": [float("nan"), 1.0, 1.0]}, {"direction": [0.0] * 9}, {"size": [1, 4, 4]},
                   {"dtype": "complex64"}, {"spacing": [0.0, 1.0, 1.0]}, {"size": [4096, 4096, 4096]}):
        header = json.loads(body[12:12 + int.from_bytes(body[8:12], "little")])
        header.update(change)
        head = json.dumps(header).encode()
        forged = b"SM3DVOL1" + len(head).to_bytes(4, "little") + head + body[12 + int.from_bytes(body[8:12], "little"):]
        status, answer = raw(server, "PUT", "/volumes/" + digest, forged)
        assert status == 400 and answer["error"], (change, status, answer)
    assert raw(server, "GET", "/volumes/" + digest)[0] == 404  # nothing bad was stored
    assert raw(server, "PUT", "/volumes/" + digest, body)[0] == 201
    assert raw(server, "GET", "/volumes/" + digest)[1]["size"] == list(image.GetSize())


def test_a_client_cannot_touch_another_clients_session(server):
    session_id, _ = open_raw_session(server, small_image(seed=3), client="alice")
    for method, op in (("GET", ""), ("GET", "/mask"), ("POST", "/undo"), ("POST", "/reset"), ("DELETE", "")):
        status, answer = raw(server, method, "/sessions/%s%s" % (session_id, op), "{}", client="mallory")
        assert status == 404 and answer["code"] == "unknown_session"
    assert raw(server, "GET", "/sessions/" + session_id, client="alice")[0] == 200


def test_stale_versions_are_refused_and_answers_are_patches(server):
    image = small_image(seed=4, size=(96, 96, 40), spacing=(1.0, 1.0, 1.5))
    session_id, _ = open_raw_session(server, image)
    point = list(centre_ras(image))
    status, first = raw(server, "POST", "/sessions/%s/points" % session_id, json.dumps({"point": point}))
    assert status == 200 and first["version"] == 1 and first["base_version"] == 0
    status, answer = raw(server, "POST", "/sessions/%s/undo" % session_id, json.dumps({"if_version": 0}))
    assert status == 409 and answer["code"] == "version_conflict"
    status, second = raw(server, "POST", "/sessions/%s/points" % session_id,
                         json.dumps({"point": list(centre_ras(image, (3, 2, 0))), "positive": False,
                                     "if_version": 1}))
    assert status == 200 and second["base_version"] == 1
    box = second["patch"]["box"]
    if box is not None:  # the patch covers what changed, not the whole volume
        assert np.prod(np.subtract(box[3:], box[:3])) < np.prod(image.GetSize())


def _run_clicks(session, clicks):
    return [sitk.GetArrayFromImage(session.add_point(*click)) for click in clicks]


def test_two_clients_at_once_get_independent_results(server, model):
    images = [small_image(seed=5), small_image(seed=6, size=(30, 44, 20))]
    clicks = [[(centre_ras(images[0]), True), (centre_ras(images[0], (6, 0, 0)), False)],
              [(centre_ras(images[1], (0, 4, 0)), True), (centre_ras(images[1], (-5, 0, 4)), True)]]
    expected = [_run_clicks(InteractiveSession(model, image), c) for image, c in zip(images, clicks)]
    results, errors = [None, None], []

    def client(index):
        try:
            session = RemoteSession(connect(server.url, TOKEN), images[index])
            results[index] = _run_clicks(session, clicks[index])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not np.array_equal(expected[0][0], expected[0][1])  # the clicks matter
    for got, want in zip(results, expected):
        assert all(np.array_equal(a, b) for a, b in zip(got, want))


class CountingConnection(ServerConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def request(self, method, path, payload=None, body=None, ok=(200, 201, 204)):
        self.calls.append((method, path.split("/")[1], path.rsplit("/", 1)[-1]))
        return super().request(method, path, payload, body, ok)


def test_eviction_and_expiry_are_recovered_by_the_client(model):
    now = [1000.0]
    image, other = small_image(seed=7), small_image(seed=8)
    point = centre_ras(image)
    local = InteractiveSession(model, image)
    with ServerThread(model, max_sessions=1, ttl=60.0, clock=lambda: now[0]) as running:
        connection = CountingConnection(running.url, TOKEN)
        session = RemoteSession(connection, image)
        _ = session.add_point(point)
        local.add_point(point)
        # a second session evicts the first (max_sessions=1)
        RemoteSession(connect(running.url, TOKEN), other).add_point(centre_ras(other))
        assert running.store.evicted["sessions"] == 1
        refined = session.add_point(centre_ras(image, (4, 0, 0)), False)
        assert np.array_equal(sitk.GetArrayFromImage(refined),
                              sitk.GetArrayFromImage(local.add_point(centre_ras(image, (4, 0, 0)), False)))
        uploads = [c for c in connection.calls if c[0] == "PUT"]
        assert len(uploads) == 1  # the volume stayed: no second upload
        # idle past the time-to-live: session and volume expire; the next click re-uploads and replays
        now[0] += 61.0
        running.store.expire()
        assert running.store.counts() == {"volumes": 0, "sessions": 0}
        undone = session.undo()
        assert np.array_equal(sitk.GetArrayFromImage(undone), sitk.GetArrayFromImage(local.undo()))
        assert len([c for c in connection.calls if c[0] == "PUT"]) == 2
        assert running.store.evicted["expired_sessions"] >= 1


def test_memory_budget_evicts_least_recently_used_volumes(model):
    images = [small_image(seed=s, size=(64, 64, 64)) for s in (9, 10, 11)]  # 512 KiB of voxels each
    with ServerThread(model, memory_mb=1.2) as running:
        for image in images:
            digest, body = encode_volume(image)
            assert raw(running, "PUT", "/volumes/" + digest, body)[0] == 201
        assert running.store.memory() <= 1.2 * 2 ** 20
        assert raw(running, "GET", "/volumes/" + volume_hash(images[0]))[0] == 404  # least recently used: gone
        assert raw(running, "GET", "/volumes/" + volume_hash(images[2]))[0] == 200
        big = small_image(seed=12, size=(128, 128, 48))  # 1.5 MiB: more than the whole budget
        digest, body = encode_volume(big)
        status, answer = raw(running, "PUT", "/volumes/" + digest, body)
        assert status == 413 and "memory budget" in answer["error"]


def test_uploads_and_small_requests_are_not_blocked_by_inference(model):
    """The inference worker is held busy: uploads, session state and /info still answer; a click waits its turn."""
    image = small_image(seed=13)
    with ServerThread(model) as running:
        session_id, _ = open_raw_session(running, image)
        release, busy = threading.Event(), threading.Event()

        def hold_the_worker():
            busy.set()
            release.wait(60)

        running.app.state.engine.executor.submit(hold_the_worker)
        assert busy.wait(30)
        clicked = {}

        def click():
            clicked["answer"] = raw(running, "POST", "/sessions/%s/points" % session_id,
                                    json.dumps({"point": list(centre_ras(image))}))

        clicker = threading.Thread(target=click)
        clicker.start()
        try:
            other = small_image(seed=14)
            digest, body = encode_volume(other)
            assert raw(running, "PUT", "/volumes/" + digest, body)[0] == 201
            assert raw(running, "GET", "/volumes/" + digest)[0] == 200
            assert raw(running, "GET", "/info")[0] == 200
            assert raw(running, "GET", "/sessions/" + session_id)[1]["version"] == 0
            assert "answer" not in clicked  # the click is queued behind the busy worker
        finally:
            release.set()
            clicker.join(60)
        status, answer = clicked["answer"]
        assert status == 200 and answer["version"] == 1 and answer["timings"]["queue"] > 0


def test_a_timed_out_click_leaves_the_client_as_it_was_and_is_reconciled(model):
    """A click the server applied after the client gave up: the client's state is unchanged, and its next click
    finds the server ahead (409) and replays its own clicks, so the mask matches the clicks the user has."""
    from sammed3d.remote import ServerUnavailable

    image = small_image(seed=15)
    first, late, third = centre_ras(image), (centre_ras(image, (5, 0, 0)), False), (centre_ras(image, (-4, 3, 0)), True)
    with ServerThread(model) as running:
        connection = connect(running.url, TOKEN)
        session = RemoteSession(connection, image)
        after_first = sitk.GetArrayFromImage(session.add_point(first))
        release = threading.Event()
        running.app.state.engine.executor.submit(release.wait, 60)
        connection.timeout = 1.0
        try:
            with pytest.raises(ServerUnavailable, match="did not answer within 1 s"):
                session.add_point(*late)
        finally:
            release.set()
        assert session.clicks == [(tuple(first), True)]
        assert np.array_equal(session.mask_array(), after_first)
        connection.timeout = 60.0
        got = sitk.GetArrayFromImage(session.add_point(*third))
        # open 0, first 1, late 2 (applied after the timeout), refused third (409), replay 3
        assert session._version == 3  # noqa: SLF001
    expected = InteractiveSession(model, image)
    expected.add_point(first)
    want = sitk.GetArrayFromImage(expected.add_point(*third))
    assert np.array_equal(got, want)
    assert not np.array_equal(want, after_first)


def test_seeded_sessions_undo_redo_reset_match_the_local_session(server, model):
    image = small_image(seed=16)
    seed = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    seed[2:6, 3:9, 4:12] = 1
    seed_image = sitk.GetImageFromArray(seed)
    seed_image.CopyInformation(image)
    local, remote = InteractiveSession(model, image), RemoteSession(connect(server.url, TOKEN), image)
    steps = [lambda s: s.seed(seed_image), lambda s: s.add_point(centre_ras(image)),
             lambda s: s.add_point(centre_ras(image, (5, 0, 0)), False), lambda s: s.undo(), lambda s: s.redo(),
             lambda s: s.set_clicks([(centre_ras(image, (0, 3, 0)), True)]), lambda s: s.seed(None),
             lambda s: s.reset()]
    for index, step in enumerate(steps):
        step(local)
        step(remote)
        assert np.array_equal(remote.mask_array(), local.mask_array()), index
        assert remote.clicks == local.clicks, index
    assert np.array_equal(remote.mask_array(), np.zeros_like(seed))


def test_a_64_bit_integer_image_travels_as_float32_with_the_same_result(server, model):
    image = sitk.Cast(small_image(seed=17), sitk.sitkInt64)
    point = centre_ras(image)
    expected = sitk.GetArrayFromImage(InteractiveSession(model, image).add_point(point))
    got = sitk.GetArrayFromImage(RemoteSession(connect(server.url, TOKEN), image).add_point(point))
    assert expected.any() and np.array_equal(got, expected)


def test_idle_sessions_expire_without_any_request(model):
    """The server's sweeper drops idle sessions and volumes by itself (here: a 0.5 s time-to-live)."""
    import time

    with ServerThread(model, ttl=0.5) as running:
        open_raw_session(running, small_image(seed=18))  # asserts that the session was opened
        deadline = time.monotonic() + 20
        while running.store._sessions and time.monotonic() < deadline:  # noqa: SLF001 - no request may touch it
            time.sleep(0.1)
        assert running.store.counts() == {"volumes": 0, "sessions": 0}
        assert running.store.evicted["expired_sessions"] == 1
