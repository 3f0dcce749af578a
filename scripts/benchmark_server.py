#!/usr/bin/env python
"""Remote vs local speed: `sammed3d serve` on localhost against an InteractiveSession in this process.

Both use the same full-size SAM-Med3D (vit_b, random weights saved to a temporary safetensors file; --checkpoint
takes real weights) on the shared 512x512x20 DICOM CT. Prints the upload time of the CT (content hash, compression,
transfer, server-side decoding), the first click (encoder + upload) and the refinement round trip next to the local
refinement, with the target (remote <= 1.5 x local + 0.15 s). No thresholds are asserted.

    python scripts/benchmark_server.py                  # CPU
    python scripts/benchmark_server.py --device cuda    # on a GPU box: the server computes on the GPU

Needs the test extra (`pip install -e ".[test]"`).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SAMMed3DSlicer"))
sys.path.insert(0, str(REPO / "Testing"))
DICOM = Path(os.environ.get("SAMMED3D_SHARED_DATA", REPO.parent / "shared" / "data")) / "ct_abdomen_dicom" / "dicom"
TOKEN = "benchmark-token"
#: [k, j, i] voxels of the CT: the first click, then refinements (negative, positive, positive)
CLICKS = (((10, 250, 260), True), ((10, 270, 300), False), ((9, 240, 250), True), ((11, 262, 270), True))


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ras(image, kji):
    lps = image.TransformIndexToPhysicalPoint([int(v) for v in kji[::-1]])
    return (-lps[0], -lps[1], lps[2])


def _random_vit_b(folder):
    from oracle import randomize_
    from sammed3d.model import SamMed3DConfig, build_sam_med3d
    from sammed3d.weights import write_safetensors

    model = randomize_(build_sam_med3d(SamMed3DConfig.named("vit_b")), 0)
    return str(write_safetensors(model.state_dict(), Path(folder) / "vit_b_random.safetensors"))


def _start_server(checkpoint, device, port):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "SAMMed3DSlicer"), os.environ.get("PYTHONPATH", "")]),
               SAMMED3D_TOKEN=TOKEN)
    process = subprocess.Popen([sys.executable, "-m", "sammed3d", "serve", "--port", str(port), "--checkpoint",
                                checkpoint, "--device", device, "--log-level", "warning"], env=env)
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("sammed3d serve exited with status %d" % process.returncode)
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.3)
    process.terminate()
    raise SystemExit("sammed3d serve did not start")


def _dice(a, b):
    a, b = a > 0, b > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * (a & b).sum() / total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="weights (default: random vit_b written to a temporary folder)")
    parser.add_argument("--device", default="cpu", help="the server's device (the local session uses it too)")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between the remote and the local clicks")
    args = parser.parse_args()

    import SimpleITK as sitk
    import torch

    import sammed3d
    from sammed3d.image_io import read_image
    from sammed3d.remote import RemoteSession, connect
    from sammed3d.remote.wire import encode_volume, volume_hash
    from sammed3d.session import InteractiveSession

    image = read_image(str(DICOM))
    print("image: %s %s, torch %s, %d threads, device %s" % (
        "x".join(map(str, image.GetSize())), image.GetPixelIDTypeAsString(), torch.__version__,
        torch.get_num_threads(), args.device))
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint or _random_vit_b(folder)
        process, url = _start_server(checkpoint, args.device, _free_port())
        try:
            connection = connect(url, TOKEN)
            print("server: %s on %s" % (connection.info["model"].split("/")[-1], connection.info["device"]))
            remote = RemoteSession(connection, image)
            local = InteractiveSession(sammed3d.load_model(checkpoint, device=args.device), image)
            # Local clicks run on a worker thread, as in Slicer (and as on the server). Remote and local clicks
            # alternate, with a pause so that neither side's threads are still busy when the other one starts:
            # both see the same load on a shared machine.
            worker = ThreadPoolExecutor(max_workers=1)
            remote_masks, remote_times, local_masks, local_times = [], [], [], []
            for kji, positive in CLICKS:
                start = time.perf_counter()
                mask = remote.add_point(_ras(image, kji), positive)
                remote_times.append((time.perf_counter() - start, dict(remote.last_timings)))
                remote_masks.append(sitk.GetArrayFromImage(mask))
                time.sleep(args.pause)
                start = time.perf_counter()
                mask = worker.submit(local.add_point, _ras(image, kji), positive).result()
                local_times.append(time.perf_counter() - start)
                local_masks.append(sitk.GetArrayFromImage(mask))
                time.sleep(args.pause)
        finally:
            process.terminate()
            process.wait(timeout=60)

    start = time.perf_counter()
    volume_hash(image)
    hash_seconds = time.perf_counter() - start
    start = time.perf_counter()
    _, body = encode_volume(image)
    encode_seconds = time.perf_counter() - start

    first_seconds, first = remote_times[0]
    print("upload of the 512x512x20 CT: %.3f s (of which content hash %.3f s, compression %.3f s; %.1f MB -> %.1f MB)"
          % (first["upload"], hash_seconds, encode_seconds, image.GetNumberOfPixels() * 2 / 1e6, len(body) / 1e6))
    print("first click: remote %.2f s (upload %.2f s + server %.2f s [encoder %.2f s] + transfer/client %.2f s), "
          "local %.2f s" % (first_seconds, first["upload"], first["server"], first["encoder"],
                            first_seconds - first["upload"] - first["server"], local_times[0]))
    remote_refine = statistics.median(t for t, _ in remote_times[1:])
    local_refine = statistics.median(local_times[1:])
    server_refine = statistics.median(t["server"] for _, t in remote_times[1:])
    target = 1.5 * local_refine + 0.15
    print("refinement (median of %d): remote round trip %.3f s (server %.3f s), local %.3f s -> %.2fx local; "
          "target <= 1.5 x local + 0.15 s = %.3f s: %s" % (
              len(local_times) - 1, remote_refine, server_refine, local_refine, remote_refine / local_refine, target,
              "met" if remote_refine <= target else "NOT met"))
    print("agreement remote vs local, Dice per click: %s" % ", ".join(
        "%.4f" % _dice(a, b) for a, b in zip(remote_masks, local_masks)))


if __name__ == "__main__":
    main()
