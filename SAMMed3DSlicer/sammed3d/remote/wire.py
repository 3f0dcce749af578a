"""The wire format shared by `sammed3d serve` and its clients: volumes, masks and mask patches as bytes.

Needs only numpy, SimpleITK and the standard library (the client side runs where PyTorch is not installed).

* A **volume** travels once, as ``MAGIC | uint32 header length | JSON header | zlib chunks``: the voxels, byte-shuffled,
  cut in ``chunk_bytes`` pieces compressed independently (on several cores); the header holds the size (i, j, k), the
  voxel type, the LPS geometry and the compressed length of each chunk. Its **content hash** (SHA-256 of the
  canonical header and the raw voxels) names it on the server, so a volume already there is never sent again.
* A **mask** is uint8 0/1 in the image's [k, j, i] order; it travels bit-packed and zlib-compressed. A **patch** is
  the new content of the mask inside a box ``[k0, j0, i0, k1, j1, i1]`` (end exclusive): every answer of the server
  is the patch covering what changed, never the whole volume.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import SamMed3DError

MAGIC = b"SM3DVOL1"
#: Voxel types a volume may have on the wire (little-endian).
DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")


class WireError(SamMed3DError, ValueError):
    """Bytes or fields that do not describe a valid volume, mask or patch (a one-line reason)."""


# ---- volumes ---------------------------------------------------------------------------------------------------
def sendable(image: sitk.Image) -> sitk.Image:
    """`image`, or a float32 copy when its voxel type cannot travel (64-bit integers; the model reads float32)."""
    if np.dtype(sitk.GetArrayViewFromImage(image).dtype).name in DTYPES:
        return image
    return sitk.Cast(image, sitk.sitkFloat32)


def volume_header(image: sitk.Image) -> Dict:
    """The JSON-able description of a 3D scalar SimpleITK image: size (i, j, k), dtype, LPS geometry."""
    dtype = np.dtype(sitk.GetArrayViewFromImage(image).dtype).newbyteorder("<")
    if dtype.name not in DTYPES:
        raise WireError("voxel type %s cannot be sent (use one of %s)" % (dtype.name, ", ".join(DTYPES)))
    return {
        "size": [int(n) for n in image.GetSize()],
        "dtype": dtype.name,
        "spacing": [float(v) for v in image.GetSpacing()],
        "origin": [float(v) for v in image.GetOrigin()],
        "direction": [float(v) for v in image.GetDirection()],
    }


def _canonical(header: Dict) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _voxels_le(image: sitk.Image) -> np.ndarray:
    voxels = sitk.GetArrayViewFromImage(image)
    return np.ascontiguousarray(voxels, dtype=voxels.dtype.newbyteorder("<"))


def volume_hash(image: sitk.Image) -> str:
    """SHA-256 (hex) of the canonical header and the raw little-endian voxels: the volume's name on a server."""
    digest = hashlib.sha256(_canonical(volume_header(image)))
    digest.update(memoryview(_voxels_le(image)).cast("B"))
    return digest.hexdigest()


def _shuffle(raw: np.ndarray) -> bytes:
    """Group the bytes of each significance together (HDF5's shuffle filter): CT voxels compress 2-3x better."""
    if raw.dtype.itemsize == 1:
        return raw.tobytes()
    return raw.reshape(-1).view(np.uint8).reshape(-1, raw.dtype.itemsize).T.tobytes()


def _unshuffle(data: bytes, dtype: np.dtype, count: int) -> np.ndarray:
    planes = np.frombuffer(data, dtype=np.uint8)
    if dtype.itemsize == 1:
        return planes.view(dtype)
    return planes.reshape(dtype.itemsize, count).T.copy().view(dtype).reshape(count)


#: Raw bytes per independently compressed chunk: chunks are (de)compressed on several cores (zlib frees the GIL).
CHUNK_BYTES = 1 << 20


def _pool_map(function, items):
    items = list(items)
    workers = min(8, os.cpu_count() or 1, len(items))
    if workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))


