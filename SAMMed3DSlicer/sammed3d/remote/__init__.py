"""The client side of `sammed3d serve`: sessions computed on a (GPU) server, with numpy, SimpleITK and the standard
library only (no PyTorch), so 3D Slicer, the command line and web front ends can use a shared server.

    from sammed3d.remote import connect, RemoteSession
    session = RemoteSession(connect("http://gpu-box:8000", token="..."), image)
    mask = session.add_point((10.0, -20.0, 35.0))
"""
from .client import (  # noqa: F401
    AuthenticationError,
    RemoteError,
    ServerConnection,
    ServerUnavailable,
    check_server_url,
    connect,
)
from .session import RemoteSession  # noqa: F401
