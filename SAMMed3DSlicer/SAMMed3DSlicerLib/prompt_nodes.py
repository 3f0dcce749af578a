"""One pair of point-list nodes (positive green, negative red) per segment, referenced from the segmentation node.

Keeping a pair per segment is what lets each segment keep its own clicks when the user switches segments;
the references are saved with the scene.
"""
from __future__ import annotations

from typing import Optional, Tuple

POSITIVE_COLOR = (0.1, 0.9, 0.1)
NEGATIVE_COLOR = (0.95, 0.1, 0.1)
_ROLE = "SAMMed3D%sPoints_%s"


def _role(positive: bool, segment_id: str) -> str:
    return _ROLE % ("Positive" if positive else "Negative", segment_id)


def _new_points_node(segmentation_node, segment_id: str, positive: bool):
    scene = segmentation_node.GetScene()
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    name = "%s %s" % (segment.GetName() if segment is not None else segment_id, "+" if positive else "-")
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", scene.GetUniqueNameByString(name))
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None:
        color = POSITIVE_COLOR if positive else NEGATIVE_COLOR
        display.SetSelectedColor(*color)  # the colour of (selected) control points
        display.SetColor(*color)
        display.SetActiveColor(*color)
        display.SetPointLabelsVisibility(False)
    node.SetMarkupLabelFormat("+" if positive else "-")
    node.SetAttribute("SAMMed3D.Segment", segment_id)
    segmentation_node.SetNodeReferenceID(_role(positive, segment_id), node.GetID())
    return node


def prompt_nodes(segmentation_node, segment_id: str, create: bool = True) -> Tuple[Optional[object], Optional[object]]:
    """(positive, negative) point-list nodes of a segment; created (and referenced) when missing and ``create``."""
    nodes = []
    for positive in (True, False):
        node = segmentation_node.GetNodeReference(_role(positive, segment_id))
        if node is None and create:
            node = _new_points_node(segmentation_node, segment_id, positive)
        nodes.append(node)
    return nodes[0], nodes[1]


def show_only_segment_prompts(segmentation_node, segment_id: Optional[str]) -> None:
    """Show the point lists and box of ``segment_id`` and hide those of the segmentation's other segments."""
    segment_ids = segmentation_node.GetSegmentation().GetSegmentIDs()
    from .box_prompt import box_node

    for other in segment_ids:
        for node in prompt_nodes(segmentation_node, other, create=False) + (box_node(segmentation_node, other,
                                                                                      create=False),):
            if node is not None:
                node.SetDisplayVisibility(other == segment_id)
