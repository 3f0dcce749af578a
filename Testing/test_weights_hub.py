"""sammed3d.weights.resolve_checkpoint against a local stand-in for the Hugging Face Hub (no real network)."""
import hashlib
import http.server
import io
import shutil
import socket
import threading

import pytest
import torch

from sammed3d.errors import CheckpointError
from sammed3d.weights import KNOWN_CHECKPOINTS, read_state_dict, resolve_checkpoint
from sammed3d.weights import hub

REPO_ID, FILENAME = hub.HUB_CHECKPOINTS["turbo"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def checkpoint_bytes():
    torch.manual_seed(3)
    state = torch.nn.Linear(8, 4).state_dict()
    buffer = io.BytesIO()
    torch.save({"epoch": 1, "model_state_dict": {"module." + k: v for k, v in state.items()}}, buffer)
    return buffer.getvalue(), state


class FakeHub:
    """Two HTTP servers on 127.0.0.1 answering like huggingface.co and its LFS CDN for one file.

    HEAD/GET {hub}/<repo>/resolve/main/<file> -> 302 to {cdn}/blobs/<sha256> with X-Repo-Commit, X-Linked-Etag and
    X-Linked-Size (what the Hub sends for LFS files); GET {cdn}/blobs/<sha256> -> the bytes.
    """

    def __init__(self, content):
        self.content = content
        self.sha256 = hashlib.sha256(content).hexdigest()
        self.requests = []
        self.hub = self._serve(self._hub_response)
        self.cdn = self._serve(self._cdn_response)
        self.endpoint = "http://127.0.0.1:%d" % self.hub.server_address[1]
        self.cdn_url = "http://127.0.0.1:%d" % self.cdn.server_address[1]

    def _serve(self, respond):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                fake.requests.append(("HEAD", self.path))
                respond(self, body=False)

            def do_GET(self):
                fake.requests.append(("GET", self.path))
                respond(self, body=True)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return server

    def _hub_response(self, handler, body):
        if handler.path != "/%s/resolve/main/%s" % (REPO_ID, FILENAME):
            handler.send_response(404)
            handler.send_header("X-Error-Code", "EntryNotFound")
            handler.send_header("X-Repo-Commit", COMMIT)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(302)
        handler.send_header("Location", "%s/blobs/%s" % (self.cdn_url, self.sha256))
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("ETag", '"%s"' % hashlib.sha1(self.content).hexdigest())
        handler.send_header("X-Linked-Etag", '"%s"' % self.sha256)
        handler.send_header("X-Linked-Size", str(len(self.content)))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _cdn_response(self, handler, body):
        if handler.path != "/blobs/%s" % self.sha256:
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(self.content)))
        handler.send_header("ETag", '"%s"' % self.sha256)
        handler.end_headers()
        if body:
            handler.wfile.write(self.content)

    def close(self):
        for server in (self.hub, self.cdn):
            server.shutdown()
            server.server_close()


@pytest.fixture
def fake_hub(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False, raising=False)
    content, state = checkpoint_bytes()
    server = FakeHub(content)
    server.state = state
    yield server
    server.close()


def closed_port_endpoint():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return "http://127.0.0.1:%d" % port  # nothing listens there any more: connections are refused


