"""Headless evaluation of promptable segmentation, following the SAM-Med3D protocol.

Modules, one job each:

- :mod:`.datasets`: find labelled cases in nnU-Net or SAM-Med3D folder layouts; load labels in an image's grid.
- :mod:`.clicks`: seeded click simulators ('random' and 'ritm').
- :mod:`.metrics`: Dice and normalised surface Dice (NSD).
- :mod:`.loop`: run the click loop on one case with any ``predict_fn``.
- :mod:`.report`: resumable metrics.csv, summary.json, dice_vs_clicks.png, prediction files.
- :mod:`.runner`: evaluate a whole dataset (every case x label x click count) and write all of the above.

Everything here is numpy / SimpleITK only (no torch). Voxel indices are numpy array order ``(k, j, i)``, i.e. the
order of ``SimpleITK.GetArrayFromImage``; SimpleITK's own index order is ``(i, j, k)``.
"""

from .clicks import Click, RandomClicker, RitmClicker, make_clicker  # noqa: F401
from .datasets import Case, find_cases, load_label_in_image_grid, read_image  # noqa: F401
from .loop import ClickResult, click_to_ras, evaluate_case, index_to_ras  # noqa: F401
from .metrics import dice, nsd  # noqa: F401
from .runner import evaluate_dataset  # noqa: F401
