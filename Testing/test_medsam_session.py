"""MedSAM's official slice pipeline and 3D protocol: preprocessing, the key slice against the official pipeline
(segment-anything + scikit-image, Testing/medsam_oracle.py), propagation, caching, and `sammed3d segment --model
medsam` on the shared CT.

Propagation is tested with a stand-in model whose mask follows intensity (bright pixels inside the box): random
weights give noise masks that never vanish, which would test nothing. The key slice is tested with real randomized
weights through the CLI.
"""
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from medsam_oracle import official_ct_volume_uint8, official_slice_segmentation, paired_models
from sammed3d.cli import main
from sammed3d.errors import PromptError, SamMed3DError
from sammed3d.geometry import index_to_ras
from sammed3d.medsam.model import Sam2DConfig
from sammed3d.medsam.preprocessing import mask_box, normalize_volume, resize_slice
from sammed3d.medsam.session import MedSamSession
from sammed3d.prompts import Box
from sammed3d.roi_markup import read_roi_box

TINY = Sam2DConfig.named("tiny")


class IntensityStandIn:
    """A stand-in for the model with a structured output: the mask is the bright part (> 0.5) of the box."""

    device = torch.device("cpu")

    class image_encoder:  # noqa: N801 - mimics the model's attribute
        img_size = 256

    def __init__(self):
        self.encoded = 0

    def encode(self, images):
        self.encoded += images.shape[0]
        return F.avg_pool2d(images[:, :1], 4)  # B x 1 x 64 x 64: the low-res grid of a 256^2 input

    def decode_boxes(self, embeddings, boxes):
        grid = torch.arange(64, dtype=torch.float32) * 4 + 2  # low-res pixel centres in input pixels
        x0, y0, x1, y1 = boxes.reshape(-1, 4).unbind(1)
        inside = ((grid[None, None, :] >= x0[:, None, None]) & (grid[None, None, :] <= x1[:, None, None])
                  & (grid[None, :, None] >= y0[:, None, None]) & (grid[None, :, None] <= y1[:, None, None]))
        return torch.where(inside[:, None] & (embeddings > 0.5), 10.0, -10.0)


def _sphere_image(radius=8):
    k, j, i = np.mgrid[:30, :40, :40]
    array = np.where((k - 15) ** 2 + (j - 20) ** 2 + (i - 20) ** 2 <= radius ** 2, 200, -1000).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 2.0))
    image.SetOrigin((-20.0, 10.0, 5.0))
    return image, array > 0


def _box_of_indices(image, low_ijk, high_ijk):
    return Box(tuple(index_to_ras(image, np.asarray(low_ijk, float))),
               tuple(index_to_ras(image, np.asarray(high_ijk, float))))


# -- preprocessing -------------------------------------------------------------------------------------------------
def test_ct_window_and_uint8_match_the_official_code(ct_3mm_path):
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_3mm_path)))
    assert np.array_equal(normalize_volume(array, "CT"), official_ct_volume_uint8(array))
    assert np.array_equal(normalize_volume(array, "CT", (50, 350)), official_ct_volume_uint8(array, 50, 350))


def test_mr_percentiles_keep_zeros():
    rng = np.random.default_rng(0)
    array = rng.gamma(2.0, 100.0, size=(4, 20, 20))
    array[:, :3] = 0
    out = normalize_volume(array, "MR")
    low, high = np.percentile(array[array > 0], 0.5), np.percentile(array[array > 0], 99.5)
    expected = (np.clip(array, low, high) - low) / (high - low) * 255.0
    expected[array == 0] = 0
    assert np.array_equal(out, np.uint8(expected)) and np.all(out[:, :3] == 0)