def test_download_then_offline_reuse(fake_hub, tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    calls = []
    path = resolve_checkpoint("turbo", cache_dir=cache, endpoint=fake_hub.endpoint, progress=lambda d, t: calls.append((d, t)))
    size = len(fake_hub.content)
    assert path.read_bytes() == fake_hub.content
    assert cache in path.parents and path.name == FILENAME and COMMIT in path.parts  # standard HF cache layout
    assert ("GET", "/blobs/%s" % fake_hub.sha256) in fake_hub.requests
    assert calls[-1] == (size, size) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    weights = read_state_dict(path)
    assert sorted(weights) == sorted(fake_hub.state)  # "module." stripped, tensors intact
    assert all(torch.equal(weights[k], v) for k, v in fake_hub.state.items())

    seen = len(fake_hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_checkpoint("turbo", cache_dir=cache, endpoint=fake_hub.endpoint) == path
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert resolve_checkpoint("TURBO", cache_dir=cache, endpoint=fake_hub.endpoint) == path  # cached: no network
    assert len(fake_hub.requests) == seen


def test_endpoint_from_environment(fake_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    path = resolve_checkpoint("turbo", cache_dir=tmp_path / "hf")
    assert path.read_bytes() == fake_hub.content


def test_prefilled_cache_needs_no_network(fake_hub, tmp_path):
    """A cache laid out by huggingface_hub on another machine (or copied by hand) is used as is."""
    repo_dir = tmp_path / "hf" / ("models--" + REPO_ID.replace("/", "--"))
    blob = repo_dir / "blobs" / fake_hub.sha256
    blob.parent.mkdir(parents=True)
    blob.write_bytes(fake_hub.content)
    snapshot = repo_dir / "snapshots" / COMMIT / FILENAME
    snapshot.parent.mkdir(parents=True)
    shutil.copyfile(blob, snapshot)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    path = resolve_checkpoint("turbo", cache_dir=tmp_path / "hf", endpoint=closed_port_endpoint())
    assert path == snapshot
    assert fake_hub.requests == []


def test_offline_and_not_cached(fake_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE") as info:
        resolve_checkpoint("turbo", cache_dir=tmp_path / "hf", endpoint=fake_hub.endpoint)
    assert "resolve/main/sam_med3d_turbo.pth" in str(info.value) and "\n" not in str(info.value)
    assert fake_hub.requests == []


def test_unreachable_and_not_cached(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False, raising=False)
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda seconds: None, raising=False)  # no backoff
    endpoint = closed_port_endpoint()
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint("turbo", cache_dir=tmp_path / "hf", endpoint=endpoint)
    message = str(info.value)
    assert message.startswith("the 'turbo' weights are not cached and %s cannot be reached" % endpoint)
    assert "%s/%s/resolve/main/%s" % (endpoint, REPO_ID, FILENAME) in message and "pass its path" in message
    assert "\n" not in message


def test_offline_turbo_with_an_empty_cache_fails_fast_in_one_line(tmp_path, ct_3mm_path):
    """The whole command, as a user runs it: no retries with back-off, one line saying how to get the file."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=closed_port_endpoint())
    env.pop("HF_HUB_OFFLINE", None)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "SAMMed3DSlicer") + os.pathsep + env.get(
        "PYTHONPATH", "")
    output = tmp_path / "mask.nii.gz"
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "sammed3d", "segment", str(ct_3mm_path), "-o", str(output),
                             "--point", "65", "185.3", "151.3", "--checkpoint", "turbo"],
                            capture_output=True, text=True, env=env, timeout=60)
    seconds = time.monotonic() - start
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot be reached" in lines[0] and "resolve/main/sam_med3d_turbo.pth" in lines[0]
    assert "Retry" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert seconds < 15, seconds
    assert not output.exists()


def test_missing_remote_file(fake_hub, tmp_path, monkeypatch):
    monkeypatch.setitem(hub.HUB_CHECKPOINTS, "turbo", (REPO_ID, "renamed.pth"))
    with pytest.raises(CheckpointError, match="could not download .* HTTP 404"):
        resolve_checkpoint("turbo", cache_dir=tmp_path / "hf", endpoint=fake_hub.endpoint)


def test_demo_bundled_or_clearly_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "DATA_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="demo model is not bundled in this build"):
        resolve_checkpoint("demo")
    (tmp_path / "sam_med3d_demo.safetensors").write_bytes(b"x")
    assert resolve_checkpoint("demo") == tmp_path / "sam_med3d_demo.safetensors"


def test_paths_and_unknown_names(tmp_path):
    weights = tmp_path / "my.pth"
    weights.write_bytes(b"x")
    assert resolve_checkpoint(weights) == weights
    assert resolve_checkpoint(str(weights)) == weights
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a file"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="unknown checkpoint 'turbo2': use one of demo, medsam, turbo"):
        resolve_checkpoint("turbo2")
    assert set(KNOWN_CHECKPOINTS) == {"turbo", "demo", "medsam"}
