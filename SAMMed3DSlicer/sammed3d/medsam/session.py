"""A MedSAM box session on one 3D image: a box in RAS mm in, a mask on the image's own grid out.

The official 3D protocol (SPEC section 8): the box's k range gives the slices (the image's stored k-planes); the key
slice is the one nearest the box centre and is segmented with the box; then the session goes outward slice by slice,
each slice prompted with the previous slice's mask bounding box + `margin` pixels, and stops in a direction when the
mask vanishes or the box's slice range ends. The margin is in slice pixels, as SPEC section 8 states it (MedSAM's own
3D example `medsam_infer_3Dbox_adrenal.py` adds its 5 px on the 1024^2-resized mask instead, i.e. about
5 * W / 1024 slice pixels, and falls back to the nearest user box instead of stopping; `margin` sets the value).
Slice embeddings are cached: a corrected box re-runs only the decoder
on slices already seen. On a GPU several slices are encoded per forward (`batch_size`).
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional

import numpy as np
import SimpleITK as sitk

from ..devices import autocast
from ..errors import PromptError, SamMed3DError
from ..image_io import image_on_grid, validate_image
from ..prompts import Box
from .preprocessing import (DEFAULT_WINDOW, box_to_input, logits_to_mask, mask_box, normalize_volume, resolve_modality,
                            slice_to_input)

ProgressCallback = Callable[[int, int], None]


class MedSamSession:
    """Box -> mask for one object in one image, with MedSAM. Not thread-safe.

    model: a SAM 2D model from :func:`sammed3d.load_model` (MedSAM weights); image: a 3D SimpleITK image;
    modality "CT" (window level/width, default 40/400), "MR" (percentiles) or "auto" (CT when a voxel is below
    -200, see `medsam.preprocessing`; the choice is `session.modality`); margin: pixels added around the
    previous slice's mask box; batch_size: slices per encoder forward (default 1 on the CPU, 8 on a GPU);
    precision: "fp32", "bf16", "fp16"; progress(slices_done, slices_in_range) is called after each slice;
    max_cached_slices: slice embeddings kept (4 MiB each for MedSAM; the ones farthest from the slice in use go first).
    """

    def __init__(self, model, image: sitk.Image, modality: str = "CT", window=DEFAULT_WINDOW, margin: float = 5,
                 batch_size: Optional[int] = None, precision: str = "fp32",
                 progress: Optional[ProgressCallback] = None, max_cached_slices: int = 128) -> None:
        if not hasattr(model, "decode_boxes"):
            raise SamMed3DError("a MedSAM session needs MedSAM (SAM 2D) weights, not a SAM-Med3D model")
        self.model = model
        self.image = validate_image(image)
        self.margin = float(margin)
        self.precision = precision
        self.progress = progress
        self.max_cached_slices = max(1, int(max_cached_slices))
        self._device = model.device
        self.batch_size = max(1, int(batch_size or (1 if self._device.type == "cpu" else 8)))
        self.input_size = int(getattr(getattr(model, "image_encoder", None), "img_size", 1024))  # 1024 for MedSAM
        timer = time.perf_counter()
        array = sitk.GetArrayViewFromImage(self.image)
        self.modality = resolve_modality(array, modality)
        self._volume = normalize_volume(array, self.modality, window)
        self._normalize_seconds = time.perf_counter() - timer
        self._embeddings: Dict[int, object] = {}
        self._mask = np.zeros(self._volume.shape, dtype=np.uint8)
        self.box: Optional[Box] = None
        self.key_slice: Optional[int] = None
        self.slice_boxes: Dict[int, np.ndarray] = {}  # k -> the box [x0, y0, x1, y1] (slice pixels) each slice got
        self.last_timings: Dict[str, float] = {}

    # -- public API ---------------------------------------------------------------------------------------------
    def set_box(self, box: Box) -> sitk.Image:
        """Segment the object in `box` (replaces any previous box) and return the mask."""
        if not isinstance(box, Box):
            box = Box(*box)
        low, high = box.index_bounds(self.image)
        self.last_timings = {"preprocess": self._normalize_seconds, "encoder": 0.0, "decoder": 0.0}
        self._normalize_seconds = 0.0
        start = time.perf_counter()
        first, last = int(np.floor(low[2] + 0.5)), int(np.floor(high[2] + 0.5))
        key = int(np.clip(np.floor((low[2] + high[2]) / 2 + 0.5), first, last))
        self.box, self.key_slice, self.slice_boxes = box, key, {}
        self._mask[...] = 0
        total, done = last - first + 1, 0
        key_box = np.array([low[0], low[1], high[0], high[1]], dtype=np.float64)
        key_mask = self._segment(key, key_box, direction=1, last=last)
        done += 1
        self._report(done, total)
        for direction, end in ((1, last), (-1, first)):
            previous, k = key_mask, key + direction
            while (k - end) * direction <= 0:
                slice_box = mask_box(previous, self.margin)
                if slice_box is None:
                    break
                previous = self._segment(k, slice_box, direction, end)
                done += 1
                self._report(done, total)
                k += direction
        self.last_timings["total"] = time.perf_counter() - start + self.last_timings["preprocess"]
        return self.mask_image()

    def reset(self) -> sitk.Image:
        """Forget the box and the mask; cached slice embeddings are kept."""
        self.box, self.key_slice, self.slice_boxes = None, None, {}
        self._mask[...] = 0
        return self.mask_image()

    @property
    def slices(self) -> List[int]:
        """The k indices segmented for the current box, in ascending order."""
        return sorted(self.slice_boxes)

    def mask_array(self) -> np.ndarray:
        """The current mask as a uint8 [k, j, i] array of the image's grid."""
        return self._mask.copy()

    def mask_image(self) -> sitk.Image:
        return image_on_grid(self._mask, self.image)

    # -- internals ----------------------------------------------------------------------------------------------
    def _report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)

    def _segment(self, k: int, slice_box: np.ndarray, direction: int, last: int) -> np.ndarray:
        """Decode slice k with a box in slice pixels; writes and returns its H x W mask."""
        import torch

        embedding = self._embedding(k, direction, last)
        height, width = self._volume.shape[1:]
        timer = time.perf_counter()
        box = box_to_input(slice_box, height, width, self.input_size)[None]  # float64, then float32 as the official
        boxes = torch.as_tensor(box, dtype=torch.float, device=self._device)
        with torch.inference_mode(), autocast(self._device, self.precision):
            logits = self.model.decode_boxes(embedding, boxes)
        mask = logits_to_mask(logits, height, width)[0]
        self.last_timings["decoder"] += time.perf_counter() - timer
        self._mask[k] = mask
        self.slice_boxes[k] = slice_box
        return mask

    def _embedding(self, k: int, direction: int, last: int):
        """The cached embedding of slice k; when missing, k and the next slices toward `last` (up to batch_size
        uncached ones) are encoded in one forward."""
        if k not in self._embeddings:
            import torch

            todo = [s for s in range(k, last + direction, direction) if s not in self._embeddings][: self.batch_size]
            timer = time.perf_counter()
            inputs = torch.cat([slice_to_input(self._volume[s], self.input_size) for s in todo]).to(self._device)
            self.last_timings["preprocess"] += time.perf_counter() - timer
            timer = time.perf_counter()
            with torch.inference_mode(), autocast(self._device, self.precision):
                embeddings = self.model.encode(inputs).float()
            for s, embedding in zip(todo, embeddings):
                self._embeddings[s] = embedding[None]
            keep = set(todo)
            for s in sorted(self._embeddings, key=lambda s: -abs(s - k)):
                if len(self._embeddings) <= max(self.max_cached_slices, len(keep)):
                    break
                if s not in keep:
                    del self._embeddings[s]
            self.last_timings["encoder"] += time.perf_counter() - timer
        return self._embeddings[k]


def check_box_inside(image: sitk.Image, box: Box) -> None:
    """PromptError unless the box overlaps the image."""
    if not isinstance(box, Box):
        raise PromptError("not a box: %r" % (box,))
    box.index_bounds(image)