def test_one_channel_resize_equals_the_official_three_channel_resize(ct_3mm_path):
    from skimage import transform

    volume = normalize_volume(sitk.GetArrayFromImage(sitk.ReadImage(str(ct_3mm_path))))
    slice_uint8 = volume[volume.shape[0] // 2]
    official = transform.resize(np.repeat(slice_uint8[:, :, None], 3, axis=-1), (512, 512), order=3,
                                preserve_range=True, anti_aliasing=True).astype(np.uint8)
    ours = resize_slice(slice_uint8, 512)
    for channel in range(3):
        assert np.array_equal(official[..., channel], ours)


def test_mask_box_adds_the_margin_and_clips():
    mask = np.zeros((20, 30), np.uint8)
    mask[3:8, 10:12] = 1
    assert mask_box(mask, 5).tolist() == [5, 0, 16, 12]
    assert mask_box(np.zeros((4, 4)), 5) is None


# -- propagation (stand-in model) ----------------------------------------------------------------------------------
def test_propagation_follows_the_object_and_stops_where_it_vanishes():
    image, sphere = _sphere_image()
    model = IntensityStandIn()
    seen = []
    session = MedSamSession(model, image, progress=lambda done, total: seen.append((done, total)))
    mask = sitk.GetArrayFromImage(session.set_box(_box_of_indices(image, (8, 8, 2), (32, 32, 28))))
    assert session.key_slice == 15
    present = sorted(set(np.nonzero(mask)[0]))
    assert present == sorted(set(np.nonzero(sphere)[0]))  # every sphere slice, from one box on the key slice
    assert session.slices == list(range(present[0], present[-1] + 2)) or session.slices[0] == present[0] - 1
    assert min(session.slices) >= 2 and max(session.slices) <= 28
    assert seen[-1][1] == 27 and [d for d, _ in seen] == list(range(1, len(seen) + 1))
    dice = 2 * (mask.astype(bool) & sphere).sum() / (mask.sum() + sphere.sum())
    assert dice > 0.9


def test_nothing_outside_the_box_slice_range_and_cached_embeddings():
    image, _ = _sphere_image()
    model = IntensityStandIn()
    session = MedSamSession(model, image)
    mask = sitk.GetArrayFromImage(session.set_box(_box_of_indices(image, (8, 8, 12), (32, 32, 17))))
    assert sorted(set(np.nonzero(mask)[0])) == [12, 13, 14, 15, 16, 17]
    encoded = model.encoded
    assert encoded == 6
    session.set_box(_box_of_indices(image, (9, 9, 13), (31, 31, 16)))  # a corrected box: decoder only
    assert model.encoded == encoded and session.last_timings["encoder"] == 0.0
    assert session.reset() is not None and session.mask_array().sum() == 0


def test_propagation_reaches_other_slices_on_the_ct(ct_3mm_path):
    image = sitk.ReadImage(str(ct_3mm_path))
    session = MedSamSession(IntensityStandIn(), image)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_3mm_path.parent / "labels.nii.gz")))
    k, j, i = np.nonzero(labels == 5)  # liver
    box = _box_of_indices(image, (i.min(), j.min(), k.min()), (i.max(), j.max(), k.max()))
    mask = sitk.GetArrayFromImage(session.set_box(box))
    slices = set(np.nonzero(mask)[0])
    assert len(slices) > 3 and session.key_slice in slices
    assert min(slices) >= k.min() and max(slices) <= k.max()


def test_batched_encoding_gives_the_same_masks():
    image, _ = _sphere_image()
    box = _box_of_indices(image, (8, 8, 2), (32, 32, 28))
    one = MedSamSession(IntensityStandIn(), image, batch_size=1).set_box(box)
    model = IntensityStandIn()
    four = MedSamSession(model, image, batch_size=4).set_box(box)
    assert np.array_equal(sitk.GetArrayFromImage(one), sitk.GetArrayFromImage(four))


def test_box_outside_the_image_is_a_prompt_error():
    image, _ = _sphere_image()
    with pytest.raises(PromptError, match="outside the image"):
        MedSamSession(IntensityStandIn(), image).set_box(Box((500, 500, 500), (600, 600, 600)))


