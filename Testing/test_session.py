"""The interactive session: official click protocol, cached embeddings, undo/redo, seeds, large objects."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from oracle import official_decode, official_model, randomize_
from sammed3d.errors import PromptError
from sammed3d.mapping import map_logits
from sammed3d.model import SamMed3DConfig
from sammed3d.roi import extract_roi
from sammed3d.session import InteractiveSession
from session_helpers import ORGANS, ThresholdModel, dice, organ_point, tiny_model


@pytest.fixture(scope="module")
def ct(ct_3mm_path):
    image = sitk.ReadImage(str(ct_3mm_path))
    labels = sitk.ReadImage(str(ct_3mm_path).replace("image.nii.gz", "labels.nii.gz"))
    return image, labels


def _count_encodes(model):
    calls = []
    original = model.encode

    def encode(x):
        calls.append(1)
        return original(x)

    model.encode = encode
    return calls


def test_refinement_reuses_the_embedding(ct):
    image, labels = ct
    model = tiny_model()
    calls = _count_encodes(model)
    session = InteractiveSession(model, image, max_rois=1)
    point = organ_point(labels, ORGANS["liver"])
    session.add_point(point, True)
    assert len(calls) == 1
    session.add_point(point + np.array([6.0, 0, 3.0]), False)
    session.add_point(point + np.array([-6.0, 3.0, 0]), True)
    assert len(calls) == 1 and session.last_timings["encoder"] == 0.0
    session.undo()
    session.redo()
    assert len(calls) == 1


def test_session_follows_the_official_protocol(ct):
    """Same randomized weights: our session equals the official model called click by click on our ROI, with
    all clicks so far and the previous logits fed back, mapped by the official nearest-neighbour rule."""
    image, labels = ct
    official = randomize_(official_model(SamMed3DConfig.named("tiny")), seed=31)
    from sammed3d.loading import model_from_state_dict

    ours = model_from_state_dict(official.state_dict()).eval()
    point = organ_point(labels, ORGANS["spleen"])
    clicks = [(point, True), (point + np.array([9.0, 0, 0]), False), (point + np.array([0, -6.0, 3.0]), True)]
    session = InteractiveSession(ours, image, mapping="official", max_rois=1)
    roi = extract_roi(image, point)
    with torch.inference_mode():
        embedding = official.image_encoder(roi.image)
        logits = torch.zeros(1, 1, 32, 32, 32)
        for n in range(1, len(clicks) + 1):
            coords = torch.tensor(np.array([roi.ras_to_index(p) for p, _ in clicks[:n]]), dtype=torch.float32)[None]
            lab = torch.tensor([[int(pos) for _, pos in clicks[:n]]])
            logits, _ = official_decode(official, embedding, coords, lab, logits)
            expected = map_logits(roi, logits, "official").to_image()
            actual = session.add_point(*clicks[n - 1])
            assert dice(sitk.GetArrayFromImage(actual), sitk.GetArrayFromImage(expected)) >= 0.99


def test_undo_redo_and_replay_equal_clicking(ct):
    image, labels = ct
    model = tiny_model(1)
    point = organ_point(labels, ORGANS["liver"])
    clicks = [(point, True), (point + np.array([12.0, 0, 0]), False), (point + np.array([0, 9.0, 0]), True)]
    session = InteractiveSession(model, image, max_rois=2)
    results = [sitk.GetArrayFromImage(session.add_point(*c)) for c in clicks]
    assert np.array_equal(sitk.GetArrayFromImage(session.undo()), results[1])
    assert np.array_equal(sitk.GetArrayFromImage(session.undo()), results[0])
    assert np.array_equal(sitk.GetArrayFromImage(session.redo()), results[1])
    assert np.array_equal(sitk.GetArrayFromImage(session.redo()), results[2])
    fresh = InteractiveSession(model, image, max_rois=2)
    assert np.array_equal(sitk.GetArrayFromImage(fresh.set_clicks(clicks)), results[2])
    assert not session.reset().GetPixelID() == sitk.sitkUnknown
    assert session.mask_array().sum() == 0 and session.clicks == []


def test_output_geometry_is_the_input_geometry(ct):
    image, labels = ct
    mask = InteractiveSession(tiny_model(), image).add_point(organ_point(labels, ORGANS["kidney_right"]), True)
    assert mask.GetSize() == image.GetSize()
    assert mask.GetOrigin() == image.GetOrigin()
    assert mask.GetSpacing() == image.GetSpacing()
    assert mask.GetDirection() == image.GetDirection()
    assert mask.GetPixelID() == sitk.sitkUInt8


def test_seed_mask_is_kept_outside_the_roi_and_prompts_inside(ct):
    image, labels = ct
    seed = sitk.Cast(sitk.Equal(labels, ORGANS["liver"]), sitk.sitkUInt8)
    session = InteractiveSession(tiny_model(), image, max_rois=1)
    session.seed(seed)
    far = organ_point(labels, ORGANS["spleen"])
    mask = sitk.GetArrayFromImage(session.add_point(far, True))
    roi = session.rois[0]
    from sammed3d.mapping import roi_region

    region = roi_region(roi)
    outside = np.ones(mask.shape, dtype=bool)
    outside[region.slices] = False
    assert np.array_equal(mask[outside], sitk.GetArrayFromImage(seed)[outside])
    unseeded = sitk.GetArrayFromImage(InteractiveSession(tiny_model(), image, max_rois=1).add_point(far, True))
    assert not np.array_equal(mask[region.slices], unseeded[region.slices])  # the seed was the mask prompt


def test_points_outside_the_image_are_refused(ct):
    image, _ = ct
    session = InteractiveSession(tiny_model(), image)
    with pytest.raises(PromptError, match="outside the image"):
        session.add_point((5000.0, 0.0, 0.0), True)
    with pytest.raises(PromptError, match="non-finite"):
        session.add_point((float("nan"), 0.0, 0.0), True)


def test_large_object_is_followed_into_neighbour_rois(ct):
    """The liver of the bundled CT spans 195 mm (> one 192 mm ROI). Clicked near its right edge, one ROI cuts it;
    the session's neighbour ROIs recover it. The network is replaced by a transparent threshold model so that
    the test measures the tiling, not the weights."""
    _, labels = ct
    liver = sitk.Equal(labels, ORGANS["liver"])
    image = sitk.Cast(liver, sitk.sitkFloat32) * 200.0 + 1.0  # bright liver on a dim body
    array = sitk.GetArrayFromImage(liver)
    kji = np.argwhere(array)
    edge = kji[kji[:, 2] == kji[:, 2].min()][0]  # a liver voxel at its extreme i (x) index
    from sammed3d import geometry

    click = geometry.index_to_ras(labels, edge[::-1].astype(float) + np.array([3.0, 0, 0]))  # 9 mm inside
    assert array[tuple(np.round(geometry.ras_to_index(labels, click)[::-1]).astype(int))]
    single = sitk.GetArrayFromImage(InteractiveSession(ThresholdModel(), image, max_rois=1).add_point(click, True))
    model = ThresholdModel()
    session = InteractiveSession(model, image, max_rois=6)
    tiled = sitk.GetArrayFromImage(session.add_point(click, True))
    print("large object: Dice %.3f with one ROI, %.3f with %d ROIs" % (dice(single, array), dice(tiled, array),
                                                                      len(session.rois)))
    assert len(session.rois) >= 2 and model.encode_calls == len(session.rois)
    assert dice(tiled, array) > dice(single, array) + 0.05
    assert dice(tiled, array) >= 0.9


def test_a_mask_that_fills_its_roi_is_a_leak_and_is_not_followed():
    """A bright slab far larger than the ROI: the object fills the whole ROI and touches every face, which is what
    a leak looks like; following it would only spread the leak into neighbour ROIs."""
    array = np.full((60, 200, 200), 1.0, dtype=np.float32)
    array[5:55, 10:190, 10:190] = 200.0
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.0, 2.0, 2.0))
    from sammed3d import geometry

    click = geometry.index_to_ras(image, [100.0, 100.0, 30.0])
    model = ThresholdModel()
    session = InteractiveSession(model, image, max_rois=6)
    mask = sitk.GetArrayFromImage(session.add_point(click, True))
    assert mask[30, 100, 100] == 1
    assert len(session.rois) == 1 and model.encode_calls == 1
