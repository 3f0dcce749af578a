"""`sammed3d serve`: one model on one device serving interactive sessions to many clients over HTTP.

Needs the ``server`` extra (FastAPI, uvicorn). Clients: :mod:`sammed3d.remote` (no PyTorch needed).
"""
from .app import Engine, ServerSettings, create_app  # noqa: F401
