"""`sammed3d web`: annotate in a browser on Slicer's own views (trame-slicer), with the Slicer module's MRML logic.

Needs the ``web`` extra (``pip install "sammed3d[web]"``): trame-slicer and slicer-core.
"""
