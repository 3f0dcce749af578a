"""Mapping low-resolution logits back to the original grid: official nearest mapping and default linear mapping."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from sammed3d import extract_roi, geometry
from sammed3d.image_io import read_image
from sammed3d.mapping import Region, map_logits, paste_region, roi_region

from torchio_oracle import official_main_mapping, official_mapping, sitk_image_from_array


def ijk(image):
    """Voxel array of a SimpleITK image indexed [i, j, k]."""
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def sphere_logits(roi, center_ras, radius_mm):
    """Smooth low-res logits (1x1x32^3): radius minus distance to center_ras, in mm, at the 6 mm logit grid."""
    low = (np.arange(32) + 0.5) * 4 - 0.5  # ROI index of each low-res voxel centre (align_corners=False)
    grid = np.stack(np.meshgrid(low, low, low, indexing="ij"), axis=-1).reshape(-1, 3)
    distance = np.linalg.norm(roi.index_to_ras(grid) - center_ras, axis=1)
    return torch.from_numpy((radius_mm - distance).reshape(1, 1, 32, 32, 32).astype(np.float32))


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def oblique_image():
    tilt = np.radians(25.0)
    rotation = np.array([[np.cos(tilt), 0, np.sin(tilt)], [0, 1, 0], [-np.sin(tilt), 0, np.cos(tilt)]])
    direction = geometry.LPS_TO_RAS @ rotation @ np.array([[0, 1, 0], [0, 0, -1], [-1, 0, 0]], dtype=float)
    rng = np.random.default_rng(0)
    return sitk_image_from_array(rng.uniform(1, 50, (50, 44, 18)), (0.8, 1.3, 3.3), (4, 5, 6), direction)


def lps_image():
    rng = np.random.default_rng(1)
    return sitk_image_from_array(rng.uniform(1, 50, (90, 80, 12)), (0.7, 0.7, 2.5), (-30, -20, -10), np.eye(3))


@pytest.fixture(params=["ct", "lps", "oblique"])
def case(request, ct_3mm_path):
    if request.param == "ct":
        image = read_image(ct_3mm_path)
        fraction = np.array([0.3, 0.55, 0.5])
    elif request.param == "lps":
        image, fraction = lps_image(), np.array([0.4, 0.6, 0.5])
    else:
        image, fraction = oblique_image(), np.array([0.45, 0.5, 0.6])
    click = geometry.index_to_ras(image, (np.array(image.GetSize()) - 1) * fraction)
    return image, click, extract_roi(image, click)


def test_official_mapping_matches_the_current_official_postprocessing(case):
    """main branch: torchio Resample(target=image, nearest) of the ROI label map (ITK nearest, physical space)."""
    image, click, roi = case
    torch.manual_seed(0)
    for logits in (sphere_logits(roi, click, 20.0), torch.randn(1, 1, 32, 32, 32)):
        mine = ijk(map_logits(roi, logits, "official").to_image())
        expected = official_main_mapping(roi, logits, image)
        assert expected.any() and dice(mine, expected) > 0.99
        # Voxels may differ only where a voxel centre lies exactly between two ROI voxels (a tie: which side wins
        # depends on float rounding in the two geometry conversions; ITK rounds exact ties up).
        differing = np.argwhere(mine != expected).astype(float)
        fraction = roi.ras_to_index(geometry.index_to_ras(image, differing)) % 1.0
        assert np.all(np.any(np.abs(fraction - 0.5) < 1e-3, axis=1))
        # the CVPR25 branch's index-space nearest is a different mapping: on speckle it disagrees clearly
        assert not np.array_equal(ijk(map_logits(roi, logits, "cvpr25").to_image()), expected)


def test_cvpr25_mapping_matches_the_cvpr25_postprocessing(case):
    image, click, roi = case
    torch.manual_seed(0)
    for logits in (sphere_logits(roi, click, 20.0), torch.randn(1, 1, 32, 32, 32)):
        result = map_logits(roi, logits, "cvpr25")
        expected = official_mapping(roi, logits, image)
        np.testing.assert_array_equal(ijk(result.to_image()), expected)
        assert expected.any()


def test_linear_mapping_geometry_and_accuracy(case):
    image, click, roi = case
    radius = 20.0
    result = map_logits(roi, sphere_logits(roi, click, radius))
    mask_image = result.to_image()
    assert mask_image.GetPixelID() == sitk.sitkUInt8
    assert mask_image.GetSize() == image.GetSize()
    assert mask_image.GetOrigin() == image.GetOrigin()
    assert mask_image.GetSpacing() == image.GetSpacing()
    assert mask_image.GetDirection() == image.GetDirection()
    # The true sphere on the original grid, computed directly from voxel centres.
    size = image.GetSize()
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1).reshape(-1, 3)
    truth = (np.linalg.norm(geometry.index_to_ras(image, grid) - click, axis=1) < radius).reshape(size)
    mine = ijk(mask_image).astype(bool)
    official = ijk(map_logits(roi, sphere_logits(roi, click, radius), "official").to_image()).astype(bool)
    assert dice(mine, truth) > 0.95
    assert dice(mine, truth) > dice(official, truth)  # smoother and more faithful than the official mapping
    # Only the ROI's region is touched.
    outside = np.ones(size, dtype=bool)
    outside[tuple(slice(a, a + n) for a, n in zip(result.region.index, result.region.size))] = False
    assert not mine[outside].any()


def test_region_covers_exactly_the_voxels_inside_the_roi(case):
    image, _, roi = case
    region = roi_region(roi)
    size = np.array(image.GetSize())
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1).reshape(-1, 3)
    inside = roi.contains(geometry.index_to_ras(image, grid)).reshape(tuple(size))
    box = np.zeros(tuple(size), dtype=bool)
    box[tuple(slice(a, a + n) for a, n in zip(region.index, region.size))] = True
    assert inside.any() and not inside[~box].any()  # every voxel inside the ROI is in the region
    # ... and the region is the tightest box around them.
    where = np.argwhere(inside)
    assert tuple(where.min(axis=0)) == region.index
    assert tuple(where.max(axis=0) - where.min(axis=0) + 1) == region.size


def test_paste_region_and_region_image(case):
    image, click, roi = case
    result = map_logits(roi, sphere_logits(roi, click, 15.0))
    full = np.full(image.GetSize()[::-1], 7, dtype=np.uint8)
    paste_region(full, result.region, result.array)
    inside = full[result.region.slices]
    np.testing.assert_array_equal(inside, result.array)
    assert (full == 7).sum() == full.size - result.array.size
    # The region image sits on the same physical grid: pasting it with SimpleITK gives the full mask image.
    pasted = sitk.Paste(sitk.Image(image.GetSize(), sitk.sitkUInt8), result.region_image(), result.region.size,
                        [0, 0, 0], result.region.index)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(pasted), sitk.GetArrayFromImage(result.to_image()))
    assert result.region_image().GetOrigin() == pytest.approx(
        image.TransformIndexToPhysicalPoint(result.region.index))


def test_region_slices_and_empty_region():
    region = Region((1, 2, 3), (4, 5, 6))
    assert region.slices == (slice(3, 9), slice(2, 7), slice(1, 5))
    full = np.zeros((3, 3, 3), dtype=np.uint8)
    assert paste_region(full, Region((0, 0, 0), (0, 3, 3)), np.zeros((3, 3, 0))) is full


def test_bad_method_and_logit_shapes(case):
    image, _, roi = case
    with pytest.raises(ValueError):
        map_logits(roi, torch.zeros(1, 1, 32, 32, 32), "cubic")
    with pytest.raises(ValueError):
        map_logits(roi, torch.zeros(2, 1, 32, 32, 32))
    assert not map_logits(roi, torch.full((1, 1, 32, 32, 32), -5.0)).array.any()
    assert map_logits(roi, torch.full((32, 32, 32), 5.0), "cvpr25").array.all()
    # official (ITK nearest): every voxel whose centre lies inside the ROI is set; a centre exactly on the ROI's
    # upper face is outside (ITK's buffer is [-0.5, size - 0.5) in continuous index)
    result = map_logits(roi, torch.full((32, 32, 32), 5.0), "official")
    where = np.argwhere(np.ones(result.array.shape, dtype=bool))[:, ::-1] + np.asarray(result.region.index)
    index = roi.ras_to_index(geometry.index_to_ras(image, where.astype(float)))
    strictly_inside = np.all((index > -0.5 + 1e-3) & (index < roi.size - 0.5 - 1e-3), axis=1)
    assert result.array.ravel()[strictly_inside].all()
