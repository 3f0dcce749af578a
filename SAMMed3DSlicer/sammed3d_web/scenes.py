"""Scene processes for several browser tabs: one child ``sammed3d web --single-scene`` per tab, as trame is deployed.

Each scene is a child process bound to 127.0.0.1 on a free port, reachable only with a random internal token (given
in its environment, never on its command line). The child reads its stdin, a pipe from the front process: when the
front dies (even killed), the pipe closes and the child exits, so no scene outlives its front.

Scene k saves to OUT for k = 1, else to ``<OUT folder>/<stem>-scene<k>/<OUT name>`` (its ``.mrk.json`` files beside
it), so two open tabs never write the same files. A slot freed by a closed tab is reused by the next tab, which loads
that slot's saved segmentation and refines it, when the image comes from the command line; otherwise (images uploaded
in the page) slots where an earlier tab saved are skipped, so a new tab never replaces an earlier tab's files.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .output_path import SEGMENTATION_SUFFIX

#: Environment variable that hands a child its internal token.
TOKEN_ENV = "SAMMED3D_WEB_SCENE_TOKEN"


class SceneLimitError(Exception):
    """Every scene slot is taken."""


class SceneStartError(Exception):
    """A scene process exited or did not answer in time."""


def scene_output_path(output: Path, slot: int) -> Path:
    """Where scene ``slot`` saves: OUT for slot 1, ``<folder>/<stem>-scene<k>/<name>`` for the others."""
    output = Path(output)
    if slot == 1:
        return output
    stem = output.name[:-len(SEGMENTATION_SUFFIX)] if output.name.lower().endswith(SEGMENTATION_SUFFIX) else output.stem
    return output.parent / ("%s-scene%d" % (stem, slot)) / output.name


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def exit_with_parent(fd: int = 0, before_exit: Optional[Callable[[], None]] = None) -> threading.Thread:
    """In a child: exit when file descriptor ``fd`` (stdin, the front's pipe) reaches end of file, i.e. the front has
    gone (however it ended) or is stopping this scene, and on SIGTERM (what the front sends next); ``before_exit()``
    runs first (the scene saves unsaved work there; it must bound its own time: the front kills after 10 s). Reads
    the raw descriptor: no Python-level lock held at interpreter exit."""
    once = threading.Lock()

    def shut_down():
        if not once.acquire(blocking=False):
            return  # the other trigger got there first; it exits the process
        try:
            if before_exit is not None:
                before_exit()
        except Exception as error:  # noqa: BLE001 - the process ends either way
            print("sammed3d web: %s" % error, flush=True)
        finally:
            os._exit(0)

    def watch():
        try:
            while os.read(fd, 1024):
                pass
        except OSError:
            pass
        shut_down()

    if threading.current_thread() is threading.main_thread():
        # the handler only starts a thread: the main thread (the scene's event loop) must stay free to save
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=shut_down, daemon=True).start())
    thread = threading.Thread(target=watch, name="sammed3d-web-parent-watch", daemon=True)
    thread.start()
    return thread


class Scene(object):
    """One child process: its slot, port, token, output and how many websockets it has now."""

    def __init__(self, slot: int, port: int, token: str, output: Path, process: subprocess.Popen):
        self.id = secrets.token_urlsafe(12)
        self.slot = slot
        self.port = port
        self.token = token
        self.output = output
        self.process = process
        self.claimed = False
        self.connections = 0
        self.last_seen = time.monotonic()
        self.ready = False

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def alive(self) -> bool:
        return self.process.poll() is None

    def touch(self) -> None:
        self.last_seen = time.monotonic()


class SceneLauncher(object):
    """Starts, tracks and stops scene processes (asyncio; all methods run on one event loop).

    command(port, output) gives a child's argv; it gets its token in ``TOKEN_ENV``. A scene with no websocket for
    ``idle_timeout`` seconds is stopped by :meth:`reap` (the front calls it periodically). ``session``: an
    aiohttp ClientSession, set before the first scene starts (readiness checks use it).
    """

    def __init__(self, command: Callable[[int, Path], List[str]], output: Path, max_scenes: int = 4,
                 idle_timeout: float = 600.0, start_timeout: float = 300.0, env: Optional[dict] = None,
                 reuse_saved_slots: bool = True):
        self.session = None
        self.reuse_saved_slots = reuse_saved_slots
        self._saved_slots = set()  # slots whose stopped scene left a save (skipped unless reuse_saved_slots)
        self.command = command
        self.output = Path(output)
        self.max_scenes = max_scenes
        self.idle_timeout = idle_timeout
        self.start_timeout = start_timeout
        self.env = dict(os.environ if env is None else env)
        self.scenes: Dict[str, Scene] = {}
        self._ready_waits: Dict[str, asyncio.Task] = {}

    # ---- start ----------------------------------------------------------------------------------------------------
    def _free_slot(self) -> int:
        if len(self.scenes) >= self.max_scenes:
            raise SceneLimitError("all %d scenes are in use" % self.max_scenes)
        taken = {scene.slot for scene in self.scenes.values()}
        for slot in range(1, 100000):
            if slot not in taken and (self.reuse_saved_slots or slot not in self._saved_slots):
                return slot
        raise SceneLimitError("no free output folder beside %s" % self.output)

    def start_scene(self) -> Scene:
        """Start a child in the lowest free slot (SceneLimitError when none is free); it is ready later."""
        slot = self._free_slot()
        output = scene_output_path(self.output, slot)
        output.parent.mkdir(exist_ok=True)
        port = free_local_port()
        token = secrets.token_urlsafe(24)
        env = dict(self.env)
        env[TOKEN_ENV] = token
        process = subprocess.Popen(self.command(port, output), stdin=subprocess.PIPE, env=env)
        scene = Scene(slot, port, token, output, process)
        self.scenes[scene.id] = scene
        task = asyncio.ensure_future(self._poll_ready(scene))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved: no warning
        self._ready_waits[scene.id] = task
        return scene

    def claim(self) -> Scene:
        """A scene for a new tab: an unclaimed (pre-started) one, else a new one."""
        for scene in self.scenes.values():
            if not scene.claimed and scene.alive():
                scene.claimed = True
                scene.touch()
                return scene
        scene = self.start_scene()
        scene.claimed = True
        return scene

    async def wait_ready(self, scene: Scene) -> None:
        """Wait until the child answers HTTP (SceneStartError if it exits or takes longer than start_timeout)."""
        if scene.ready:
            return
        task = self._ready_waits.get(scene.id)
        if task is None:
            raise SceneStartError("the scene process has stopped")
        await asyncio.shield(task)

    async def _poll_ready(self, scene: Scene) -> None:
        import aiohttp

        deadline = time.monotonic() + self.start_timeout
        headers = {"Authorization": "Bearer " + scene.token}
        while time.monotonic() < deadline:
            if not scene.alive():
                self.forget(scene)
                raise SceneStartError("the scene process exited (status %s)" % scene.process.returncode)
            try:
                async with self.session.get(scene.url + "/", headers=headers, allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(total=5)) as response:
                    if response.status < 500:
                        scene.ready = True
                        scene.touch()
                        self._ready_waits.pop(scene.id, None)
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            await asyncio.sleep(0.2)
        await self.stop(scene)
        raise SceneStartError("the scene did not start within %d s" % self.start_timeout)

    # ---- stop -----------------------------------------------------------------------------------------------------
    def forget(self, scene: Scene) -> None:
        self.scenes.pop(scene.id, None)
        if scene.output.exists():
            self._saved_slots.add(scene.slot)
        if scene.output != self.output:
            try:
                scene.output.parent.rmdir()  # the scene's folder, only when it saved nothing
            except OSError:
                pass
        task = self._ready_waits.pop(scene.id, None)
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    async def stop(self, scene: Scene, grace: float = 10.0) -> None:
        """Stop a child: close its pipe, SIGTERM, then SIGKILL after ``grace`` seconds."""
        self.forget(scene)
        process = scene.process
        try:
            process.stdin.close()
        except OSError:
            pass
        if process.poll() is None:
            process.terminate()
        deadline = time.monotonic() + grace
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if process.poll() is None:
            process.kill()
            process.wait()

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(scene) for scene in list(self.scenes.values())))

    async def reap(self) -> List[Scene]:
        """Stop idle scenes (no websocket for idle_timeout), forget exited ones; returns what was removed."""
        now = time.monotonic()
        removed = []
        for scene in list(self.scenes.values()):
            if not scene.alive():
                self.forget(scene)
                removed.append(scene)
            elif scene.ready and scene.connections == 0 and now - scene.last_seen > self.idle_timeout:
                await self.stop(scene)
                removed.append(scene)
        return removed
