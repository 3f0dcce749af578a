"""MRML side of the SAM-Med3D Slicer module.

Needs only MRML, vtk, numpy, SimpleITK and sammed3d (no Qt, no slicer.app, no slicer.modules), so it runs inside
3D Slicer and in plain Python with the ``slicer-core`` wheel.
"""
from .interactive_logic import InteractiveSegmentationLogic, SegmentUpdate  # noqa: F401
