#!/usr/bin/env python
"""Generate a synthetic nnU-Net training set for the demo model: organ-like blobs, tubes and distractors in a body.

Every case is a body (air outside, a fat layer, soft tissue inside) holding several labelled objects: smooth
deformed ellipsoids of 8-90 mm ("organs", some touching or overlapping, some with inner structures of a different
intensity that still belong to them) and curved tubes ("vessels"), plus unlabelled distractors (blobs, a bright
bone-like column) so the model learns to stop at the clicked object's boundary. Half the cases have CT-like
intensities (HU: air -1000, fat about -100, tissue 20-80, enhanced organs up to 250, bone up to 1200, noise), half
MR-like ones (positive arbitrary units, random contrast per tissue, multiplicative bias field, Rician-like noise).
Spacings (0.8-4 mm, often anisotropic), sizes and orientations (axis permutations and flips, sometimes a small
oblique rotation) vary per case. Uses numpy and SimpleITK only.

    python scripts/make_demo_data.py OUT_DIR [--cases 60] [--seed 0]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import SimpleITK as sitk

MAX_LABELS = 12


def smooth_noise(shape, spacing_zyx, sigma_mm, rng):
    """Unit-variance Gaussian random field with correlation length ``sigma_mm`` (computed on a coarse grid)."""
    factor = max(1, int(sigma_mm / (2.0 * min(spacing_zyx))))
    coarse_shape = [max(n // factor + 3, 6) for n in shape]
    noise = sitk.GetImageFromArray(rng.standard_normal(coarse_shape).astype(np.float32))
    noise.SetSpacing([float(s * factor) for s in spacing_zyx[::-1]])
    noise.SetOrigin([-float(s * factor) for s in spacing_zyx[::-1]])
    field = sitk.SmoothingRecursiveGaussian(noise, float(sigma_mm))
    reference = sitk.Image([int(n) for n in shape[::-1]], sitk.sitkFloat32)
    reference.SetSpacing([float(s) for s in spacing_zyx[::-1]])
    array = sitk.GetArrayFromImage(sitk.Resample(field, reference, sitk.Transform(), sitk.sitkLinear, 0.0))
    return (array - array.mean()) / (array.std() + 1e-6)


def random_rotation(rng, max_angle=np.pi):
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(-max_angle, max_angle)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


class Canvas(object):
    """Physical coordinates (mm, array order z, y, x) of a case's voxels."""

    def __init__(self, shape, spacing, rng):
        self.shape, self.spacing, self.rng = tuple(shape), np.asarray(spacing, float), rng
        axes = [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape, spacing)]
        self.z, self.y, self.x = np.meshgrid(*axes, indexing="ij")
        self.extent = np.asarray(shape) * self.spacing

    def noise(self, sigma_mm):
        return smooth_noise(self.shape, self.spacing, sigma_mm, self.rng)

    def blob(self, center, radii, roughness, sigma_mm):
        """Deformed, rotated ellipsoid: ||R (p - c) / r|| < 1 + roughness * smooth noise."""
        rot = random_rotation(self.rng)
        p = np.stack([self.z - center[0], self.y - center[1], self.x - center[2]], axis=-1) @ rot.T
        distance = np.sqrt(((p / np.asarray(radii)) ** 2).sum(-1))
        return distance < 1.0 + roughness * self.noise(sigma_mm)

    def tube(self, radius, length):
        """A smooth random curve of ``length`` mm, thickened to ``radius`` mm (via a distance map)."""
        rng = self.rng
        point = rng.uniform(-0.3, 0.3, 3) * self.extent
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        step = 0.5 * float(self.spacing.min())
        centre_line = np.zeros(self.shape, np.uint8)
        half = (np.asarray(self.shape) - 1) / 2.0
        for _ in range(int(length / step)):
            direction = direction + rng.standard_normal(3) * 0.04 * step
            direction /= np.linalg.norm(direction)
            point = point + step * direction
            index = np.round(point / self.spacing + half).astype(int)
            if np.all(index >= 0) and np.all(index < self.shape):
                centre_line[tuple(index)] = 1
        if not centre_line.any():
            return centre_line.astype(bool)
        image = sitk.GetImageFromArray(centre_line)
        image.SetSpacing([float(s) for s in self.spacing[::-1]])
        distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                                useImageSpacing=True)
        return sitk.GetArrayFromImage(distance) < radius


