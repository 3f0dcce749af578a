"""Markups control points -> clicks in a volume's local RAS frame, in the order the user placed them.

Policy: every control point whose position is defined counts, whatever its selected / locked / visible state
(as in SlicerNNInteractive); a point still being placed (preview) or with an undefined / missing position does not.
"""
from __future__ import annotations

from collections import namedtuple
from typing import List, Optional, Sequence

import vtk

from slicer import vtkMRMLMarkupsNode, vtkMRMLTransformNode

Click = namedtuple("Click", ["key", "ras", "positive", "world"])
Click.__doc__ = """One prompt point.

key: (markups node ID, control point ID), stable while the point exists; ras: (x, y, z) in the volume's local
RAS frame; positive: True for foreground; world: (x, y, z) world RAS, used to re-create the point on redo."""


def world_to_local_transform(node) -> vtk.vtkGeneralTransform:
    """World RAS -> ``node``'s local RAS (inverse of its parent transforms; linear or not)."""
    transform = vtk.vtkGeneralTransform()
    parent = node.GetParentTransformNode() if node is not None else None
    vtkMRMLTransformNode.GetTransformBetweenNodes(None, parent, transform)
    return transform


def defined_points_world(markups_node) -> List[tuple]:
    """(control point ID, world RAS position) of every control point with a defined position."""
    points = []
    if markups_node is None:
        return points
    for index in range(markups_node.GetNumberOfControlPoints()):
        if markups_node.GetNthControlPointPositionStatus(index) != vtkMRMLMarkupsNode.PositionDefined:
            continue
        position = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(index, position)
        points.append((markups_node.GetNthControlPointID(index), tuple(position)))
    return points


def current_clicks(volume_node, positive_node, negative_node=None) -> List[Click]:
    """All clicks of the two markups nodes, mapped into ``volume_node``'s local RAS (positive first, then negative)."""
    to_local = world_to_local_transform(volume_node)
    clicks = []
    for node, positive in ((positive_node, True), (negative_node, False)):
        if node is None:
            continue
        for point_id, world in defined_points_world(node):
            ras = tuple(float(v) for v in to_local.TransformPoint(world))
            clicks.append(Click((node.GetID(), point_id), ras, positive, world))
    return clicks


def chronological_clicks(previous: Sequence[Click], current: Sequence[Click]) -> List[Click]:
    """Order ``current`` so that clicks already in ``previous`` keep their place and new ones come last.

    A click is matched by its key (node, point ID); a moved point keeps its place with its new position.
    This is what lets the session tell a refinement (a click appended) from an edit (replay).
    """
    by_key = {click.key: click for click in current}
    ordered = [by_key.pop(click.key) for click in previous if click.key in by_key]
    ordered.extend(click for click in current if click.key in by_key)
    return ordered


def remove_click(scene, click: Click) -> bool:
    """Delete the control point behind ``click`` from its markups node; False if it no longer exists."""
    node = scene.GetNodeByID(click.key[0]) if scene is not None else None
    if node is None:
        return False
    index = node.GetNthControlPointIndexByID(click.key[1])
    if index < 0:
        return False
    node.RemoveNthControlPoint(index)
    return True


def add_point_world(markups_node, world) -> Optional[str]:
    """Add a control point at a world RAS position; returns its ID."""
    index = markups_node.AddControlPointWorld(vtk.vtkVector3d(*world))
    if index < 0:
        return None
    return markups_node.GetNthControlPointID(index)
