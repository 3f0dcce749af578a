"""The client side of `sammed3d serve` and the `serve` command itself.

The Slicer logic runs on a server engine where PyTorch cannot be imported (a subprocess on real MRML); the wire
format round-trips volumes and masks and refuses malformed bytes; the engine choice is remembered without the scene;
`sammed3d serve` refuses a network address without a token, and a real `sammed3d serve` process serves
`sammed3d segment --server` with the result of a local `sammed3d segment`.
"""
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import sammed3d
from sammed3d.errors import SamMed3DError
from sammed3d.remote import RemoteError, check_server_url, connect
from sammed3d.remote.wire import WireError, apply_patch, decode_volume, encode_volume, make_patch, pack_mask, \
    unpack_mask, volume_hash
from SAMMed3DSlicerLib.engine_settings import (
    ENGINE_KEY,
    SERVER_TOKEN_KEY,
    SERVER_URL_KEY,
    EngineChoice,
    apply_engine_choice,
    read_engine_choice,
    write_engine_choice,
)
from server_helpers import TOKEN, ServerThread, free_port

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "SAMMed3DSlicer"


def _env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(MODULE_DIR), os.environ.get("PYTHONPATH", "")]))
    env.pop("SAMMED3D_TOKEN", None)
    return env


#: Makes `import torch` fail in a subprocess, as on a workstation without PyTorch.
NO_TORCH = textwrap.dedent("""
    import sys

    class NoTorch(object):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "torch":
                raise ImportError("PyTorch is not installed here")

    sys.meta_path.insert(0, NoTorch())
""")