def tissue_layout(canvas, rng):
    """Body / fat / inner masks and a list of (kind, mask) objects, labelled or not, in painting order."""
    ext = canvas.extent
    body_r = [ext[0] * rng.uniform(0.8, 2.0), ext[1] * rng.uniform(0.3, 0.5), ext[2] * rng.uniform(0.32, 0.5)]
    body = canvas.blob([0, 0, 0], body_r, 0.04, 40.0)
    fat_mm = rng.uniform(4, 25)
    inner = canvas.blob([0, 0, 0], [r - fat_mm for r in body_r], 0.05, 30.0) & body
    objects = []
    for _ in range(rng.integers(3, 8)):  # organs
        radii = rng.uniform(8, 90, 3) * rng.uniform(0.6, 1.0)
        center = rng.uniform(-0.3, 0.3, 3) * ext
        organ = canvas.blob(center, radii, rng.uniform(0.05, 0.3), rng.uniform(8, 30)) & inner
        objects.append(("organ", organ))
    for _ in range(rng.integers(0, 3)):  # vessels
        objects.append(("tube", canvas.tube(rng.uniform(2.5, 12), rng.uniform(60, 300)) & inner))
    for _ in range(rng.integers(1, 4)):  # unlabelled distractors
        radii = rng.uniform(6, 40, 3)
        objects.append(("distractor", canvas.blob(rng.uniform(-0.35, 0.35, 3) * ext, radii, 0.2, 10.0) & inner))
    if rng.random() < 0.7:  # a bone-like column with a bright shell
        column = canvas.blob([0, -ext[1] * rng.uniform(0.15, 0.3), rng.uniform(-10, 10)],
                             [ext[0] * 2, rng.uniform(10, 20), rng.uniform(10, 20)], 0.05, 20.0) & inner
        objects.append(("bone", column))
    return body, inner, objects


def paint(canvas, rng, modality):
    """(image float32, label uint8) for one case."""
    body, inner, objects = tissue_layout(canvas, rng)
    label = np.zeros(canvas.shape, np.uint8)
    if modality == "CT":
        air, fat, tissue = -1000.0, rng.uniform(-120, -80), rng.uniform(20, 70)
        image = np.where(body, fat, air).astype(np.float32)
        image[inner] = tissue + 15 * canvas.noise(rng.uniform(5, 20))[inner]
    else:
        air, fat, tissue = 0.0, rng.uniform(100, 900), rng.uniform(150, 700)
        image = np.where(body, fat, air).astype(np.float32)
        image[inner] = tissue * (1 + 0.1 * canvas.noise(rng.uniform(5, 20))[inner])
    next_label = 1
    for kind, mask in objects:
        if not mask.any():
            continue
        if modality == "CT":
            if kind == "bone":
                value = rng.uniform(150, 400)
            elif kind == "tube":
                value = rng.uniform(120, 300) if rng.random() < 0.7 else rng.uniform(30, 60)
            else:
                value = tissue + rng.choice([-1, 1]) * rng.uniform(8, 150)
        else:
            value = rng.uniform(50, 1200)
        texture = canvas.noise(rng.uniform(3, 15))[mask]
        image[mask] = value + abs(value - tissue) * 0.15 * texture + (0.05 * value * texture if modality != "CT" else 0)
        if kind == "bone" and modality == "CT":
            shell = mask & ~canvas_erode(mask, 2)
            image[shell] = rng.uniform(700, 1200)
        if kind in ("organ", "tube") and next_label <= MAX_LABELS:
            if kind == "organ" and rng.random() < 0.4:  # inner structures (lesions, vessels) belong to the organ
                inside = np.argwhere(mask)[rng.integers(int(mask.sum()))]
                centre = [canvas.z[tuple(inside)], canvas.y[tuple(inside)], canvas.x[tuple(inside)]]
                inner_blob = canvas.blob(centre, rng.uniform(4, 20, 3), 0.3, 5.0) & mask
                image[inner_blob] = value + rng.choice([-1, 1]) * rng.uniform(20, 200)
            label[mask] = next_label
            next_label += 1
        else:
            label[mask] = 0  # painted over: an unlabelled structure hides what was below
    if modality == "CT":
        image += rng.uniform(5, 25) * rng.standard_normal(image.shape).astype(np.float32)
        image = np.clip(image, -1024, 3000)
    else:
        image *= np.exp(rng.uniform(0.1, 0.5) * canvas.noise(rng.uniform(60, 150)))  # bias field
        sigma = rng.uniform(0.01, 0.06) * float(image.max())
        image = np.hypot(image + sigma * rng.standard_normal(image.shape),
                         sigma * rng.standard_normal(image.shape)).astype(np.float32)
    return blur(image, canvas.spacing, rng.uniform(0.3, 1.0)), label


