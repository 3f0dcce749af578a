#!/usr/bin/env python
"""Speed of sammed3d vs the official SAM-Med3D (medim==0.1.2), measured in one process with the same weights.

    python scripts/benchmark.py model      # encoder speed-up, encoder seconds, refinement ms, peak memory
    python scripts/benchmark.py precision  # error of bf16 (CPU, CUDA) / fp16 (CUDA) autocast vs fp32
    python scripts/benchmark.py pipeline   # end-to-end first click and refinement on the shared DICOM CT
                                           # (--mapping official: the official nearest-neighbour mapping)
    python scripts/benchmark.py slicer     # the Slicer logic on real MRML: first and refinement clicks
    python scripts/benchmark.py medsam     # MedSAM (SAM ViT-B 2D) encoder speed-up vs segment-anything, precision

Needs the test extra (`pip install -e ".[test]"`). Prints ratios; no thresholds are asserted here.
"""
import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SAMMed3DSlicer"))
sys.path.insert(0, str(REPO / "Testing"))
sys.path.insert(0, str(REPO / "scripts"))


class PeakMemory:
    """Peak resident memory (MiB) above the level at entry, sampled every 5 ms from /proc (Linux)."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mib(self):
        return (self.peak - self.base) / 2 ** 20

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss():
        try:
            with open("/proc/self/statm") as statm:
                import os

                return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0


def timed(fn, repeats):
    """Median wall seconds of `repeats` calls, and the peak memory of the first (cold) call, which also warms up.

    Measure the lighter implementation first: the allocator keeps memory the process has used, so a later cold
    call only shows what it needs beyond what earlier calls left resident.
    """
    with PeakMemory() as memory:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), memory.mib


def _decode(model, embedding, coords, labels, mask):
    from oracle import official_decode

    return official_decode(model, embedding, coords, labels, mask)[0]


def bench_model(args):
    from oracle import paired_models, relative_error
    from sammed3d.model import SamMed3DConfig

    config = SamMed3DConfig.named(args.config)
    official, ours = paired_models(config, seed=0)
    x = torch.randn(1, 1, 128, 128, 128, generator=torch.Generator().manual_seed(1))
    coords = torch.tensor([[[64.0, 60.0, 70.0], [40.0, 80.0, 60.0], [70.0, 50.0, 66.0]]])
    labels = torch.tensor([[1, 0, 1]])
    print("torch %s, %d threads, config %s" % (torch.__version__, torch.get_num_threads(), args.config))
    with torch.inference_mode():
        enc_ours, mem_ours = timed(lambda: ours.image_encoder(x), args.repeats)
        enc_official, mem_official = timed(lambda: official.image_encoder(x), args.repeats)
        emb_ours, emb_official = ours.image_encoder(x), official.image_encoder(x)
        mask = _decode(ours, emb_ours, coords[:, :1], labels[:, :1], None)
        ref_ours, mem_dec = timed(lambda: _decode(ours, emb_ours, coords, labels, mask), 20)
        ref_official, _ = timed(lambda: _decode(official, emb_ours, coords, labels, mask), 20)
        print("parity: encoder rel. error %.2e, decoder rel. error %.2e" % (
            relative_error(emb_ours, emb_official),
            relative_error(_decode(ours, emb_ours, coords, labels, mask),
                           _decode(official, emb_ours, coords, labels, mask))))
    print("encoder: official %.2f s, sammed3d %.2f s -> speed-up %.1fx" % (enc_official, enc_ours, enc_official / enc_ours))
    print("encoder peak memory above baseline: official %.0f MiB, sammed3d %.0f MiB" % (mem_official, mem_ours))
    print("refinement (prompt encoder + decoder, 3 points + mask prompt): official %.1f ms, sammed3d %.1f ms (%.1fx)"
          % (ref_official * 1e3, ref_ours * 1e3, ref_official / ref_ours))
    print("refinement peak memory above baseline: %.0f MiB" % mem_dec)


def bench_precision(args):
    """Error of reduced-precision autocast vs fp32 (bf16 on the CPU; fp16 too when CUDA is present)."""
    from oracle import paired_models, relative_error
    from sammed3d.devices import autocast
    from sammed3d.model import SamMed3DConfig

    _, ours = paired_models(SamMed3DConfig.named(args.config), seed=0)
    x = torch.randn(1, 1, 128, 128, 128, generator=torch.Generator().manual_seed(1))
    coords = torch.tensor([[[64.0, 60.0, 70.0], [40.0, 80.0, 60.0]]])
    labels = torch.tensor([[1, 0]])
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        model = ours.to(device)
        with torch.inference_mode():
            emb = model.encode(x.to(device))
            ref = model.decode(emb, coords.to(device), labels.to(device))
            for precision in ("bf16", "fp16"):
                if device.type == "cpu" and precision == "fp16":
                    continue
                with autocast(device, precision):
                    emb_low = model.encode(x.to(device))
                    low = model.decode(emb_low, coords.to(device), labels.to(device))
                agree = ((low > 0) == (ref > 0)).float().mean().item()
                print("%s %s: embedding rel. error %.2e, logits rel. error %.2e, low-res mask agreement %.4f" % (
                    device.type, precision, relative_error(emb_low.float(), emb), relative_error(low.float(), ref),
                    agree))


def bench_slicer(args):
    """Refinement clicks through the Slicer logic on real MRML (slicer-core): the DICOM CT under a rotated parent
    transform, a segmentation under another one holding another segment, clicks in world coordinates."""
    from sammed3d.model import build_sam_med3d
    from sammed3d.model.config import SamMed3DConfig
    from sammed3d.weights import write_safetensors
    from SAMMed3DSlicerLib import InteractiveSegmentationLogic
    from SAMMed3DSlicerLib.prompt_nodes import prompt_nodes
    from slicer_scene import build_scene, place, read_dicom_series
    import tempfile

    folder = REPO.parent / "shared" / "data" / "ct_abdomen_dicom" / "dicom"
    image = read_dicom_series(folder)
    scene, volume, segmentation, other, target = build_scene(image)
    positive, negative = prompt_nodes(segmentation, target)
    with tempfile.TemporaryDirectory() as tmp:
        from oracle import randomize_

        checkpoint = write_safetensors(randomize_(build_sam_med3d(SamMed3DConfig.named(args.config)), 0).state_dict(),
                                       Path(tmp) / "weights.safetensors")
        logic = InteractiveSegmentationLogic(checkpoint=str(checkpoint), device="cpu")
        place(positive, volume, (10, 250, 260))
        start = time.perf_counter()
        first = logic.segment(volume, segmentation, target, positive, negative)
        print("first click: %.2f s (%s)" % (time.perf_counter() - start, _parts(first.timings)))
        for node, kji in ((negative, (10, 270, 300)), (positive, (9, 240, 250)), (positive, (11, 262, 270))):
            place(node, volume, kji)
            start = time.perf_counter()
            update = logic.segment(volume, segmentation, target, positive, negative)
            print("refinement click: %.3f s (%s)" % (time.perf_counter() - start, _parts(update.timings)))


def _parts(timings):
    return ", ".join("%s %.3f s" % kv for kv in sorted(timings.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=["model", "precision", "pipeline", "slicer", "medsam"])
    parser.add_argument("--config", default="vit_b", choices=["vit_b", "tiny"])
    parser.add_argument("--cpu-precision", action="store_true", help="medsam: also measure bf16 autocast on the CPU")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mapping", default="linear", choices=["linear", "official"],
                        help="pipeline: sammed3d's mapping back to the original grid (default: linear)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.section == "model":
        bench_model(args)
    elif args.section == "precision":
        bench_precision(args)
    elif args.section == "medsam":
        from benchmark_medsam import bench_medsam

        bench_medsam(args, timed)
    elif args.section == "slicer":
        sys.path.insert(0, str(REPO / "SAMMed3DSlicer"))
        bench_slicer(args)
    else:
        from benchmark_pipeline import bench_pipeline

        bench_pipeline(args)


if __name__ == "__main__":
    main()
