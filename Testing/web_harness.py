"""Helpers for the browser tests of `sammed3d web`: Debian's chromium through playwright, free ports, waiting."""
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "docs" / "screenshots"
VIEWPORT = {"width": 1400, "height": 900}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chromium_options():
    """Launch options for Debian's chromium (playwright cannot download browsers here; root needs --no-sandbox)."""
    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium (.ci/run does)"
    return {"executable_path": CHROMIUM, "args": ["--no-sandbox", "--disable-gpu"]}


def web_env():
    env = dict(os.environ, PYTHONPATH=str(REPO / "SAMMed3DSlicer"), OMP_NUM_THREADS="1")
    env.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    return env


def start_cli_server(args, port, log_path):
    """`python -m sammed3d web ARGS --port PORT` in a subprocess; returns it once it answers (``/status``: asking for
    the page would take a scene)."""
    log = open(str(log_path), "w")
    process = subprocess.Popen([sys.executable, "-m", "sammed3d", "web"] + list(args) + ["--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=web_env(), cwd=str(REPO))
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError("sammed3d web exited: " + Path(str(log_path)).read_text())
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/status" % port, timeout=2)
            return process
        except urllib.error.HTTPError:
            return process  # it answers (e.g. 401 without a token)
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    process.kill()
    raise AssertionError("sammed3d web did not start: " + Path(str(log_path)).read_text())


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def changed_fraction(before_png: bytes, after_png: bytes, box=None) -> float:
    """Fraction of pixels (in ``box`` = (x0, y0, x1, y1) if given) whose colour changed by more than 30/255."""
    from PIL import Image
    import io

    a = np.asarray(Image.open(io.BytesIO(before_png)).convert("RGB")).astype(int)
    b = np.asarray(Image.open(io.BytesIO(after_png)).convert("RGB")).astype(int)
    if box is not None:
        x0, y0, x1, y1 = box
        a, b = a[y0:y1, x0:x1], b[y0:y1, x0:x1]
    return float((np.abs(a - b).max(axis=2) > 30).mean())


def not_blank(png: bytes) -> bool:
    """A screenshot shows something: many distinct grey levels, not one flat colour."""
    from PIL import Image
    import io

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    return pixels.std() > 10 and len(np.unique(pixels)) > 50