def encode_volume(image: sitk.Image, level: int = 1) -> Tuple[str, bytes]:
    """(content hash, upload body) for a 3D scalar image."""
    header = volume_header(image)
    raw = _voxels_le(image)
    digest = hashlib.sha256(_canonical(header))
    digest.update(memoryview(raw).cast("B"))
    shuffled = memoryview(_shuffle(raw))
    pieces = _pool_map(lambda start: zlib.compress(shuffled[start:start + CHUNK_BYTES], level),
                       range(0, len(shuffled), CHUNK_BYTES))
    head = _canonical(dict(header, chunks=[len(piece) for piece in pieces], chunk_bytes=CHUNK_BYTES))
    return digest.hexdigest(), b"".join([MAGIC, struct.pack("<I", len(head)), head] + pieces)


def _check_geometry(header: Dict, max_voxels: int) -> Tuple[Tuple[int, int, int], np.dtype]:
    if not isinstance(header, dict):
        raise WireError("the volume header is not a JSON object")
    try:
        size = tuple(int(n) for n in header["size"])
        dtype = str(header["dtype"])
        spacing = [float(v) for v in header["spacing"]]
        origin = [float(v) for v in header["origin"]]
        direction = [float(v) for v in header["direction"]]
    except (KeyError, TypeError, ValueError, OverflowError):
        raise WireError("the volume header needs size, dtype, spacing, origin and direction") from None
    if len(size) != 3 or len(spacing) != 3 or len(origin) != 3 or len(direction) != 9:
        raise WireError("a 3D volume needs 3 sizes, 3 spacings, 3 origin values and 9 direction values")
    if dtype not in DTYPES:
        raise WireError("voxel type %r is not supported (use one of %s)" % (dtype, ", ".join(DTYPES)))
    if min(size) < 2:
        raise WireError("a 3D volume needs at least 2 voxels per axis, got size %s" % (size,))
    if math.prod(size) > max_voxels:
        raise WireError("the volume has %d voxels; this server accepts at most %d" % (math.prod(size), max_voxels))
    values = spacing + origin + direction
    if not all(math.isfinite(v) for v in values):
        raise WireError("the volume geometry has a non-finite value")
    if min(spacing) <= 0:
        raise WireError("the volume spacing must be positive, got %s" % (spacing,))
    if abs(np.linalg.det(np.reshape(direction, (3, 3)))) < 1e-6:
        raise WireError("the volume direction matrix is singular")
    return size, np.dtype(dtype).newbyteorder("<")


