"""The module's dependency decisions: what is missing or too old, what to install and how, re-entry."""
import sys

import pytest

from SAMMed3DSlicerLib import dependencies
from SAMMed3DSlicerLib.dependencies import InstallCancelled, InstallPlan, ReentryGuard


@pytest.mark.parametrize("text, expected", [("2.13.0+cpu", (2, 13, 0)), ("2.1.0a0+git", (2, 1, 0)),
                                            ("1.13.1", (1, 13, 1)), ("", ()), (None, ()), ("v2.4", (2, 4))])
def test_parse_version(text, expected):
    assert dependencies.parse_version(text) == expected


@pytest.mark.parametrize("version, usable", [(None, False), ("1.13.1", False), ("2.0.1", False), ("2.1.0", True),
                                             ("2.13.0+cu121", True), ("unknown", True)])
def test_minimum_torch_version(version, usable):
    assert dependencies.torch_is_usable(version) is usable


def test_the_installed_torch_is_found_and_usable():
    import torch

    version = dependencies.installed_torch_version()
    assert dependencies.parse_version(version) == dependencies.parse_version(torch.__version__)
    assert dependencies.missing_packages() == (False, [])
    assert not InstallPlan.current().needed


def test_plan_for_a_missing_and_for_an_old_torch():
    fresh = InstallPlan(None, ["tqdm>=4.60"])
    assert fresh.needed and fresh.torch == "torch>=2.1" and not fresh.upgrade
    assert "PyTorch (torch>=2.1)" in fresh.question() and "tqdm>=4.60" in fresh.question()
    old = InstallPlan("1.13.1", [])
    assert old.torch == "torch>=2.1" and old.upgrade and "installed: 1.13.1" in old.question()
    assert old.restart_required == ("torch" in sys.modules)
    assert not InstallPlan("2.13.0", []).needed


def test_run_uses_the_pytorch_extension_when_present_else_pip():
    calls = []
    InstallPlan(None, ["tqdm>=4.60"]).run(calls.append, install_torch=lambda req: calls.append(("torch", req)))
    assert calls == [("torch", "torch>=2.1"), "tqdm>=4.60"]
    calls = []
    InstallPlan("1.13.1", ["safetensors>=0.4", "tqdm>=4.60"]).run(calls.append)
    assert calls == ["--upgrade torch>=2.1", "safetensors>=0.4 tqdm>=4.60"]
    with pytest.raises(InstallCancelled):
        InstallPlan(None, []).run(calls.append, install_torch=lambda req: False)


def test_run_makes_new_packages_importable_at_once(tmp_path, monkeypatch):
    """A package installed while Slicer runs must import without a restart: the import caches are invalidated."""
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not dependencies.is_importable("sammed3d_fresh_package")

    def pip_install(requirement):  # what pip does: a new module appears in a folder on sys.path
        (tmp_path / "sammed3d_fresh_package.py").write_text("VALUE = 1\n")

    InstallPlan("2.13.0", ["sammed3d_fresh_package"]).run(pip_install)
    import sammed3d_fresh_package

    assert sammed3d_fresh_package.VALUE == 1


def test_a_failing_installer_still_invalidates_caches_and_raises(tmp_path, monkeypatch):
    import subprocess

    def failing(requirement):
        raise subprocess.CalledProcessError(1, ["pip", "install", requirement])

    with pytest.raises(subprocess.CalledProcessError):
        InstallPlan(None, []).run(failing)


def test_reentry_guard():
    guard = ReentryGuard()
    with guard:
        assert guard.busy
        with pytest.raises(RuntimeError):
            with guard:
                pass
        assert guard.busy
    assert not guard.busy