def canvas_erode(mask, radius):
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    return sitk.GetArrayFromImage(sitk.BinaryErode(image, [radius] * 3)).astype(bool)


def blur(image, spacing, voxels):
    item = sitk.GetImageFromArray(image)
    item.SetSpacing([float(s) for s in spacing[::-1]])
    return sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(item, float(voxels * min(spacing))))


def random_direction(rng):
    """An axis permutation with random signs, sometimes slightly oblique (SimpleITK direction, 9 numbers)."""
    matrix = np.eye(3)[rng.permutation(3)] * rng.choice([-1, 1], 3)[:, None]
    if rng.random() < 0.3:
        matrix = random_rotation(rng, np.deg2rad(20)) @ matrix
    return tuple(matrix.ravel())


def make_case(rng, modality):
    spacing = rng.uniform(0.8, 2.2, 3)
    if rng.random() < 0.6:
        spacing[0] = rng.uniform(2.0, 4.0)  # thick slices (array axis 0 is the slice axis)
    fov = np.array([rng.uniform(90, 260), rng.uniform(180, 330), rng.uniform(180, 380)])
    shape = np.clip(np.round(fov / spacing).astype(int), 24, 160)
    canvas = Canvas(shape, spacing, rng)
    image, label = paint(canvas, rng, modality)
    pixel = np.int16 if modality == "CT" else np.float32
    img = sitk.GetImageFromArray(np.round(image).astype(pixel) if modality == "CT" else image.astype(pixel))
    img.SetSpacing([float(s) for s in spacing[::-1]])
    img.SetDirection(random_direction(rng))
    img.SetOrigin([float(v) for v in rng.uniform(-200, 200, 3)])
    lab = sitk.GetImageFromArray(label)
    lab.CopyInformation(img)
    return img, lab


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output nnU-Net dataset folder (created)")
    parser.add_argument("--cases", type=int, default=60, help="number of cases (half CT-like, half MR-like)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(args.out, sub), exist_ok=True)
    start = time.time()
    for index in range(args.cases):
        rng = np.random.default_rng([args.seed, index])
        modality = "CT" if index % 2 == 0 else "MR"
        name = "synth_%s_%03d" % (modality.lower(), index)
        if os.path.isfile(os.path.join(args.out, "labelsTr", name + ".nii.gz")):
            continue  # made by an earlier, interrupted run (cases are independent of each other)
        image, label = make_case(rng, modality)
        sitk.WriteImage(image, os.path.join(args.out, "imagesTr", name + "_0000.nii.gz"), True)
        sitk.WriteImage(label, os.path.join(args.out, "labelsTr", name + ".nii.gz"), True)  # written last
        print("%s %s %d objects (%.0f s)" % (name, "x".join(map(str, image.GetSize())),
                                            len(np.unique(sitk.GetArrayViewFromImage(label))) - 1,
                                            time.time() - start), file=sys.stderr)
    labels = {"background": 0}
    labels.update({"object_%d" % n: n for n in range(1, MAX_LABELS + 1)})
    meta = {"name": "SAMMed3D-synthetic-demo", "labels": labels, "channel_names": {"0": "CT or MR"},
            "numTraining": args.cases, "file_ending": ".nii.gz",
            "description": "synthetic shapes with CT- and MR-like textures (scripts/make_demo_data.py)"}
    with open(os.path.join(args.out, "dataset.json"), "w") as handle:
        json.dump(meta, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
