"""An interactive segmentation session on one image: clicks in, mask on the image's own grid out.

The official protocol: the first click centres a 128^3, 1.5 mm ROI whose embedding is computed once and cached;
each later click inside it runs only the prompt encoder and mask decoder, with all clicks so far and the previous
low-res logits as the mask prompt. Clicks outside every ROI open a new one (its mask prompt: the mask so far), and
objects that reach an ROI face where the image goes on are followed into neighbour ROIs (see :mod:`.tiles`).

The session's state is the list of clicks (plus an optional seed mask); everything else is derived from it. An
appended click is applied incrementally; any other change (undo, redo, an edited point list) replays the clicks
from the start with the cached embeddings, which gives exactly the same result as clicking them one by one.
"""
from __future__ import annotations

import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from . import tiles as tiling
from .devices import autocast
from .errors import PromptError
from .geometry import inside_index_bounds, ras_to_index
from .image_io import image_on_grid, validate_image
from .roi import Roi, extract_roi

Click = Tuple[Tuple[float, float, float], bool]  # (RAS mm in the image's physical frame, positive?)


def _as_click(click) -> Click:
    from .prompts import Point

    if isinstance(click, Point):
        return click.ras, click.positive
    point, positive = click
    ras = tuple(float(v) for v in np.asarray(point, dtype=float).reshape(3))
    return ras, bool(positive)


def check_clicks_inside(image: sitk.Image, clicks: Sequence[Click]) -> None:
    """PromptError unless every click is finite and inside the image."""
    for ras, _ in clicks:
        if not np.all(np.isfinite(ras)):
            raise PromptError("a point has a non-finite coordinate: %r" % (ras,))
        if not inside_index_bounds(ras_to_index(image, np.asarray(ras)), image.GetSize()):
            raise PromptError("point R=%.1f A=%.1f S=%.1f mm is outside the image" % tuple(ras))


