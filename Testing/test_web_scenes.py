"""The front of `sammed3d web` and its scene processes: a tab gets its own child, traffic (HTTP and websocket) reaches
only that child and only with its internal token, the user's token is checked first, the limit answers 503, an idle
scene is stopped (a connected one is not), and no child outlives the front, even a killed one.

The children here are Testing/web_scene_child.py (HTTP + websocket + token + parent pipe, no Slicer), so the
lifecycle is tested in seconds; Testing/test_web_browser.py runs real scenes in a browser.
"""
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

aiohttp = pytest.importorskip("aiohttp")

from sammed3d_web.front import Front  # noqa: E402
from sammed3d_web.scenes import SceneLauncher, scene_output_path  # noqa: E402

CHILD = Path(__file__).resolve().parent / "web_scene_child.py"
REPO = Path(__file__).resolve().parents[1]


def child_command(port, output):
    return [sys.executable, str(CHILD), str(port), str(output)]


def exited_within(pid, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if Path("/proc/%d/stat" % pid).read_text().split(")")[-1].split()[0] == "Z":
                return True  # exited, not yet reaped by whoever adopted it
        except (OSError, IndexError):
            return True
        try:  # our own child: reap it so it does not linger as a zombie
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


async def exited_soon(pid, seconds):
    """exited_within without blocking the event loop (the front runs on it)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if exited_within(pid, 0.01):
            return True
        await asyncio.sleep(0.1)
    return False


def test_scene_outputs_never_collide(tmp_path):
    output = tmp_path / "liver.seg.nrrd"
    paths = [scene_output_path(output, slot) for slot in (1, 2, 3)]
    assert paths[0] == output
    assert paths[1] == tmp_path / "liver-scene2" / "liver.seg.nrrd"
    assert len({path.parent for path in paths}) == 3  # each scene's .mrk.json files have their own folder


async def front_lifecycle(tmp_path):
    output = tmp_path / "out.seg.nrrd"
    launcher = SceneLauncher(child_command, output, max_scenes=2, idle_timeout=1.5, start_timeout=30)
    front = Front(launcher, token="s3cret", reap_interval=0.2)
    runner = aiohttp.web.AppRunner(front.app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = "http://127.0.0.1:%d" % site._server.sockets[0].getsockname()[1]
    processes = []
    try:
        # The user's token: nothing without it, not even the websocket, and no scene is started.
        async with aiohttp.ClientSession() as stranger:
            for path in ("/", "/index.html", "/s/anything/", "/s/anything/ws"):
                async with stranger.get(base + path) as response:
                    assert response.status == 401, path
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await stranger.ws_connect(base + "/s/anything/ws")
        assert launcher.scenes == {}

        async with aiohttp.ClientSession() as monitor:  # /status (with the token) starts nothing
            async with monitor.get(base + "/status", headers={"Authorization": "Bearer s3cret"}) as response:
                assert (await response.json())["scenes"] == 0 and launcher.scenes == {}

        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as tab_a, \
                aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as tab_b:  # (IP-address cookies)
            # A new tab: a child process, a redirect to its prefix, the page forwarded from that child.
            async with tab_a.get(base + "/?token=s3cret") as response:
                assert response.status == 200
                assert response.url.path.startswith("/s/")
                page_a = await response.text()
                prefix_a = response.url.path
            assert len(launcher.scenes) == 1
            scene_a = next(iter(launcher.scenes.values()))
            processes.append(scene_a.process)
            assert "pid=%d" % scene_a.process.pid in page_a and "output=%s" % output in page_a
            # The child listens on 127.0.0.1 and refuses anyone without its internal token (the front has it).
            async with tab_a.get(scene_a.url + "/") as response:
                assert response.status == 401
            # Query strings pass, absolute redirects stay under the tab's prefix, the cookie carries the token.
            async with tab_a.get(base + prefix_a + "index.html?a=1&b=2") as response:
                assert "query=a=1&b=2" in await response.text()
            async with tab_a.get(base + prefix_a + "moved", allow_redirects=False) as response:
                assert response.headers["Location"] == prefix_a + "index.html"
            socket_a = await tab_a.ws_connect(base + prefix_a + "ws")  # the tab's page is open
            await socket_a.send_str("a")
            assert (await socket_a.receive_str(timeout=10)) == "%d:a" % scene_a.process.pid

            # A second tab: a second child, its own output folder; its websocket reaches only its child.
            async with tab_b.get(base + "/?token=s3cret") as response:
                page_b = await response.text()
                prefix_b = response.url.path
            scene_b = next(scene for scene in launcher.scenes.values() if scene is not scene_a)
            processes.append(scene_b.process)
            assert prefix_b != prefix_a and scene_b.process.pid != scene_a.process.pid
            assert "output=%s" % (tmp_path / "out-scene2" / "out.seg.nrrd") in page_b
            socket_b = await tab_b.ws_connect(base + prefix_b + "ws")
            await socket_b.send_str("hello")
            assert (await socket_b.receive_str(timeout=10)) == "%d:hello" % scene_b.process.pid
            await socket_b.send_bytes(b"\x00\x01\x02" * 1000)
            assert (await socket_b.receive_bytes(timeout=10)) == (b"\x00\x01\x02" * 1000)[::-1]
            assert scene_b.connections == 1

            # The limit: a third tab gets a clear 503 page, no process.
            async with tab_a.get(base + "/") as response:
                assert response.status == 503
                assert "All 2 scenes are in use" in await response.text()
            assert len(launcher.scenes) == 2

            # Idle: tab A closes; past the idle timeout its child is stopped, B (connected) is kept.
            await asyncio.sleep(2.0)
            assert scene_a.alive()  # connected tabs are never idle
            await socket_a.close()
            assert await exited_soon(scene_a.process.pid, 8)
            await asyncio.sleep(0.5)
            assert list(launcher.scenes.values()) == [scene_b] and scene_b.alive()
            # A's tab comes back: a new scene (slot 1 again), not an error.
            async with tab_a.get(base + prefix_a) as response:
                assert response.status == 200 and response.url.path != prefix_a
                assert "output=%s" % output in await response.text()
            processes.extend(scene.process for scene in launcher.scenes.values())
            await socket_b.close()
    finally:
        await runner.cleanup()  # the front stops: every child goes
    for process in processes:
        assert process.poll() is not None, "a scene outlived its front"
    assert not (tmp_path / "out-scene2").exists()  # nothing was saved there: no empty folder left behind


@pytest.mark.slow
def test_front_starts_forwards_limits_and_stops_scenes(tmp_path):
    asyncio.run(front_lifecycle(tmp_path))


PARENT = """
import asyncio, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
from sammed3d_web.scenes import SceneLauncher
from test_web_scenes import child_command

async def main():
    launcher = SceneLauncher(child_command, sys.argv[3])
    scene = launcher.start_scene()
    print(scene.process.pid, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_scenes_die_with_a_killed_front(tmp_path):
    """SIGKILL leaves the front no chance to clean up: the children see their pipe close and exit."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(REPO / "SAMMed3DSlicer"), str(REPO / "Testing"),
                               str(tmp_path / "out.seg.nrrd")], stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(parent.stdout.readline())
        time.sleep(0.5)
        os.kill(child_pid, 0)  # it runs
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert exited_within(child_pid, 15), "a scene outlived its killed front"


async def slots_after_saves(tmp_path, reuse):
    launcher = SceneLauncher(child_command, tmp_path / "out.seg.nrrd", max_scenes=1, reuse_saved_slots=reuse)
    async with aiohttp.ClientSession() as session:
        launcher.session = session
        slots = []
        for _ in range(3):
            scene = launcher.start_scene()
            await launcher.wait_ready(scene)
            slots.append(scene.slot)
            scene.output.write_bytes(b"a save")  # this tab saved
            await launcher.stop(scene)
            assert not scene.alive()
    return slots


@pytest.mark.parametrize("reuse, expected", [(True, [1, 1, 1]), (False, [1, 2, 3])],
                         ids=["image-on-command-line", "uploads"])
def test_a_new_tab_never_replaces_an_earlier_tabs_save(tmp_path, reuse, expected):
    """With the image on the command line a freed slot is reused (its save is loaded and refined); with uploaded
    images a new tab skips slots an earlier tab saved in."""
    assert asyncio.run(slots_after_saves(tmp_path, reuse)) == expected
