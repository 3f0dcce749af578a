"""JSON bodies of the server's requests (validated by pydantic: a malformed body is a 422, never a crash)."""
from typing import Annotated, List, Literal, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field

Finite = Annotated[float, Field(allow_inf_nan=False)]
Point = Annotated[List[Finite], Field(min_length=3, max_length=3, description="R, A, S in mm (the image's frame)")]
Click = Tuple[Point, bool]
VolumeKey = Annotated[str, Field(pattern="^[0-9a-f]{64}$", description="SHA-256 of the volume (see the wire format)")]
#: Clicks one session may hold.
MAX_CLICKS = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenSession(_Body):
    volume: VolumeKey
    mapping: Literal["linear", "official"] = "linear"
    max_rois: int = Field(1, ge=1, le=64)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    seed: Optional[str] = Field(None, description="a mask of the volume's grid: base64 zlib bit-packed [k, j, i]")


class Edit(_Body):
    if_version: Optional[int] = Field(None, description="refuse (409) unless the session is at this version")
    full: bool = Field(False, description="answer with the whole mask (a patch from an empty mask)")
    max_rois: Optional[int] = Field(None, ge=1, le=64)


class SetClicks(Edit):
    clicks: List[Click] = Field(..., max_length=MAX_CLICKS)


class AddPoint(Edit):
    point: Point
    positive: bool = True


class SetSeed(Edit):
    mask: Optional[str] = Field(None, description="base64 zlib bit-packed [k, j, i] mask, or null for none")


class SetBox(Edit):
    corner1: Point = Field(..., description="one corner of the box, R, A, S in mm")
    corner2: Point = Field(..., description="the opposite corner, R, A, S in mm")
