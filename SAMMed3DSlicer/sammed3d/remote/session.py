"""RemoteSession: :class:`sammed3d.InteractiveSession`'s API, computed by a `sammed3d serve` server.

The client keeps the session's state (clicks, redo history, seed) and a copy of the mask; the server computes and
answers with the patch of the mask that changed. Nothing is uploaded until the first computation, and an image the
server already holds (same content hash) is not uploaded again.

Recovery: when the server lost the session (restarted, evicted, expired: HTTP 404) or its state differs from ours
(a request that timed out but was applied: 409), the session is opened again (re-uploading the image if needed) and
our clicks are replayed; the caller sees only the result. When the server cannot be reached the call raises
:class:`~sammed3d.remote.client.RemoteError` and the session (clicks and mask) stays exactly as before.
"""
from __future__ import annotations

import time
from typing import Dict, Iterable, List, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import PromptError
from ..image_io import image_on_grid, validate_image
from .client import RemoteError, ServerConnection
from .wire import WireError, apply_patch, encode_volume, pack_mask, sendable, volume_hash

_KEEP = object()


def _as_click(click):
    point, positive = click
    ras = tuple(float(v) for v in np.asarray(point, dtype=float).reshape(3))
    return ras, bool(positive)


def _check_clicks_inside(image: sitk.Image, clicks) -> None:
    from ..geometry import inside_index_bounds, ras_to_index

    for ras, _ in clicks:
        if not np.all(np.isfinite(ras)):
            raise PromptError("a point has a non-finite coordinate: %r" % (ras,))
        if not inside_index_bounds(ras_to_index(image, np.asarray(ras)), image.GetSize()):
            raise PromptError("point R=%.1f A=%.1f S=%.1f mm is outside the image" % tuple(ras))


def _wire_clicks(clicks) -> list:
    return [[list(ras), positive] for ras, positive in clicks]


