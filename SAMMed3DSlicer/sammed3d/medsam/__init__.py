"""MedSAM: SAM ViT-B fine-tuned on medical image-mask pairs, driven by a box on a slice and propagated through the
volume slice by slice (official preprocessing and 3D protocol). Model in :mod:`.model`, slice preprocessing in
:mod:`.preprocessing`, the box session in :mod:`.session`."""