def test_the_slicer_logic_runs_on_a_server_without_pytorch(ct_3mm_path, tmp_path):
    """A subprocess where `import torch` fails runs the Slicer logic on real MRML with a server engine; the segment
    equals what the local logic writes in this process."""
    from SAMMed3DSlicerLib import InteractiveSegmentationLogic
    from SAMMed3DSlicerLib.prompt_nodes import prompt_nodes
    from SAMMed3DSlicerLib.segment_io import read_segment_in_volume_grid
    from slicer_scene import build_scene

    image = sitk.ReadImage(str(ct_3mm_path))
    clicks = [("positive", (15, 50, 60)), ("negative", (15, 56, 66))]
    scene_code = NO_TORCH + textwrap.dedent("""
        import numpy as np
        import SimpleITK as sitk
        from SAMMed3DSlicerLib import InteractiveSegmentationLogic
        from SAMMed3DSlicerLib.prompt_nodes import prompt_nodes
        from SAMMed3DSlicerLib.segment_io import read_segment_in_volume_grid
        from slicer_scene import build_scene, place

        scene, volume, segmentation, other, target = build_scene(sitk.ReadImage(sys.argv[1]))
        positive, negative = prompt_nodes(segmentation, target)
        logic = InteractiveSegmentationLogic(server=sys.argv[2], token=sys.argv[3], max_rois=1)
        for which, kji in %r:
            place(positive if which == "positive" else negative, volume, kji)
            logic.segment(volume, segmentation, target, positive, negative)
        np.save(sys.argv[4], sitk.GetArrayFromImage(read_segment_in_volume_grid(segmentation, target, volume)))
        print("heavy:", sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "requests", "fastapi")))
    """ % (clicks,))
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(MODULE_DIR), str(REPO / "Testing"), env["PYTHONPATH"]])
    with ServerThread(sammed3d.load_model("demo", "cpu")) as server:
        result = subprocess.run([sys.executable, "-c", scene_code, str(ct_3mm_path), server.url, TOKEN,
                                 str(tmp_path / "remote.npy")], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "heavy: []"

    scene, volume, segmentation, other, target = build_scene(image)
    positive, negative = prompt_nodes(segmentation, target)
    logic = InteractiveSegmentationLogic(checkpoint="demo", device="cpu", max_rois=1)
    from slicer_scene import place

    for which, kji in clicks:
        place(positive if which == "positive" else negative, volume, kji)
        logic.segment(volume, segmentation, target, positive, negative)
    local = sitk.GetArrayFromImage(read_segment_in_volume_grid(segmentation, target, volume))
    remote = np.load(str(tmp_path / "remote.npy"))
    assert local.any() and np.array_equal(local, remote)


def test_volumes_round_trip_and_bad_bytes_are_refused():
    rng = np.random.default_rng(0)
    for dtype in ("uint8", "int16", "uint16", "int32", "float32", "float64"):
        voxels = (rng.normal(size=(5, 7, 9)) * 100).astype(dtype)
        image = sitk.GetImageFromArray(voxels)
        image.SetSpacing((0.7, 0.8, 2.5))
        image.SetOrigin((1.0, -2.0, 3.5))
        image.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
        digest, body = encode_volume(image)
        assert digest == volume_hash(image)
        back = decode_volume(body, digest)
        assert np.array_equal(sitk.GetArrayFromImage(back), voxels) and back.GetPixelID() == image.GetPixelID()
        for get in ("GetSpacing", "GetOrigin", "GetDirection"):
            assert getattr(back, get)() == getattr(image, get)()
    other = sitk.GetImageFromArray(voxels + 1)
    other.CopyInformation(image)
    assert volume_hash(other) != digest
    with pytest.raises(WireError, match="hash"):
        decode_volume(body, volume_hash(other))
    # a "zip bomb": a small header and a chunk that inflates far beyond what the header declares
    import json
    import zlib

    header = json.loads(body[12:12 + int.from_bytes(body[8:12], "little")])
    data = zlib.compress(b"\0" * (64 << 20))
    header.update(chunks=[len(data)], chunk_bytes=1 << 30)
    head = json.dumps(header).encode()
    with pytest.raises(WireError, match="more"):
        decode_volume(b"SM3DVOL1" + len(head).to_bytes(4, "little") + head + data)
    with pytest.raises(WireError, match="chunk"):
        decode_volume(body[:-1])
    # several chunks (a volume larger than one chunk) round-trip too
    big = sitk.GetImageFromArray(rng.integers(-1000, 2000, size=(9, 300, 301)).astype(np.int16))
    digest, body = encode_volume(big)
    assert len(json.loads(body[12:12 + int.from_bytes(body[8:12], "little")])["chunks"]) == 2
    assert np.array_equal(sitk.GetArrayFromImage(decode_volume(body, digest)), sitk.GetArrayFromImage(big))
    with pytest.raises(WireError, match="at most"):
        decode_volume(body, max_voxels=100)


def test_mask_patches():
    rng = np.random.default_rng(1)
    old = (rng.random((6, 20, 30)) > 0.7).astype(np.uint8)
    new = old.copy()
    new[2:4, 5:9, 10:12] ^= 1
    patch = make_patch(old, new)
    assert patch["box"] == [2, 5, 10, 4, 9, 12]
    target = old.copy()
    apply_patch(target, patch)
    assert np.array_equal(target, new)
    assert make_patch(new, new) == {"box": None, "mask": None}
    assert np.array_equal(unpack_mask(pack_mask(new), new.shape), new)
    for bad in ({"box": [0, 0, 0, 7, 1, 1], "mask": pack_mask(np.ones((7, 1, 1)))},
                {"box": [0, 0, 0, 1, 1, 1], "mask": "%%%"}, {"box": [0, 0, 0, 2, 2, 2], "mask": pack_mask(np.ones(100))}):
        untouched = old.copy()
        with pytest.raises(WireError):
            apply_patch(untouched, bad)
        assert np.array_equal(untouched, old)


class MemorySettings(object):
    """An in-memory settings store with QSettings' value/setValue interface."""

    def __init__(self):
        self.values = {}

    def value(self, key, default=None):
        return self.values.get(key, default)

    def setValue(self, key, value):  # noqa: N802 - QSettings' name
        self.values[key] = value


def test_engine_choice_is_remembered_in_settings_and_validated():
    settings = MemorySettings()
    assert read_engine_choice(settings) == EngineChoice()  # this computer by default
    choice = EngineChoice("server", " http://gpu-box:8000/ ", "s3cret")
    write_engine_choice(settings, choice)
    assert settings.values == {ENGINE_KEY: "server", SERVER_URL_KEY: "http://gpu-box:8000", SERVER_TOKEN_KEY: "s3cret"}
    assert read_engine_choice(settings).logic_options() == {"server": "http://gpu-box:8000", "token": "s3cret"}
    for bad in ("", "gpu-box:8000", "ftp://gpu-box", "http://", "http://host:99999", "http://u:p@host"):
        with pytest.raises(SamMed3DError):
            write_engine_choice(settings, EngineChoice("server", bad, "t"))
        assert settings.values[SERVER_URL_KEY] == "http://gpu-box:8000"  # nothing written
    assert check_server_url("https://proxy.example.org/sam/") == "https://proxy.example.org/sam"
    assert "s3cret" not in repr(choice)
    assert not choice.needs_local_packages and EngineChoice().needs_local_packages  # no PyTorch for a server

    from SAMMed3DSlicerLib import InteractiveSegmentationLogic

    logic = InteractiveSegmentationLogic(checkpoint="demo", device="cpu")
    apply_engine_choice(logic, read_engine_choice(settings))
    assert (logic.server, logic.token) == ("http://gpu-box:8000", "s3cret")
    apply_engine_choice(logic, EngineChoice())
    assert (logic.server, logic.token) == (None, None)


def test_https_with_a_private_certificate_authority(tmp_path, ct_3mm_path):
    """uvicorn's TLS options (what `sammed3d serve --ssl-keyfile/--ssl-certfile` passes): the client verifies the
    server's certificate against the CA it is given and refuses one it cannot verify."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    model = sammed3d.load_model("demo", "cpu")
    image = sitk.ReadImage(str(ct_3mm_path))
    lps = image.TransformContinuousIndexToPhysicalPoint([n / 2 for n in image.GetSize()])
    with ServerThread(model, ssl=(str(key), str(cert))) as server:
        assert server.url.startswith("https://")
        with pytest.raises(RemoteError, match="TLS|certificate|SSL"):
            connect(server.url, TOKEN, timeout=10)
        from sammed3d.remote import RemoteSession

        session = RemoteSession(connect(server.url, TOKEN, cafile=str(cert)), image)
        assert sitk.GetArrayViewFromImage(session.add_point((-lps[0], -lps[1], lps[2]))).any()


def test_unreachable_server_gives_one_clear_line():
    url = "http://127.0.0.1:%d" % free_port()
    with pytest.raises(RemoteError, match="cannot reach the SAM-Med3D server at %s" % url) as caught:
        connect(url, TOKEN, timeout=5)
    assert "\n" not in str(caught.value)


def test_serve_refuses_a_network_address_without_a_token():
    result = subprocess.run([sys.executable, "-m", "sammed3d", "serve", "--host", "0.0.0.0", "--checkpoint", "demo"],
                            capture_output=True, text=True, timeout=120, env=_env())
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "without a token" in result.stderr
    assert "Traceback" not in result.stderr


def _wait_healthy(url, process, seconds=90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("sammed3d serve exited: %s" % process.stdout.read())
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise AssertionError("sammed3d serve did not start in %d s" % seconds)


def test_sammed3d_serve_process_serves_segment_server(ct_3mm_path, tmp_path):
    from sammed3d.cli import main

    port = free_port()
    url = "http://127.0.0.1:%d" % port
    process = subprocess.Popen([sys.executable, "-m", "sammed3d", "serve", "--host", "127.0.0.1", "--port", str(port),
                                "--checkpoint", "demo", "--device", "cpu", "--token", TOKEN, "--log-level", "warning"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    try:
        _wait_healthy(url, process)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/info", timeout=10)
        assert refused.value.code == 401
        image = sitk.ReadImage(str(ct_3mm_path))
        lps = image.TransformContinuousIndexToPhysicalPoint([n / 2 for n in image.GetSize()])
        point = ["%.4f" % v for v in (-lps[0], -lps[1], lps[2])]
        negative = ["%.4f" % v for v in (-lps[0] + 6, -lps[1], lps[2] + 3)]
        common = [str(ct_3mm_path), "--point"] + point + ["--negative"] + negative + ["--checkpoint", "demo"]
        assert main(["segment"] + common + ["-o", str(tmp_path / "local.nii.gz"), "--device", "cpu"]) == 0
        assert main(["segment"] + common + ["-o", str(tmp_path / "remote.nii.gz"), "--server", url,
                                            "--token", TOKEN]) == 0
        local = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "local.nii.gz")))
        remote = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "remote.nii.gz")))
        assert local.any() and np.array_equal(local, remote)
        # a wrong token: one line, exit 2, no output written
        assert main(["segment"] + common + ["-o", str(tmp_path / "wrong.nii.gz"), "--server", url,
                                            "--token", "wrong"]) == 2
        assert not (tmp_path / "wrong.nii.gz").exists()
    finally:
        process.terminate()
        process.wait(timeout=30)
