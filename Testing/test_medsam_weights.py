"""`--checkpoint medsam`: the Zenodo download against a local HTTP server on 127.0.0.1 (no real network)."""
import hashlib
import http.server
import threading

import pytest

from sammed3d.errors import CheckpointError
from sammed3d.weights import resolve_checkpoint, zenodo

CONTENT = bytes(range(256)) * 4099  # ~1 MiB and a bit: several chunks


class FileServer:
    """Serves CONTENT (or `body`) at /records/<record>/files/<name>; counts requests."""

    def __init__(self, body=CONTENT, status=200):
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests.append(self.path)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def entry(monkeypatch, tmp_path):
    """The medsam entry with the size and MD5 of the test content, a fresh cache root, online."""
    fake = zenodo.ZenodoFile("10689643", "medsam_vit_b.pth", len(CONTENT), hashlib.md5(CONTENT).hexdigest())
    monkeypatch.setitem(zenodo.ZENODO_CHECKPOINTS, "medsam", fake)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    return fake


def test_official_entry_is_the_zenodo_record():
    official = zenodo.ZENODO_CHECKPOINTS["medsam"]
    assert zenodo.file_url(official).startswith("https://zenodo.org/records/10689643/files/medsam_vit_b.pth")
    assert official.size == 375049145 and len(official.md5) == 32


def test_download_verifies_caches_and_then_works_offline(entry, monkeypatch, tmp_path):
    server = FileServer()
    monkeypatch.setenv("SAMMED3D_ZENODO_ENDPOINT", server.url)
    seen = []
    try:
        path = resolve_checkpoint("medsam", progress=lambda done, total: seen.append((done, total)))
    finally:
        server.close()
    assert path == tmp_path / "hub" / "zenodo--10689643" / "medsam_vit_b.pth"
    assert path.read_bytes() == CONTENT
    assert server.requests == ["/records/10689643/files/medsam_vit_b.pth?download=1"]
    assert seen[0] == (0, len(CONTENT)) and seen[-1] == (len(CONTENT), len(CONTENT))
    sidecar = path.with_name("medsam_vit_b.pth.sha256").read_text().split()[0]
    assert sidecar == hashlib.sha256(CONTENT).hexdigest()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the server is gone and we are offline: the cache answers
    assert resolve_checkpoint("medsam") == path


def test_offline_without_cache_fails_fast_in_one_line(entry, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE") as info:
        resolve_checkpoint("medsam")
    assert "\n" not in str(info.value)


def test_unreachable_server_is_one_line_and_leaves_nothing(entry, monkeypatch, tmp_path):
    server = FileServer()
    url = server.url
    server.close()  # nothing listens there any more
    monkeypatch.setenv("SAMMED3D_ZENODO_ENDPOINT", url)
    with pytest.raises(CheckpointError, match="could not download") as info:
        resolve_checkpoint("medsam")
    assert "\n" not in str(info.value)
    assert not list((tmp_path / "hub" / "zenodo--10689643").glob("*"))


@pytest.mark.parametrize("body, status, message", [
    (CONTENT[:-10], 200, "expected"),
    (CONTENT[:-1] + b"x", 200, "MD5"),
    (b"not found", 404, "HTTP 404"),
])
def test_bad_downloads_are_discarded(entry, monkeypatch, tmp_path, body, status, message):
    server = FileServer(body, status)
    monkeypatch.setenv("SAMMED3D_ZENODO_ENDPOINT", server.url)
    try:
        with pytest.raises(CheckpointError, match=message):
            resolve_checkpoint("medsam")
    finally:
        server.close()
    assert not list((tmp_path / "hub" / "zenodo--10689643").glob("*"))


def test_a_cached_file_changed_after_verification_is_refused(entry, monkeypatch):
    server = FileServer()
    monkeypatch.setenv("SAMMED3D_ZENODO_ENDPOINT", server.url)
    try:
        path = resolve_checkpoint("medsam")
    finally:
        server.close()
    path.write_bytes(CONTENT[:-1] + b"y")  # same size, other bytes
    with pytest.raises(CheckpointError, match="changed since"):
        resolve_checkpoint("medsam")
