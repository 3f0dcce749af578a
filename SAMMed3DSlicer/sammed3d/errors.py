"""The one exception family users see: each carries a one-line message fit for a command line or a dialog."""


class SamMed3DError(Exception):
    """Base class for errors caused by the user's input (files, points, options), not by a bug."""


class CheckpointError(SamMed3DError):
    """A weights file is missing, unreadable, unsafe, corrupt or does not fit the model."""


class InputImageError(SamMed3DError):
    """An image is missing, unreadable, or not a single-component 3D volume."""


class PromptError(SamMed3DError):
    """Points are missing or outside the image."""