# -- the CLI on the shared CT with real (randomized) weights: key slice vs the official pipeline ----------------------
@pytest.fixture(scope="module")
def tiny_medsam(tmp_path_factory):
    official, _ = paired_models(TINY, seed=32, scale=0.2)  # a seed whose key-slice mask is non-trivial
    path = tmp_path_factory.mktemp("medsam") / "tiny_medsam.pth"
    torch.save(official.state_dict(), path)
    return official, path


def _liver_box_ras(ct_3mm_path, slices=2):
    image = sitk.ReadImage(str(ct_3mm_path))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_3mm_path.parent / "labels.nii.gz")))
    k, j, i = np.nonzero(labels == 5)
    key = int(np.median(k))
    low = (i.min(), j.min(), key - slices)
    high = (i.max(), j.max(), key + slices)
    return image, (low, high), list(index_to_ras(image, np.asarray(low, float))) + \
        list(index_to_ras(image, np.asarray(high, float)))


def test_cli_key_slice_equals_the_official_pipeline(ct_3mm_path, tiny_medsam, tmp_path, capsys):
    official, checkpoint = tiny_medsam
    image, (low, high), corners = _liver_box_ras(ct_3mm_path)
    out = tmp_path / "mask.nii.gz"
    code = main(["segment", str(ct_3mm_path), "--model", "medsam", "--checkpoint", str(checkpoint), "--device",
                 "cpu", "--box", *map(str, corners), "-o", str(out), "--overlay", str(tmp_path / "look.png")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "look.png").stat().st_size > 0
    mask = sitk.ReadImage(str(out))
    assert mask.GetSize() == image.GetSize() and mask.GetOrigin() == image.GetOrigin()
    array = sitk.GetArrayFromImage(mask)
    key = (low[2] + high[2]) // 2
    volume = official_ct_volume_uint8(sitk.GetArrayFromImage(image))
    expected = official_slice_segmentation(official, volume[key], [low[0], low[1], high[0], high[1]])
    assert 0 < expected.sum() < expected.size  # a non-trivial mask, so the comparison means something
    dice = 2 * (array[key].astype(bool) & expected.astype(bool)).sum() / (array[key].sum() + expected.sum())
    assert dice >= 0.99
    outside = np.ones(array.shape[0], bool)
    outside[low[2]:high[2] + 1] = False
    assert array[outside].sum() == 0
    assert "key slice k=%d" % key in capsys.readouterr().out


def test_cli_roi_markup_gives_the_same_result_as_the_box(ct_3mm_path, tiny_medsam, tmp_path):
    _, checkpoint = tiny_medsam
    _, _, corners = _liver_box_ras(ct_3mm_path, slices=0)
    low, high = np.array(corners[:3]), np.array(corners[3:])
    centre_lps = (low + high) / 2 * np.array([-1, -1, 1])
    roi = {"markups": [{"type": "ROI", "coordinateSystem": "LPS", "center": list(centre_lps),
                        "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0], "size": list(abs(high - low))}]}
    roi_path = tmp_path / "box.mrk.json"
    roi_path.write_text(json.dumps(roi))
    box = read_roi_box(roi_path)
    assert np.allclose(sorted(box.corner1 + box.corner2), sorted(corners))
    outputs = []
    for prompt in (["--box", *map(str, corners)], ["--roi", str(roi_path)]):
        out = tmp_path / ("m%d.nii.gz" % len(outputs))
        assert main(["segment", str(ct_3mm_path), "--model", "medsam", "--checkpoint", str(checkpoint),
                     "--device", "cpu", *prompt, "-o", str(out)]) == 0
        outputs.append(sitk.GetArrayFromImage(sitk.ReadImage(str(out))))
    assert np.array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize("extra, message", [
    (["--box", "900", "900", "900", "950", "950", "950"], "outside the image"),
    (["--box", "0", "0", "0", "1", "1", "1", "--roi", "x.mrk.json"], "either --box or --roi"),
    (["--point", "0", "0", "0"], "not points"),
    ([], "no box given"),
    (["--roi", "missing.mrk.json"], "ROI file not found"),
])
def test_cli_bad_box_input_is_one_line(ct_3mm_path, tiny_medsam, tmp_path, capsys, extra, message):
    _, checkpoint = tiny_medsam
    existing = tmp_path / "keep.nii.gz"
    existing.write_bytes(b"keep")
    code = main(["segment", str(ct_3mm_path), "--model", "medsam", "--checkpoint", str(checkpoint), *extra,
                 "-o", str(existing)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert existing.read_bytes() == b"keep"


def test_cli_wrong_family_is_one_line(ct_3mm_path, tiny_medsam, tmp_path, capsys):
    from sammed3d.model import SamMed3DConfig, build_sam_med3d
    from sammed3d.weights import write_safetensors

    _, checkpoint = tiny_medsam
    sam3d = write_safetensors(build_sam_med3d(SamMed3DConfig.named("tiny")).state_dict(), tmp_path / "3d.safetensors")
    _, _, corners = _liver_box_ras(ct_3mm_path, slices=0)
    box = ["--box", *map(str, corners)]
    assert main(["segment", str(ct_3mm_path), "--model", "medsam", "--checkpoint", str(sam3d), *box,
                 "-o", str(tmp_path / "a.nii.gz")]) == 2
    assert "needs MedSAM weights" in capsys.readouterr().err
    assert main(["segment", str(ct_3mm_path), "--checkpoint", str(checkpoint), *box,
                 "-o", str(tmp_path / "b.nii.gz")]) == 2
    assert "--model medsam" in capsys.readouterr().err


def test_a_box_given_to_sam_med3d_becomes_its_centre_click():
    from argparse import Namespace

    from sammed3d.cli.segment import _clicks

    args = Namespace(box=[0, 10, 20, 4, 30, 60], roi=None, point=[[1, 2, 3]], negative=[], points=None)
    clicks = _clicks(args)
    assert clicks[0] == ((2.0, 20.0, 40.0), True) and clicks[1] == ((1, 2, 3), True)


def test_interactive_session_speaks_the_same_prompt_vocabulary(ct_3mm_path):
    """SAM-Med3D's session takes Point objects, and a Box becomes its centre click."""
    from sammed3d.prompts import Point
    from sammed3d.session import InteractiveSession
    from session_helpers import tiny_model

    image = sitk.ReadImage(str(ct_3mm_path))
    _, _, corners = _liver_box_ras(ct_3mm_path, slices=1)
    box = Box(tuple(corners[:3]), tuple(corners[3:]))
    by_box = InteractiveSession(tiny_model(), image)
    by_point = InteractiveSession(tiny_model(), image)
    assert np.array_equal(sitk.GetArrayFromImage(by_box.set_box(box)),
                          sitk.GetArrayFromImage(by_point.set_clicks([Point(box.centre, True)])))
    assert by_box.clicks == [(box.centre, True)]


@pytest.mark.slow
def test_cli_full_vit_b_key_slice_equals_the_official_pipeline(ct_3mm_path, tmp_path, capsys):
    """The must-show at full size: a randomized segment-anything ViT-B saved as a plain SAM state dict, through
    `sammed3d segment --model medsam --box`, on a one-slice box (S1 = S2) to keep the CPU time down."""
    from medsam_oracle import official_model, randomize_

    official = randomize_(official_model(Sam2DConfig()), seed=41)
    checkpoint = tmp_path / "sam_vit_b_random.pth"
    torch.save(official.state_dict(), checkpoint)
    image, (low, high), corners = _liver_box_ras(ct_3mm_path, slices=0)
    out = tmp_path / "mask.nii.gz"
    assert main(["segment", str(ct_3mm_path), "--model", "medsam", "--checkpoint", str(checkpoint), "--device",
                 "cpu", "--box", *map(str, corners), "-o", str(out)]) == 0, capsys.readouterr().err
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    key = low[2]
    volume = official_ct_volume_uint8(sitk.GetArrayFromImage(image))
    expected = official_slice_segmentation(official, volume[key], [low[0], low[1], high[0], high[1]])
    union = array[key].sum() + expected.sum()
    dice = 2 * (array[key].astype(bool) & expected.astype(bool)).sum() / union if union else 1.0
    assert dice >= 0.99
    assert array.sum() == array[key].sum()  # nothing outside the box's (one-slice) range


def test_the_embedding_cache_is_bounded_without_changing_results():
    image, _ = _sphere_image()
    box = _box_of_indices(image, (8, 8, 2), (32, 32, 28))
    unbounded = MedSamSession(IntensityStandIn(), image).set_box(box)
    session = MedSamSession(IntensityStandIn(), image, max_cached_slices=3)
    bounded = session.set_box(box)
    assert len(session._embeddings) <= 3
    assert np.array_equal(sitk.GetArrayFromImage(unbounded), sitk.GetArrayFromImage(bounded))


def test_cli_medsam_offline_without_cached_weights_fails_fast(ct_3mm_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    _, _, corners = _liver_box_ras(ct_3mm_path, slices=0)
    code = main(["segment", str(ct_3mm_path), "--model", "medsam", "--box", *map(str, corners),
                 "-o", str(tmp_path / "m.nii.gz")])
    err = capsys.readouterr().err
    assert code == 2 and "HF_HUB_OFFLINE" in err and err.count("\n") == 1
    assert not (tmp_path / "m.nii.gz").exists()


def test_cli_box_on_a_medsam_server_equals_the_local_run(ct_3mm_path, tiny_medsam, tmp_path, capsys):
    """`segment --model medsam --server URL` computes on the server (the same mask as here); a SAM-Med3D server and
    settings only a local MedSAM takes are refused in one line."""
    import sammed3d
    from server_helpers import TOKEN, ServerThread

    _, checkpoint = tiny_medsam
    _, _, corners = _liver_box_ras(ct_3mm_path)
    box = ["--box", *map(str, corners)]
    local, remote = tmp_path / "local.nii.gz", tmp_path / "remote.nii.gz"
    assert main(["segment", str(ct_3mm_path), "--model", "medsam", "--checkpoint", str(checkpoint), "--device", "cpu",
                 *box, "-o", str(local)]) == 0
    capsys.readouterr()
    with ServerThread(sammed3d.load_model(str(checkpoint), "cpu")) as server:
        common = ["segment", str(ct_3mm_path), "--model", "medsam", "--server", server.url, "--token", TOKEN, *box]
        assert main(common + ["-o", str(remote)]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "at %s" % server.url in out and "slice(s) segmented" in out
        assert server.store.counts()["sessions"] == 0  # closed after the answer
        assert main(common + ["--modality", "MR", "-o", str(tmp_path / "mr.nii.gz")]) == 2
        assert "leave out --server" in capsys.readouterr().err
        assert not (tmp_path / "mr.nii.gz").exists()
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(remote))),
                          sitk.GetArrayFromImage(sitk.ReadImage(str(local))))
    with ServerThread(sammed3d.load_model("demo", "cpu")) as server:
        code = main(["segment", str(ct_3mm_path), "--model", "medsam", "--server", server.url, "--token", TOKEN, *box,
                     "-o", str(tmp_path / "other.nii.gz")])
        err = capsys.readouterr().err
        assert code == 2 and "runs SAM-Med3D" in err and "Traceback" not in err


def test_auto_modality_takes_ct_for_hounsfield_volumes_and_mr_otherwise():
    from sammed3d.medsam.preprocessing import normalize_volume, resolve_modality

    ct = np.array([[[-1000.0, 40.0], [300.0, 1200.0]]])
    mr = np.array([[[0.0, 120.0], [800.0, 2400.0]]])
    assert resolve_modality(ct, "auto") == "CT" and resolve_modality(mr, "auto") == "MR"
    assert resolve_modality(mr, "ct") == "CT"
    assert np.array_equal(normalize_volume(ct, "auto"), normalize_volume(ct, "CT"))
    assert np.array_equal(normalize_volume(mr, "auto"), normalize_volume(mr, "MR"))
    with pytest.raises(SamMed3DError, match="choose CT, MR or auto"):
        resolve_modality(ct, "PET")
