"""Where the module computes: "this computer" or a `sammed3d serve` server (URL + token), remembered per user.

The choice lives in the user's application settings (Slicer's ``qt.QSettings()``, or any object with
``value(key, default)`` and ``setValue(key, value)``), never in the scene: a saved scene does not carry the token.
Qt-free, so the widget only forwards its fields here.
"""
from __future__ import annotations

from typing import Optional

from sammed3d.errors import PromptError

ENGINE_KEY = "SAMMed3D/Engine"
SERVER_URL_KEY = "SAMMed3D/ServerURL"
SERVER_TOKEN_KEY = "SAMMed3D/ServerToken"
LOCAL, SERVER = "local", "server"
#: Labels for the widget's engine selector, in this order.
ENGINE_LABELS = ((LOCAL, "This computer"), (SERVER, "Server"))


class EngineChoice(object):
    """The engine: LOCAL, or SERVER with a URL and a token."""

    def __init__(self, kind: str = LOCAL, url: str = "", token: str = ""):
        self.kind = kind if kind in (LOCAL, SERVER) else LOCAL
        self.url = (url or "").strip()
        self.token = (token or "").strip()

    @property
    def is_remote(self) -> bool:
        return self.kind == SERVER

    @property
    def needs_local_packages(self) -> bool:
        """Whether PyTorch and the model packages must be installed here (not for a server engine)."""
        return not self.is_remote

    def logic_options(self) -> dict:
        """Keyword arguments for :meth:`InteractiveSegmentationLogic.set_engine` (server None: this computer)."""
        if not self.is_remote:
            return {"server": None, "token": None}
        return {"server": validate_server_url(self.url), "token": self.token or None}

    def __eq__(self, other):
        return isinstance(other, EngineChoice) and (self.kind, self.url, self.token) == (other.kind, other.url,
                                                                                           other.token)

    def __repr__(self):
        return "EngineChoice(%r, %r, token=%s)" % (self.kind, self.url, "<set>" if self.token else "<none>")


def validate_server_url(text: Optional[str]) -> str:
    """The URL as the client will use it; PromptError with a message for the user when it is not usable."""
    from sammed3d.remote.client import check_server_url

    if not (text or "").strip():
        raise PromptError("Enter the server's address, e.g. http://gpu-server:8000.")
    return check_server_url(text)


def _text(settings, key: str) -> str:
    value = settings.value(key, "")
    return value if isinstance(value, str) else ""


def read_engine_choice(settings) -> EngineChoice:
    """The engine remembered in `settings` (this computer when nothing is remembered)."""
    return EngineChoice(_text(settings, ENGINE_KEY) or LOCAL, _text(settings, SERVER_URL_KEY),
                        _text(settings, SERVER_TOKEN_KEY))


def write_engine_choice(settings, choice: EngineChoice) -> None:
    """Remember `choice` (a server URL is validated first: nothing is written when it is not usable)."""
    url = validate_server_url(choice.url) if choice.is_remote else choice.url
    settings.setValue(ENGINE_KEY, choice.kind)
    settings.setValue(SERVER_URL_KEY, url)
    settings.setValue(SERVER_TOKEN_KEY, choice.token)


def apply_engine_choice(target, choice: EngineChoice) -> None:
    """Point `target` at the chosen engine: the controller (drops pending work, replays clicks on the new engine)
    or an InteractiveSegmentationLogic (anything with ``set_engine(server=, token=)``)."""
    target.set_engine(**choice.logic_options())


def choose_engine(settings, target, choice: EngineChoice) -> Optional[str]:
    """The user chose `choice` in the GUI: remember it and point `target` (the controller, or a logic) at it.

    Returns None, or a one-line message for the status line when the choice is not usable yet (e.g. Server with no
    or a malformed URL); then nothing is written and `target` keeps its engine.
    """
    from sammed3d.errors import SamMed3DError

    try:
        write_engine_choice(settings, choice)
        apply_engine_choice(target, choice)
    except SamMed3DError as error:
        return str(error)
    return None
