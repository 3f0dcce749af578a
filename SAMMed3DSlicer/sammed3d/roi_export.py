"""Write what the model saw: each ROI's normalised input and its probability map, with their geometry."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import SamMed3DError
from .image_io import write_image_atomic
from .mapping import upsample_logits


def save_rois(session, folder: Path) -> None:
    """roi<N>_input.nii.gz (z-normalised 128^3 model input) and roi<N>_probability.nii.gz (sigmoid of the logits)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SamMed3DError("cannot create %s: %s" % (folder, error)) from None
    for number, tile in enumerate(session._tiles):
        roi = tile.roi
        write_image_atomic(roi.to_sitk(roi.image[0, 0].numpy()), folder / ("roi%d_input.nii.gz" % number))
        if tile.logits is not None:
            probability = torch.sigmoid(torch.from_numpy(upsample_logits(tile.logits.cpu(), roi.size))).numpy()
            write_image_atomic(roi.to_sitk(probability.astype(np.float32)),
                               folder / ("roi%d_probability.nii.gz" % number))