class RemoteSession(object):
    """Clicks -> mask for one object in one image, computed by a server. Not thread-safe (one thread at a time).

    connection: a :class:`~sammed3d.remote.client.ServerConnection` (see :func:`sammed3d.remote.connect`);
    image, mapping, max_rois, precision: as :class:`sammed3d.InteractiveSession`.
    """

    def __init__(self, connection: ServerConnection, image: sitk.Image, mapping: str = "linear", max_rois: int = 1,
                 precision: str = "fp32") -> None:
        self.connection = connection
        self.image = validate_image(image)
        self.mapping = mapping
        self.max_rois = max(1, int(max_rois))
        self.precision = precision
        self._shape = tuple(image.GetSize())[::-1]
        self._hash = None  # type: Optional[str]
        self._session_id = None  # type: Optional[str]
        self._version = None  # type: Optional[int]
        self._seed = None  # type: Optional[np.ndarray]
        self._clicks = []  # type: List
        self._redo = []  # type: List
        self._mask = np.zeros(self._shape, dtype=np.uint8)
        self.last_timings = {}  # type: Dict[str, float]
        self.roi_count = 0  # ROIs the server computed the current mask in
        self.box = None  # the last box given to a MedSAM server (sammed3d.prompts.Box)

    # -- InteractiveSession's API --------------------------------------------------------------------------------
    @property
    def clicks(self):
        return list(self._clicks)

    def add_point(self, point_ras, positive: bool = True) -> sitk.Image:
        click = _as_click((point_ras, positive))
        _check_clicks_inside(self.image, [click])
        payload = {"point": list(click[0]), "positive": click[1]}
        return self._run("points", payload, self._clicks + [click], [])

    def set_clicks(self, clicks: Iterable) -> sitk.Image:
        clicks = [_as_click(c) for c in clicks]
        _check_clicks_inside(self.image, clicks)
        return self._run("clicks", {"clicks": _wire_clicks(clicks)}, clicks, [])

    @property
    def takes_boxes(self) -> bool:
        """True when the server runs MedSAM (box prompts), False for SAM-Med3D (clicks)."""
        return (self.connection.info or {}).get("family") == "medsam"

    def set_box(self, box) -> sitk.Image:
        """A box prompt (:class:`sammed3d.prompts.Box`, RAS mm): MedSAM on the server segments its slices; a
        SAM-Med3D server gets a positive click at its centre (replacing the clicks), as InteractiveSession.set_box."""
        from ..prompts import Box

        box = box if isinstance(box, Box) else Box(*box)
        if not self.takes_boxes:
            return self.set_clicks([(box.centre_point(self.image).ras, True)])
        box.index_bounds(self.image)  # PromptError before any request when the box misses the image
        start = time.perf_counter()
        timings = {"upload": 0.0}
        payload = {"corner1": list(box.corner1), "corner2": list(box.corner2), "full": True, "force": True}
        for attempt in (1, 2):
            if self._session_id is None:
                self._open(None, timings)
            try:
                answer = self._call("box", payload)
                break
            except RemoteError as error:
                if error.code != "unknown_session" or attempt == 2:
                    raise
                self._session_id = None  # restarted, evicted or expired: open it again, once
        mask = np.zeros(self._shape, dtype=np.uint8)
        try:
            apply_patch(mask, answer.get("patch") or {})
        except (WireError, TypeError, ValueError) as error:
            raise RemoteError("the server's answer is malformed (%s)" % error) from None
        self._mask, self._version, self.box = mask, int(answer["version"]), box
        self._clicks, self._redo = [], []
        timings.update({k: float(v) for k, v in (answer.get("timings") or {}).items()})
        timings["round_trip"] = time.perf_counter() - start
        self.last_timings = timings
        return self.mask_image()

    def undo(self) -> sitk.Image:
        if not self._clicks:
            return self.mask_image()
        return self._run("undo", {}, self._clicks[:-1], self._redo + [self._clicks[-1]])

    def redo(self) -> sitk.Image:
        if not self._redo:
            return self.mask_image()
        return self._run("redo", {}, self._clicks + [self._redo[-1]], self._redo[:-1])

    def reset(self) -> sitk.Image:
        """Forget clicks, box, redo history and seed (the server keeps the image and its cached embeddings)."""
        self.box = None
        return self._run("reset", {}, [], [], seed=None)

    def seed(self, mask: Optional[sitk.Image]) -> None:
        """Start from an existing mask (same grid as the image); replays the current clicks on top of it."""
        if mask is None:
            seed = None
        else:
            if mask.GetSize() != self.image.GetSize():
                raise PromptError("the seed mask's size %s differs from the image's %s"
                                  % (mask.GetSize(), self.image.GetSize()))
            seed = (sitk.GetArrayFromImage(mask) > 0).astype(np.uint8)
        self._run("seed", {"mask": None if seed is None else pack_mask(seed)}, self._clicks, self._redo, seed=seed)

    def mask_array(self) -> np.ndarray:
        """The current mask as a uint8 [k, j, i] array of the image's grid."""
        return self._mask.copy()

    def mask_image(self) -> sitk.Image:
        return image_on_grid(self._mask, self.image)

    def close(self) -> None:
        """Tell the server the session is no longer needed (best effort)."""
        if self._session_id is not None:
            try:
                self.connection.request("DELETE", "/sessions/%s" % self._session_id, ok=(200, 204, 404))
            except RemoteError:
                pass
            self._session_id = None

    # -- protocol --------------------------------------------------------------------------------------------------
    def _run(self, op: str, payload: Dict, clicks: List, redo: List, seed=_KEEP) -> sitk.Image:
        """Do `op` on the server; on success the session holds `clicks`, `redo`, `seed` and the server's mask.

        Any failure raises before the session changes (clicks, redo history, seed and mask stay as they were).
        """
        start = time.perf_counter()
        timings = {"upload": 0.0}
        seed = self._seed if seed is _KEEP else seed
        fresh = self._session_id is None
        if fresh and not clicks:  # nothing to compute: the mask is the seed (no upload for that)
            self._mask = seed.copy() if seed is not None else np.zeros(self._shape, dtype=np.uint8)
            self._clicks, self._redo, self._seed, self.roi_count = [], list(redo), seed, 0
            self.last_timings = {"upload": 0.0, "round_trip": time.perf_counter() - start}
            return self.mask_image()
        if fresh:
            self._open(seed, timings)
        try:
            # a session whose state we do not hold yet (just opened) answers with its whole mask
            answer = self._call(op, dict(payload, full=self._version is None))
        except RemoteError as error:
            if error.code == "unknown_session":  # restarted, evicted or expired: open it again
                self._open(seed, timings)
            elif error.code != "version_conflict":
                raise
            answer = None
        if answer is None or self._answer_clicks(answer) != clicks:
            # The server's state differs from ours: replay our clicks (cached embeddings make this cheap).
            answer = self._call("clicks", {"clicks": _wire_clicks(clicks), "full": True, "force": True})
            if self._answer_clicks(answer) != clicks:
                raise RemoteError("the server holds other clicks than were sent; try again")
        mask = self._mask if answer.get("base_version") is not None else np.zeros(self._shape, dtype=np.uint8)
        try:
            apply_patch(mask, answer.get("patch") or {})
        except (WireError, TypeError, ValueError) as error:
            raise RemoteError("the server's answer is malformed (%s)" % error) from None
        self._mask, self._version = mask, int(answer["version"])
        self._clicks, self._redo, self._seed = list(clicks), list(redo), seed
        self.roi_count = int(answer.get("rois") or 0)
        timings.update({k: float(v) for k, v in (answer.get("timings") or {}).items()})
        timings["round_trip"] = time.perf_counter() - start
        self.last_timings = timings
        return self.mask_image()

    def _call(self, op: str, payload: Dict) -> Dict:
        payload = dict(payload, max_rois=self.max_rois)
        if not payload.pop("force", False) and self._version is not None:
            payload["if_version"] = self._version
        _, answer = self.connection.request("POST", "/sessions/%s/%s" % (self._session_id, op), payload)
        return answer

    @staticmethod
    def _answer_clicks(answer: Dict) -> List:
        try:
            return [_as_click(c) for c in answer.get("clicks", [])]
        except (TypeError, ValueError):
            raise RemoteError("the server's answer is malformed (clicks)") from None

    def _open(self, seed: Optional[np.ndarray], timings: Dict) -> None:
        """Upload the image unless the server has it, and open a session on it (seeded with `seed`)."""
        start = time.perf_counter()
        upload = sendable(self.image)
        if self._hash is None:
            self._hash = volume_hash(upload)
        status, _ = self.connection.request("GET", "/volumes/%s" % self._hash, ok=(200, 404))
        if status == 404:
            digest, body = encode_volume(upload)
            self.connection.request("PUT", "/volumes/%s" % digest, body=body)
        timings["upload"] += time.perf_counter() - start
        payload = {"volume": self._hash, "mapping": self.mapping, "max_rois": self.max_rois,
                   "precision": self.precision, "seed": None if seed is None else pack_mask(seed)}
        try:
            _, answer = self.connection.request("POST", "/sessions", payload)
        except RemoteError as error:
            if error.code != "unknown_volume":
                raise
            # evicted between the two requests: send it again, once
            digest, body = encode_volume(upload)
            self.connection.request("PUT", "/volumes/%s" % digest, body=body)
            _, answer = self.connection.request("POST", "/sessions", payload)
        self._session_id, self._version = answer["session"], None  # our mask is not this session's yet

    def __repr__(self):
        return "RemoteSession(%s, %d clicks)" % (self.connection.url, len(self._clicks))

