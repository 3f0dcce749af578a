"""What the server holds: uploaded volumes (with their ROIs and cached embeddings) and the sessions opened on them.

Least recently used first out: beyond ``max_sessions`` sessions, or beyond the memory budget (voxels, ROIs,
embeddings, session masks), the least recently used session or session-less volume is dropped; sessions and volumes
idle longer than ``ttl`` seconds expire. A client whose session is gone gets HTTP 404 and opens it again (the
:class:`sammed3d.remote.RemoteSession` does that by itself, replaying its clicks).

Sessions belong to the client that opened them (its ``X-Client-Id``); another client gets 404 for them. Thread-safe:
one lock guards the tables; the sessions themselves are used by the single inference worker.
"""
import secrets
import threading
import time
from collections import OrderedDict
from typing import Callable, Dict, List, Optional

import numpy as np

#: Rough bytes of one 128^3 float32 ROI (the model input a volume keeps per ROI it has seen).
_ROI_BYTES = 128 ** 3 * 4


class VolumeEntry(object):
    """One uploaded image, with the ROIs and embeddings its sessions share (keyed by precision)."""

    def __init__(self, key: str, image, now: float):
        self.key = key
        self.image = image
        self.size = list(image.GetSize())
        self.voxel_bytes = int(np.prod(self.size)) * image.GetSizeOfPixelComponent()
        self.rois = {}  # type: Dict
        self.embeddings = {}  # type: Dict[str, Dict]
        self.last_used = now

    def nbytes(self) -> int:
        embedding_bytes = 0
        for table in self.embeddings.values():
            for _, embedding in table.values():
                embedding_bytes += int(embedding.numel()) * embedding.element_size()
        return self.voxel_bytes + len(self.rois) * _ROI_BYTES + embedding_bytes


class SessionEntry(object):
    """One interactive session: its owner, volume, the engine session, the version and the last published mask."""

    def __init__(self, key: str, owner: str, volume: VolumeEntry, session, now: float):
        self.key = key
        self.owner = owner
        self.volume = volume
        self.session = session
        self.version = 0
        self.mask = None  # type: Optional[np.ndarray]
        self.lock = threading.Lock()
        self.last_used = now

    def nbytes(self) -> int:
        mask = 0 if self.mask is None else int(self.mask.nbytes)
        own = getattr(self.session, "_embeddings", {}) if hasattr(self.session, "slice_boxes") else {}
        # a MedSAM session caches its own slice embeddings (SAM-Med3D's are the volume's, counted there)
        return mask + sum(int(e.numel()) * e.element_size() for e in own.values())


class Store(object):
    """Volumes by content hash, sessions by unguessable id, with LRU eviction and idle expiry."""

    def __init__(self, max_sessions: int = 64, memory_budget: int = 4 << 30, ttl: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic):
        self.max_sessions = max(1, int(max_sessions))
        self.memory_budget = int(memory_budget)
        self.ttl = float(ttl)
        self.clock = clock
        self._lock = threading.RLock()
        self._volumes = OrderedDict()  # type: OrderedDict[str, VolumeEntry]
        self._sessions = OrderedDict()  # type: OrderedDict[str, SessionEntry]
        self.evicted = {"sessions": 0, "volumes": 0, "expired_sessions": 0, "expired_volumes": 0}

    # ---- volumes ---------------------------------------------------------------------------------------------------
    def volume(self, key: str) -> Optional[VolumeEntry]:
        with self._lock:
            self.expire()
            entry = self._volumes.get(key)
            if entry is not None:
                entry.last_used = self.clock()
                self._volumes.move_to_end(key)
            return entry

    def add_volume(self, key: str, image) -> VolumeEntry:
        with self._lock:
            entry = self._volumes.get(key)
            if entry is None:
                entry = self._volumes[key] = VolumeEntry(key, image, self.clock())
            entry.last_used = self.clock()
            self._volumes.move_to_end(key)
            self.enforce(keep=entry)
            return entry

    # ---- sessions --------------------------------------------------------------------------------------------------
    def open_session(self, owner: str, volume: VolumeEntry, session) -> SessionEntry:
        with self._lock:
            key = secrets.token_urlsafe(24)
            entry = self._sessions[key] = SessionEntry(key, owner, volume, session, self.clock())
            volume.last_used = entry.last_used
            self.enforce(keep=entry)
            return entry

    def session(self, owner: str, key: str) -> Optional[SessionEntry]:
        """The owner's session `key` (None if unknown, expired, evicted or another client's)."""
        with self._lock:
            self.expire()
            entry = self._sessions.get(key)
            if entry is None or not secrets.compare_digest(entry.owner, owner):
                return None
            entry.last_used = entry.volume.last_used = self.clock()
            self._sessions.move_to_end(key)
            if entry.volume.key in self._volumes:
                self._volumes.move_to_end(entry.volume.key)
            return entry

    def drop_session(self, owner: str, key: str) -> bool:
        with self._lock:
            entry = self._sessions.get(key)
            if entry is None or not secrets.compare_digest(entry.owner, owner):
                return False
            del self._sessions[key]
            return True

    # ---- eviction --------------------------------------------------------------------------------------------------
    def memory(self) -> int:
        """Estimated bytes held: volumes (voxels, ROIs, embeddings) and session masks."""
        with self._lock:
            return sum(v.nbytes() for v in self._volumes.values()) + sum(s.nbytes() for s in self._sessions.values())

    def counts(self) -> Dict[str, int]:
        with self._lock:
            return {"volumes": len(self._volumes), "sessions": len(self._sessions)}

    def expire(self) -> None:
        """Drop sessions idle for more than ``ttl`` s, then volumes idle that long with no session left."""
        with self._lock:
            limit = self.clock() - self.ttl
            for key in [k for k, s in self._sessions.items() if s.last_used < limit]:
                del self._sessions[key]
                self.evicted["expired_sessions"] += 1
            used = set(s.volume.key for s in self._sessions.values())
            for key in [k for k, v in self._volumes.items() if v.last_used < limit and k not in used]:
                del self._volumes[key]
                self.evicted["expired_volumes"] += 1

    def enforce(self, keep=None) -> None:
        """Evict least recently used sessions beyond ``max_sessions``, then sessions or session-less volumes (least
        recently used first) while the memory estimate exceeds the budget; `keep` is never evicted."""
        with self._lock:
            while len(self._sessions) > self.max_sessions:
                key = next(k for k, s in self._sessions.items() if s is not keep)
                del self._sessions[key]
                self.evicted["sessions"] += 1
            while self.memory() > self.memory_budget:
                candidates = self._eviction_candidates(keep)
                if not candidates:
                    break
                victim = min(candidates, key=lambda entry: entry.last_used)
                if isinstance(victim, SessionEntry):
                    del self._sessions[victim.key]
                    self.evicted["sessions"] += 1
                else:
                    del self._volumes[victim.key]
                    self.evicted["volumes"] += 1

    def _eviction_candidates(self, keep) -> List:
        used = set(s.volume.key for s in self._sessions.values())
        sessions = [s for s in self._sessions.values() if s is not keep]
        keep_volume = keep.volume if isinstance(keep, SessionEntry) else keep
        volumes = [v for k, v in self._volumes.items() if k not in used and v is not keep_volume]
        return sessions + volumes
