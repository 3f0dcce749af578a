"""Save what was annotated: the segmentation (.seg.nrrd, every segment, written by Slicer's own storage node) and,
beside it, one ``<segment name>.mrk.json`` per segment holding that segment's clicks in the order they were placed,
and one ``<segment name>.box.mrk.json`` per segment with a box (a Slicer ROI markup:
``sammed3d segment IMAGE --roi "<segment name>.box.mrk.json"`` gives it to MedSAM, or to SAM-Med3D as its centre
click).

``sammed3d segment IMAGE --points "<segment name>.mrk.json"`` then recomputes the segment: the first positive point
centres the ROI there as here, and negative points carry the description ``negative``. Every file is written to a
temporary file and moved into place, so a failed save never destroys an existing file.

Work that was never saved is not lost when a scene stops (its tab gone for the idle timeout, the server stopped):
:func:`annotation_fingerprint` tells whether anything changed since the last save, and the scene then saves the same
files into a new ``<output stem>-unsaved-<time>/`` folder beside the output (never over an existing file).
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import slicer

from sammed3d.atomic import atomic_path
from sammed3d.errors import SamMed3DError

from .output_path import SEGMENTATION_SUFFIX, check_output_path  # noqa: F401 (part of this module's interface)

MARKUPS_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                  "Schema/markups-schema-v1.0.3.json#")


def safe_file_stem(name: str) -> str:
    """A segment name usable as a file name (path separators and control characters replaced)."""
    stem = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip().strip(".")
    return stem or "Segment"


def markups_document(clicks: Sequence[tuple], name: str) -> dict:
    """A Slicer markups (point list) document; clicks are ((R, A, S), positive), written in LPS as Slicer does."""
    points = []
    for index, (ras, positive) in enumerate(clicks):
        points.append({
            "id": str(index + 1),
            "label": "+%d" % (index + 1) if positive else "-%d" % (index + 1),
            "description": "" if positive else "negative",
            "associatedNodeID": "",
            "position": [-float(ras[0]), -float(ras[1]), float(ras[2])],
            "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
            "selected": True,
            "locked": False,
            "visibility": True,
            "positionStatus": "defined",
        })
    return {"@schema": MARKUPS_SCHEMA, "markups": [{
        "type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": False,
        "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d", "lastUsedControlPointNumber": len(points),
        "controlPoints": points, "name": name,
    }]}


def roi_document(box, name: str) -> dict:
    """A Slicer markups ROI document of an axis-aligned RAS box (:class:`sammed3d.prompts.Box`), in LPS."""
    low, high = [min(a, b) for a, b in zip(box.corner1, box.corner2)], [max(a, b) for a, b in zip(box.corner1,
                                                                                                 box.corner2)]
    centre = [(a + b) / 2 for a, b in zip(low, high)]
    return {"@schema": MARKUPS_SCHEMA, "markups": [{
        "type": "ROI", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": False,
        "fixedNumberOfControlPoints": True, "labelFormat": "%N", "lastUsedControlPointNumber": 1, "name": name,
        "roiType": "Box", "center": [-centre[0], -centre[1], centre[2]],
        "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
        "size": [b - a for a, b in zip(low, high)], "insideOut": False,
        "controlPoints": [{"id": "1", "label": name, "description": "", "associatedNodeID": "",
                           "position": [-centre[0], -centre[1], centre[2]],
                           "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0], "selected": True,
                           "locked": False, "visibility": True, "positionStatus": "defined"}],
    }]}


def write_segmentation(segmentation_node, path: Path) -> None:
    """Write every segment of ``segmentation_node`` to ``path`` (.seg.nrrd) with Slicer's storage node, atomically."""
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetCropToMinimumExtent(False)  # the reference (image) grid, as `sammed3d segment` writes
    with atomic_path(path, SEGMENTATION_SUFFIX) as temporary:
        storage.SetFileName(temporary)
        if not storage.WriteData(segmentation_node):
            raise SamMed3DError("cannot write %s" % path)