class InteractiveSession:
    """Clicks -> mask for one object in one image. Not thread-safe: use one session per thread at a time.

    model: a SAM-Med3D from :func:`sammed3d.load_model`; image: a 3D SimpleITK image (any orientation, spacing);
    mapping: "linear" (smooth, default), "official" (ITK nearest neighbour of the 1.5 mm mask, as the current
    official release) or "cvpr25" (index-space nearest, as the older CVPR25 branch), see :mod:`sammed3d.mapping`;
    max_rois: how many ROIs one object may span: 1 (default) is the official single ROI, reproducible against the
    official code; more (e.g. 6) follow objects larger than 192 mm; precision: "fp32", "bf16", "fp16";
    roi_cache / embedding_cache: dicts to share with other sessions on the same image (ROIs depend only on the image;
    embeddings on the image, the model and the precision), e.g. a server's sessions on one uploaded volume.
    """

    def __init__(self, model, image: sitk.Image, mapping: str = "linear", max_rois: int = 1,
                 precision: str = "fp32", roi_cache: Optional[Dict] = None,
                 embedding_cache: Optional[Dict] = None) -> None:
        self.model = model
        self.image = validate_image(image)
        self.mapping = mapping
        self.max_rois = max(1, int(max_rois))
        self.precision = precision
        self._device = model.device
        self._rois: Dict[Tuple[float, float, float], Roi] = {} if roi_cache is None else roi_cache
        self._embeddings: Dict[Tuple[int, int, int], Tuple[Roi, object]] = (
            {} if embedding_cache is None else embedding_cache)
        self._seed: Optional[np.ndarray] = None
        self._clicks: List[Click] = []
        self._redo: List[Click] = []
        self._tiles: List[tiling.Tile] = []
        self._counter = 0
        self.last_timings: Dict[str, float] = {}

    # -- public API ---------------------------------------------------------------------------------------------
    @property
    def clicks(self) -> List[Click]:
        return list(self._clicks)

    @property
    def rois(self) -> List[Roi]:
        """The ROIs the current mask was computed in (first: the one of the first click)."""
        return [tile.roi for tile in self._tiles]

    @property
    def tiles(self) -> List[tiling.Tile]:
        """The ROI tiles behind the current mask (ROI, embedding, prompts, latest low-res logits); read-only use."""
        return list(self._tiles)

    def add_point(self, point_ras, positive: bool = True) -> sitk.Image:
        """Add one click (RAS mm) and return the updated mask."""
        return self.set_clicks(self._clicks + [(point_ras, positive)])

    def set_clicks(self, clicks: Iterable) -> sitk.Image:
        """Make the session's clicks equal `clicks`; an appended click refines, anything else replays."""
        clicks = [_as_click(c) for c in clicks]
        self._check_inside(clicks)
        self._redo = []
        return self._update(clicks)

    def set_box(self, box) -> sitk.Image:
        """A box prompt (:class:`sammed3d.prompts.Box`) becomes one positive click at its centre, as the official
        CVPR25 baseline does; replaces the current clicks."""
        from .prompts import Box

        box = box if isinstance(box, Box) else Box(*box)
        return self.set_clicks([box.centre_point(self.image)])

    def undo(self) -> sitk.Image:
        if self._clicks:
            self._redo.append(self._clicks[-1])
            return self._update(self._clicks[:-1])
        return self.mask_image()

    def redo(self) -> sitk.Image:
        if self._redo:
            return self._update(self._clicks + [self._redo.pop()])
        return self.mask_image()

    def reset(self) -> sitk.Image:
        """Forget clicks, redo history and seed; cached embeddings are kept."""
        self._seed, self._redo = None, []
        return self._update([])

    def seed(self, mask: Optional[sitk.Image]) -> None:
        """Start from an existing mask (same grid as the image): it is the first mask prompt and the background
        outside the ROIs. Replays the current clicks on top of it."""
        if mask is None:
            self._seed = None
        else:
            if mask.GetSize() != self.image.GetSize():
                raise PromptError("the seed mask's size %s differs from the image's %s"
                                  % (mask.GetSize(), self.image.GetSize()))
            self._seed = (sitk.GetArrayFromImage(mask) > 0).astype(np.uint8)
        self._update(list(self._clicks), force_replay=True)

    def mask_array(self) -> np.ndarray:
        """The current mask as a uint8 [k, j, i] array of the image's grid."""
        size = self.image.GetSize()
        full = self._seed.copy() if self._seed is not None else np.zeros(size[::-1], dtype=np.uint8)
        for tile in sorted(self._tiles, key=lambda t: t.updated):
            tiling.paint(full, tile)
        return full

    def mask_image(self) -> sitk.Image:
        """The current mask as a uint8 SimpleITK image with the image's geometry."""
        return image_on_grid(self.mask_array(), self.image)

    # -- internals ----------------------------------------------------------------------------------------------
    def _check_inside(self, clicks: Sequence[Click]) -> None:
        check_clicks_inside(self.image, clicks)

    def _update(self, clicks: List[Click], force_replay: bool = False) -> sitk.Image:
        self.last_timings = {"roi": 0.0, "encoder": 0.0, "decoder": 0.0, "mapping": 0.0}
        start = time.perf_counter()
        appended = (not force_replay and len(clicks) == len(self._clicks) + 1 and clicks[:-1] == self._clicks)
        if not appended:
            self._tiles, self._counter = [], 0
            todo = clicks
        else:
            todo = clicks[-1:]
        self._clicks = list(clicks[: len(clicks) - len(todo)])
        for click in todo:
            self._apply(click)
            self._clicks.append(click)
        mask = self.mask_image()
        self.last_timings["total"] = time.perf_counter() - start
        return mask

    def _apply(self, click: Click) -> None:
        ras, positive = click
        label = 1 if positive else 0
        containing = [t for t in self._tiles if t.roi.contains(np.asarray(ras))]
        if not containing:
            tile = self._new_tile(self._roi_at(np.asarray(ras)))
            containing = [tile]
        containing.sort(key=lambda t: t.centrality(ras))  # the most central tile is painted last
        for tile in containing:
            tile.points.append((tile.roi.ras_to_index(np.asarray(ras)), label))
            self._decode(tile)
        self._expand(containing)

    def _roi_at(self, centre_ras: np.ndarray) -> Roi:
        key = tuple(np.round(np.asarray(centre_ras, dtype=float), 6))
        if key not in self._rois:
            timer = time.perf_counter()
            self._rois[key] = extract_roi(self.image, centre_ras)
            self.last_timings["roi"] += time.perf_counter() - timer
        return self._rois[key]

    def _new_tile(self, roi: Roi, anchor=None) -> tiling.Tile:
        key = tuple(int(s) for s in roi.start)
        if key in self._embeddings:
            roi, embedding = self._embeddings[key]
        else:
            timer = time.perf_counter()
            import torch

            with torch.inference_mode(), autocast(self._device, self.precision):
                embedding = self.model.encode(roi.image.to(self._device)).float()
            self.last_timings["encoder"] += time.perf_counter() - timer
            self._embeddings[key] = (roi, embedding)
        tile = tiling.Tile(roi=roi, embedding=embedding, anchor=anchor)
        # user clicks made before this tile existed that fall inside it are part of its prompts
        for ras, positive in self._clicks:
            if roi.contains(np.asarray(ras)):
                tile.points.append((roi.ras_to_index(np.asarray(ras)), 1 if positive else 0))
        self._tiles.append(tile)
        return tile

    def _decode(self, tile: tiling.Tile) -> None:
        timer = time.perf_counter()
        prompt = None
        if tile.logits is None:
            others = [t for t in self._tiles if t is not tile and t.result is not None]
            known = tiling.covered_by(tile.roi, others)
            if self._seed is not None:
                known[...] = True
            if known.any():
                prompt = tiling.mask_prompt(tile.roi, self.mask_image(), known, self._device)
        tiling.decode(self.model, tile, prompt, autocast(self._device, self.precision))
        self.last_timings["decoder"] += time.perf_counter() - timer
        timer = time.perf_counter()
        tiling.map_result(tile, self.mapping)
        self._counter += 1
        tile.updated = self._counter
        self.last_timings["mapping"] += time.perf_counter() - timer

    def _expand(self, changed: List[tiling.Tile]) -> None:
        """Follow the object into neighbour ROIs while it touches ROI faces (breadth first, up to max_rois)."""
        queue = list(changed)
        while queue and len(self._tiles) < self.max_rois:
            tile = queue.pop(0)
            for direction, start in tiling.expansion_proposals(tile):
                if len(self._tiles) >= self.max_rois:
                    break
                if any(np.max(np.abs(np.asarray(t.start) - start)) < tile.roi.size // 4 for t in self._tiles):
                    continue  # already covered by a tile there
                anchor = tiling.anchor_point(tile, direction, start)
                if anchor is None:
                    continue
                centre = tile.roi.index_to_ras(start - np.asarray(tile.start) + tile.roi.size // 2)
                roi = self._roi_at_start(centre, tile)
                if roi is None:
                    continue
                anchor = anchor + np.asarray(start) - roi.start
                neighbour = self._new_tile(roi, anchor=(anchor, 1))
                self._decode(neighbour)
                queue.append(neighbour)

    def _roi_at_start(self, centre_ras: np.ndarray, tile: tiling.Tile) -> Optional[Roi]:
        """The neighbour ROI centred at `centre_ras`; if that centre is outside the image, the ROI moved back toward
        `tile` (in quarter steps) until its centre is inside."""
        own_centre = tile.roi.index_to_ras(np.full(3, tile.roi.size // 2))
        for fraction in (1.0, 0.75, 0.5):
            try:
                return self._roi_at(own_centre + fraction * (centre_ras - own_centre))
            except PromptError:
                continue
        return None