def decode_volume(body: bytes, expected_hash: Optional[str] = None, max_voxels: int = 1024 ** 3) -> sitk.Image:
    """The image an upload body describes; WireError for anything malformed, too large or not matching the hash.

    Never inflates more bytes than the header declares (no decompression bomb).
    """
    body = bytes(body)
    if len(body) < len(MAGIC) + 4 or not body.startswith(MAGIC):
        raise WireError("not a sammed3d volume (bad magic bytes)")
    (length,) = struct.unpack("<I", body[len(MAGIC):len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if length > 65536 or start + length > len(body):
        raise WireError("the volume header length is invalid")
    try:
        header = json.loads(body[start:start + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WireError("the volume header is not valid JSON") from None
    size, dtype = _check_geometry(header, max_voxels)
    count = math.prod(size)
    expected_bytes = count * dtype.itemsize
    data = memoryview(body)[start + length:]
    try:
        chunk_bytes = int(header.get("chunk_bytes", expected_bytes))
        lengths = [int(n) for n in header.get("chunks", [len(data)])]
    except (TypeError, ValueError):
        raise WireError("the volume header's chunk list is invalid") from None
    expected_chunks = max(1, -(-expected_bytes // max(chunk_bytes, 1)))
    if chunk_bytes < 1 or len(lengths) != expected_chunks or min(lengths) < 0 or sum(lengths) != len(data):
        raise WireError("the volume header's chunk list does not match the voxel data")
    offsets = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    raws = _pool_map(lambda i: _inflate(data[offsets[i]:offsets[i + 1]],
                                        min(chunk_bytes, expected_bytes - i * chunk_bytes)), range(len(lengths)))
    voxels = _unshuffle(b"".join(raws), dtype, count).reshape(size[::-1])
    if voxels.dtype.kind == "f" and not np.all(np.isfinite(voxels)):
        raise WireError("the volume holds non-finite voxel values")
    clean = {key: header[key] for key in ("size", "dtype", "spacing", "origin", "direction")}
    if expected_hash is not None:
        digest = hashlib.sha256(_canonical(clean))
        digest.update(memoryview(np.ascontiguousarray(voxels)).cast("B"))
        if digest.hexdigest() != expected_hash:
            raise WireError("the volume's content does not match its hash (corrupted upload?)")
    image = sitk.GetImageFromArray(voxels.astype(voxels.dtype.newbyteorder("="), copy=False))
    image.SetSpacing([float(v) for v in clean["spacing"]])
    image.SetOrigin([float(v) for v in clean["origin"]])
    image.SetDirection([float(v) for v in clean["direction"]])
    return image


def _inflate(piece, expected: int) -> bytes:
    """Decompress one chunk that must inflate to exactly `expected` bytes (never more are produced)."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(piece, expected)
        leftover = inflater.unconsumed_tail or not inflater.eof
    except zlib.error:
        raise WireError("the voxel data is not valid zlib data") from None
    if len(raw) != expected or leftover:
        raise WireError("the voxel data holds %s bytes, the header declares %d"
                        % ("more" if len(raw) == expected else len(raw), expected))
    return raw


# ---- masks and patches ---------------------------------------------------------------------------------------
def pack_mask(mask: np.ndarray) -> str:
    """A 0/1 array (any shape) -> base64 text of zlib(bit-packed voxels)."""
    bits = np.packbits(np.asarray(mask, dtype=bool).reshape(-1))
    return base64.b64encode(zlib.compress(bits.tobytes(), 1)).decode("ascii")


def unpack_mask(text: str, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`pack_mask` for a known shape; WireError if the text does not hold exactly that."""
    shape = tuple(int(n) for n in shape)
    count = math.prod(shape)
    expected = (count + 7) // 8
    try:
        packed = base64.b64decode(text.encode("ascii") if isinstance(text, str) else text, validate=True)
        inflater = zlib.decompressobj()
        bits = inflater.decompress(packed, expected)
        extra = inflater.unconsumed_tail or not inflater.eof
    except (ValueError, zlib.error, UnicodeEncodeError, AttributeError, TypeError):
        raise WireError("the mask is not base64 zlib data") from None
    if len(bits) != expected or extra:
        raise WireError("the mask does not hold %d voxels" % count)
    return np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=count).reshape(shape)


def changed_box(old: Optional[np.ndarray], new: np.ndarray) -> Optional[Tuple[int, ...]]:
    """The bounding box [k0, j0, i0, k1, j1, i1) of the voxels where `old` and `new` differ (None: no change).

    `old` None means an all-zero mask (the box of `new`'s foreground).
    """
    diff = new.astype(bool) if old is None else (old != new)
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(diff.any(axis=others))
        if hit.size == 0:
            return None
        box.append((int(hit[0]), int(hit[-1]) + 1))
    return tuple(b[0] for b in box) + tuple(b[1] for b in box)


def make_patch(old: Optional[np.ndarray], new: np.ndarray) -> Dict:
    """{"box": [k0, j0, i0, k1, j1, i1] or None, "mask": packed content of `new` in the box}."""
    box = changed_box(old, new)
    if box is None:
        return {"box": None, "mask": None}
    region = new[box[0]:box[3], box[1]:box[4], box[2]:box[5]]
    return {"box": list(box), "mask": pack_mask(region)}


def apply_patch(mask: np.ndarray, patch: Dict) -> None:
    """Write a patch into `mask` in place; the patch is fully decoded and checked before anything is written."""
    box = patch.get("box")
    if box is None:
        return
    if len(box) != 6:
        raise WireError("a patch box has 6 values")
    box = [int(v) for v in box]
    lo, hi = box[:3], box[3:]
    if any(a < 0 or a >= b or b > n for a, b, n in zip(lo, hi, mask.shape)):
        raise WireError("the patch box %s is outside the mask %s" % (box, mask.shape))
    region = unpack_mask(patch.get("mask"), [b - a for a, b in zip(lo, hi)])
    mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = region