def write_markups(path: Path, clicks: Sequence[tuple], name: str) -> None:
    with atomic_path(path) as temporary:
        Path(temporary).write_text(json.dumps(markups_document(clicks, name), indent=2), encoding="utf-8")


def save_annotations(segmentation_node, clicks_by_segment: Dict[str, List[tuple]], output,
                     boxes_by_segment: Optional[Dict[str, object]] = None) -> List[Path]:
    """Write the segmentation to ``output``, one .mrk.json per segment name with clicks and one .box.mrk.json per
    segment name with a box; returns the files.

    clicks_by_segment: segment name -> [((R, A, S), positive), ...] in the order they were placed;
    boxes_by_segment: segment name -> :class:`sammed3d.prompts.Box` (RAS mm) or None.
    """
    output = check_output_path(output)
    written = []
    try:
        write_segmentation(segmentation_node, output)
    except OSError as error:
        raise SamMed3DError("cannot write %s: %s" % (output, error)) from None
    written.append(output)
    for name, clicks in clicks_by_segment.items():
        if not clicks:
            continue
        path = output.parent / (safe_file_stem(name) + ".mrk.json")
        try:
            write_markups(path, clicks, name)
        except OSError as error:
            raise SamMed3DError("cannot write %s: %s" % (path, error)) from None
        written.append(path)
    for name, box in (boxes_by_segment or {}).items():
        if box is None:
            continue
        path = output.parent / (safe_file_stem(name) + ".box.mrk.json")
        try:
            with atomic_path(path) as temporary:
                Path(temporary).write_text(json.dumps(roi_document(box, name), indent=2), encoding="utf-8")
        except OSError as error:
            raise SamMed3DError("cannot write %s: %s" % (path, error)) from None
        written.append(path)
    return written


def annotation_fingerprint(segmentation_node, clicks_by_segment: Dict[str, List[tuple]],
                           boxes_by_segment: Optional[Dict[str, object]] = None) -> str:
    """A digest of everything Save writes: segment ids, names, colours, label values and voxels, clicks, boxes."""
    from vtk.util.numpy_support import vtk_to_numpy

    digest = hashlib.sha1()
    if segmentation_node is not None:
        segmentation = segmentation_node.GetSegmentation()
        labelmap = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
        hashed = set()
        for index in range(segmentation.GetNumberOfSegments()):
            segment_id = segmentation.GetNthSegmentID(index)
            segment = segmentation.GetSegment(segment_id)
            digest.update(repr((segment_id, segment.GetName(), tuple(segment.GetColor()),
                                segment.GetLabelValue())).encode("utf-8"))
            image = segment.GetRepresentation(labelmap)
            scalars = image.GetPointData().GetScalars() if image is not None else None
            if scalars is not None and id(image) not in hashed:  # segments may share one labelmap
                hashed.add(id(image))
                digest.update(repr(image.GetExtent()).encode("utf-8"))
                digest.update(vtk_to_numpy(scalars).tobytes())
    digest.update(repr(sorted(clicks_by_segment.items())).encode("utf-8"))
    boxes = {name: (tuple(box.corner1), tuple(box.corner2)) for name, box in (boxes_by_segment or {}).items()
             if box is not None}
    digest.update(repr(sorted(boxes.items())).encode("utf-8"))
    return digest.hexdigest()


def recovery_output(output) -> Path:
    """Where unsaved work of ``output`` goes: ``<stem>-unsaved-<time>/<output name>`` beside it, a new folder."""
    output = Path(output)
    stem = output.name[: -len(SEGMENTATION_SUFFIX)] if output.name.endswith(SEGMENTATION_SUFFIX) else output.stem
    base = "%s-unsaved-%s" % (stem, time.strftime("%Y%m%d-%H%M%S"))
    for attempt in range(1000):
        folder = output.parent / (base if attempt == 0 else "%s-%d" % (base, attempt))
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder / output.name
    raise SamMed3DError("no free folder for unsaved work beside %s" % output)
