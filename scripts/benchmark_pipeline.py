"""End-to-end speed on the shared 512x512x20 DICOM CT: first click and refinement, sammed3d vs the official pipeline.

Official pipeline (re-created with torchio, as in the tests): resample the WHOLE volume to 1.5 mm, reorient, crop
128^3 around the click, z-normalise, official encoder + decoder, nearest-neighbour mapping of the whole 1.5 mm mask
back to the original grid. sammed3d: the same ROI sampled straight from the original image, the fast encoder, the
mapping of the ROI region only. Both use the same randomized full-size weights. The DICOM series is read once.
"""
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

REPO = Path(__file__).resolve().parents[1]
DICOM_CASE = REPO.parent / "shared" / "data" / "ct_abdomen_dicom"


def _dice(a, b):
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * (a & b).sum() / total


def _official_click(official, image, point, previous_logits=None, clicks=None):
    """One official call: torchio ROI around `point`, encoder, decoder with all clicks, nearest mapping."""
    from oracle import official_decode
    from torchio_oracle import official_roi

    array, affine, _ = official_roi(image, point, radius_mm=None)
    roi_input = torch.from_numpy(array)[None, None]
    embedding = official.image_encoder(roi_input)
    coords = torch.tensor(np.array([np.linalg.solve(affine, np.append(p, 1.0))[:3] for p, _ in clicks]),
                          dtype=torch.float32)[None]
    labels = torch.tensor([[int(positive) for _, positive in clicks]])
    mask = previous_logits if previous_logits is not None else torch.zeros(1, 1, 32, 32, 32)
    logits, _ = official_decode(official, embedding, coords, labels, mask)
    return embedding, logits


def bench_pipeline(args):
    from oracle import official_decode, paired_models
    from sammed3d.evaluation.datasets import load_label_in_image_grid
    from sammed3d.image_io import read_image
    from sammed3d.model import SamMed3DConfig
    from sammed3d.session import InteractiveSession
    from session_helpers import organ_point
    from torchio_oracle import official_main_mapping as official_mapping  # the current official release

    if not DICOM_CASE.is_dir():
        raise SystemExit("needs ../shared/data/ct_abdomen_dicom next to the repository")
    start = time.perf_counter()
    image = read_image(DICOM_CASE / "dicom")
    read_seconds = time.perf_counter() - start
    labels = load_label_in_image_grid(str(DICOM_CASE / "labels.nii.gz"), image)
    point = organ_point(labels, 5, image)  # liver
    second = (point + np.array([8.0, -6.0, 0.0]), False)
    official, ours = paired_models(SamMed3DConfig.named(args.config), seed=0)
    print("image %s, spacing %s; read once in %.2f s; config %s; sammed3d mapping %s; torch %d threads" % (
        image.GetSize(), tuple(round(s, 3) for s in image.GetSpacing()), read_seconds, args.config, args.mapping,
        torch.get_num_threads()))

    firsts, refines = [], []
    for _ in range(args.repeats):
        session = InteractiveSession(ours, image, mapping=args.mapping, max_rois=1)
        start = time.perf_counter()
        session.add_point(point, True)
        firsts.append(time.perf_counter() - start)
        first_timings = dict(session.last_timings)
        start = time.perf_counter()
        mask = session.add_point(*second)
        refines.append(time.perf_counter() - start)
        refine_timings = dict(session.last_timings)

    with torch.inference_mode():
        start = time.perf_counter()
        embedding, logits = _official_click(official, image, point, clicks=[(point, True)])
        roi = session.rois[0]
        official_first_mask = official_mapping(roi, logits, image)
        official_first = time.perf_counter() - start
        start = time.perf_counter()
        # official refinement: re-crop and re-encode are not needed by the official protocol either; only decode
        coords = torch.tensor(np.array([roi.ras_to_index(p) for p in (point, second[0])]), dtype=torch.float32)[None]
        logits2, _ = official_decode(official, embedding, coords, torch.tensor([[1, 0]]), logits)
        official_refine_mask = official_mapping(roi, logits2, image)
        official_refine = time.perf_counter() - start

    first, refine = float(np.median(firsts)), float(np.median(refines))
    print("first click (ROI + encoder + decoder + mapping): official %.2f s, sammed3d %.2f s -> %.1fx" % (
        official_first, first, official_first / first))
    print("  sammed3d parts: " + ", ".join("%s %.3f s" % kv for kv in first_timings.items()))
    print("refinement click: official %.0f ms, sammed3d %.0f ms -> %.1fx" % (
        official_refine * 1e3, refine * 1e3, official_refine / refine))
    print("  sammed3d parts: " + ", ".join("%s %.1f ms" % (k, v * 1e3) for k, v in refine_timings.items()))
    ours_mask = sitk.GetArrayFromImage(mask).transpose(2, 1, 0)  # [k,j,i] -> (i,j,k) like the oracle
    print("agreement with the fully official pipeline (torchio ROI, official model, nearest mapping): "
          "Dice %.3f after 2 clicks (official first-click mask: %d voxels)" % (
              _dice(ours_mask, official_refine_mask), int(official_first_mask.sum())))
    start = time.perf_counter()
    from sammed3d.image_io import write_image_atomic
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        write_image_atomic(mask, Path(folder) / "mask.nii.gz")
    print("writing the mask (.nii.gz, whole grid): %.3f s" % (time.perf_counter() - start))
