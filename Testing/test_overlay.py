"""The --overlay PNG: legible at a glance (clicks marked, cropped to the body, a legend), for thick and thin scans."""
import numpy as np
import pytest
import SimpleITK as sitk

from sammed3d import geometry
from sammed3d.overlay import write_overlay_png

pytest.importorskip("matplotlib")


def colour_pixels(rgb, colour, tolerance=60):
    return int((np.abs(rgb.astype(int) - np.asarray(colour)).max(axis=-1) < tolerance).sum())


def sphere_mask(image, centre_ras, radius_mm):
    size = image.GetSize()
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1).reshape(-1, 3)
    inside = np.linalg.norm(geometry.index_to_ras(image, grid) - centre_ras, axis=1) < radius_mm
    mask = sitk.GetImageFromArray(inside.reshape(size).transpose(2, 1, 0).astype(np.uint8))
    mask.CopyInformation(image)
    return mask


@pytest.mark.parametrize("slices", [None, (12, 20)])  # the whole CT, and a thin 8-slice slab of it
def test_overlay_marks_clicks_crops_to_the_body_and_has_a_legend(slices, ct_3mm_path, tmp_path):
    image = sitk.ReadImage(str(ct_3mm_path))
    if slices:
        image = image[:, :, slices[0]:slices[1]]
    centre = geometry.index_to_ras(image, (np.array(image.GetSize()) - 1) * np.array([0.35, 0.55, 0.5]))
    negative = centre + np.array([-25.0, 0.0, 0.0])
    path = write_overlay_png(image, sphere_mask(image, centre, 12.0), centre, tmp_path / "look.png",
                             clicks=[(tuple(centre), True), (tuple(negative), False)])
    png = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[..., :3]
    height, width = png.shape[:2]
    assert width >= 600 and height >= 150
    assert colour_pixels(png, (0, 255, 0)) > 20  # the positive click: green +
    assert colour_pixels(png, (255, 0, 0)) > 20  # the negative click: red x
    assert colour_pixels(png, (255, 255, 0), 40) > 50  # the mask outline
    # the legend: a line of white text below the panels
    assert colour_pixels(png[int(height * 0.88):], (255, 255, 255), 30) > 100
    # cropped to the body: each panel's columns hold image (grey) pixels, not empty black margins
    body = (png.max(axis=-1) > 40).any(axis=0)
    assert body.mean() > 0.8, body.mean()
