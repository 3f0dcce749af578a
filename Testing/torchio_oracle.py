"""Test-only re-creation of the official SAM-Med3D preprocessing and post-processing with torchio (the oracle).

Never imported by the package. Preprocessing (SPEC section 4): ToCanonical -> Resample(1.5) -> CropOrPad(128)
around a target mask -> ZNormalization(voxels > 0). Post-processing (official ``data_postprocess``): paste the
binary ROI mask into the whole 1.5 mm image, back to the image's own axis order, ``F.interpolate(mode="nearest")``
to the original shape.
"""
import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
import torchio as tio


def ras_affine(image):
    """Index -> RAS affine of a SimpleITK image, computed by torchio (independent of sammed3d.geometry)."""
    return tio.ScalarImage.from_sitk(image).affine


def sphere_mask(image, center_ras, radius_mm):
    """uint8 mask (torchio layout, 1 x I x J x K) of the voxels within radius_mm of center_ras."""
    affine = ras_affine(image)
    size = image.GetSize()
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1).reshape(-1, 3)
    points = grid @ affine[:3, :3].T + affine[:3, 3]
    inside = np.linalg.norm(points - np.asarray(center_ras), axis=1) <= radius_mm
    return torch.from_numpy(inside.reshape(size).astype(np.uint8))[None], affine


def official_roi(image, center_ras, radius_mm=6.0, size=128):
    """The official pipeline with a sphere around the click as target (radius_mm=None: the resampled voxel
    nearest to the click, a one-voxel target).

    Returns (roi array S^3 float32, roi affine 4x4 RAS, (shape, affine) of the whole resampled image).
    """
    mask, affine = sphere_mask(image, center_ras, radius_mm or 0.0)
    subject = tio.Subject(image=tio.ScalarImage.from_sitk(image), label=tio.LabelMap(tensor=mask, affine=affine))
    subject = tio.ToCanonical()(subject)
    subject = tio.Resample(1.5)(subject)
    if radius_mm is None:
        resampled = subject.image.affine
        nearest = np.floor(np.linalg.solve(resampled, np.append(center_ras, 1.0))[:3] + 0.5).astype(int)
        voxel = torch.zeros_like(subject.label.data)
        voxel[(0,) + tuple(nearest)] = 1
        subject.label.set_data(voxel)
    assert subject.label.data.any(), "target sphere vanished in resampling; use a larger radius"
    grid = (tuple(subject.image.shape[1:]), subject.image.affine.copy())
    subject = tio.CropOrPad((size,) * 3, mask_name="label")(subject)
    subject = tio.ZNormalization(masking_method=lambda x: x > 0)(subject)
    return subject.image.data[0].numpy(), subject.image.affine, grid


def official_mapping(roi, low_res_logits, image):
    """Official nearest-neighbour mapping of the binary ROI mask to the original grid; (I, J, K) uint8 array."""
    logits = F.interpolate(torch.as_tensor(low_res_logits).float(), size=(roi.size,) * 3, mode="trilinear",
                           align_corners=False)
    mask = (logits[0, 0] > 0).numpy().astype(np.uint8)
    # CropOrPad's inverse: the valid (unpadded) part of the ROI goes back into the whole resampled image.
    full = np.zeros(roi.grid.size, dtype=np.uint8)
    start = roi.start
    lo = np.clip(-start, 0, roi.size)
    hi = np.clip(np.asarray(roi.grid.size) - start, 0, roi.size)
    full[tuple(slice(s + a, s + b) for s, a, b in zip(start, lo, hi))] = mask[tuple(slice(a, b) for a, b in zip(lo, hi))]
    label = tio.LabelMap(tensor=torch.from_numpy(full)[None], affine=roi.grid.affine)
    codes = "".join(nib.aff2axcodes(ras_affine(image)))
    label = tio.ToOrientation(codes)(label)  # back to the image's own axis order, as the official array
    back = F.interpolate(label.data[None].float(), size=tuple(image.GetSize()), mode="nearest")
    return back[0, 0].numpy().astype(np.uint8)


def overlap_correlation(mine, affine_mine, theirs, affine_theirs):
    """(Pearson correlation on the overlap, integer offset) of two ROIs on the same lattice."""
    offset = np.linalg.inv(affine_mine) @ affine_theirs[:, 3]
    shift = np.rint(offset[:3]).astype(int)
    assert np.allclose(offset[:3], shift, atol=1e-3), "ROIs are not on the same lattice: %s" % offset[:3]
    size = np.asarray(mine.shape)
    lo = np.maximum(shift, 0)
    hi = np.minimum(size + shift, size)
    a = mine[tuple(slice(l, h) for l, h in zip(lo, hi))]
    b = theirs[tuple(slice(l - s, h - s) for l, h, s in zip(lo, hi, shift))]
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1]), shift


def sitk_image_from_array(array_ijk, spacing, origin, direction, pixel_type=sitk.sitkFloat32):
    """A SimpleITK image whose voxel (i, j, k) holds array_ijk[i, j, k]."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array_ijk, (2, 1, 0))))
    image = sitk.Cast(image, pixel_type)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(d) for d in np.asarray(direction).ravel()])
    return image


def official_main_mapping(roi, low_res_logits, target):
    """The current official release's back-mapping (main branch, ``data_postprocess``): the binary ROI mask as a
    torchio LabelMap with the ROI's affine, ``tio.Resample(target=<original image>, image_interpolation='nearest')``.

    ``target``: the original image as a SimpleITK image or a file path (read by torchio, as the official code).
    Returns an (I, J, K) uint8 array.
    """
    logits = F.interpolate(torch.as_tensor(low_res_logits).float(), size=(roi.size,) * 3, mode="trilinear",
                           align_corners=False)
    mask = (logits[0, 0] > 0).numpy().astype(np.float32)
    label = tio.LabelMap(tensor=torch.from_numpy(mask)[None], affine=roi.affine)
    reference = tio.ScalarImage.from_sitk(target) if isinstance(target, sitk.Image) else tio.ScalarImage(str(target))
    back = tio.Resample(target=reference, image_interpolation="nearest")(label)
    return back.data[0].numpy().astype(np.uint8)
