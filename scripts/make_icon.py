"""Draw the extension / module icon (128 x 128 RGBA PNG) with numpy and zlib only.

A segmented blob on a dark rounded tile, with a green (positive) and a red (negative) point.
Usage: python scripts/make_icon.py   (writes SAMMed3DSlicer.png and SAMMed3DSlicer/Resources/Icons/SAMMed3DSlicer.png)
"""
import struct
import zlib
from pathlib import Path

import numpy as np

SIZE = 128
ROOT = Path(__file__).resolve().parents[1]


def png_bytes(rgba):
    """Encode an (H, W, 4) uint8 array as PNG."""
    height, width, _ = rgba.shape
    raw = b"".join(b"\x00" + rgba[row].tobytes() for row in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def draw():
    y, x = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    image = np.zeros((SIZE, SIZE, 4), dtype=float)

    def paint(mask, color, alpha=1.0):
        mask = np.clip(mask, 0, 1)[..., None] * alpha
        image[..., :3] = image[..., :3] * (1 - mask) + np.array(color, dtype=float) * mask
        image[..., 3:] = np.maximum(image[..., 3:], mask)

    def soft(distance):  # anti-aliased inside test from a signed distance
        return np.clip(0.5 - distance, 0, 1)

    # Rounded tile.
    corner = 18.0
    qx, qy = np.abs(x - 64) - (60 - corner), np.abs(y - 64) - (60 - corner)
    tile = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - corner
    paint(soft(tile), (24, 38, 66))
    # Grey "slice" ellipse (the image) and the segmented blob (orange) with a light rim.
    paint(soft(np.hypot((x - 64) / 48, (y - 66) / 40) * 44 - 44), (70, 84, 108))
    blob = np.hypot((x - 58) / 30, (y - 70) / 24) + 0.12 * np.sin(np.arctan2(y - 70, x - 58) * 3)
    paint(soft((blob - 1) * 26), (250, 250, 250))
    paint(soft((blob - 0.9) * 26), (242, 140, 40))
    # Positive (green) and negative (red) points with white rings.
    for cx, cy, color in ((56, 70, (40, 200, 70)), (100, 38, (225, 45, 45))):
        distance = np.hypot(x - cx, y - cy)
        paint(soft(distance - 11), (255, 255, 255))
        paint(soft(distance - 8), color)
    # "+" and "-" marks.
    paint(soft(np.maximum(np.abs(x - 56) - 4.5, np.abs(y - 70) - 1.2)), (255, 255, 255))
    paint(soft(np.maximum(np.abs(x - 56) - 1.2, np.abs(y - 70) - 4.5)), (255, 255, 255))
    paint(soft(np.maximum(np.abs(x - 100) - 4.5, np.abs(y - 38) - 1.2)), (255, 255, 255))
    return np.clip(np.rint(np.concatenate([image[..., :3], image[..., 3:] * 255], axis=-1)), 0, 255).astype(np.uint8)


def main():
    data = png_bytes(draw())
    for path in (ROOT / "SAMMed3DSlicer.png", ROOT / "SAMMed3DSlicer" / "Resources" / "Icons" / "SAMMed3DSlicer.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print("wrote", path)


if __name__ == "__main__":
    main()
