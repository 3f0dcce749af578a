"""One ROI markup (the "Box" prompt) per segment, referenced from the segmentation node, and its box in a volume.

The ROI is drawn in a slice view (or edited with its handles in any view); its 8 corners, through every parent
transform, are mapped into the volume's local RAS frame, and the box prompt is their axis-aligned bounding box
(:class:`sammed3d.prompts.Box`). MedSAM segments the box's slices; SAM-Med3D clicks its centre.
"""
from __future__ import annotations

from typing import Optional, Tuple

BOX_COLOR = (1.0, 0.85, 0.1)
_ROLE = "SAMMed3DBox_%s"


def box_node(segmentation_node, segment_id: str, create: bool = True):
    """The ROI node of a segment; created (and referenced from the segmentation) when missing and ``create``."""
    node = segmentation_node.GetNodeReference(_ROLE % segment_id)
    if node is not None or not create:
        return node
    scene = segmentation_node.GetScene()
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    name = "%s box" % (segment.GetName() if segment is not None else segment_id)
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", scene.GetUniqueNameByString(name))
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None:
        display.SetSelectedColor(*BOX_COLOR)
        display.SetColor(*BOX_COLOR)
        display.SetFillOpacity(0.05)
        display.SetPointLabelsVisibility(False)
    node.SetAttribute("SAMMed3D.Segment", segment_id)
    segmentation_node.SetNodeReferenceID(_ROLE % segment_id, node.GetID())
    return node


def box_corners_world(roi_node):
    """The 8 world RAS corners of a placed ROI (8 x 3 numpy array), or None when it is not placed (yet)."""
    import numpy as np

    from slicer import vtkMRMLMarkupsNode

    if roi_node is None or roi_node.GetNumberOfControlPoints() < 1 or \
            roi_node.GetNthControlPointPositionStatus(0) != vtkMRMLMarkupsNode.PositionDefined:
        return None
    size = np.asarray(roi_node.GetSize(), dtype=float)
    if not np.all(np.isfinite(size)) or np.any(size < 0) or np.count_nonzero(size > 0) < 2:
        return None  # still being drawn (a point or a line)
    matrix = roi_node.GetObjectToWorldMatrix()
    object_to_world = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=float)
    corners = np.c_[signs * size / 2, np.ones(8)] @ object_to_world.T
    return corners[:, :3]


def box_signature(roi_node) -> Tuple:
    """What identifies the box for "did it change": its world corners to 1 um; () when not placed."""
    corners = box_corners_world(roi_node)
    return () if corners is None else tuple(tuple(round(float(v), 3) for v in corner) for corner in corners)


def current_box(volume_node, roi_node) -> Optional[object]:
    """The ROI as a :class:`sammed3d.prompts.Box` in ``volume_node``'s local RAS (None when not placed)."""
    corners = box_corners_world(roi_node)
    if corners is None:
        return None
    from sammed3d.prompts import Box

    from .markups import world_to_local_transform

    to_local = world_to_local_transform(volume_node)
    local = [to_local.TransformPoint([float(v) for v in corner]) for corner in corners]
    low = tuple(min(point[axis] for point in local) for axis in range(3))
    high = tuple(max(point[axis] for point in local) for axis in range(3))
    return Box(low, high)


def remove_box(roi_node) -> bool:
    """Remove the ROI's placement (the node stays for the next box); True if there was one."""
    if roi_node is None or roi_node.GetNumberOfControlPoints() == 0:
        return False
    roi_node.RemoveAllControlPoints()
    return True
