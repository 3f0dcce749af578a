"""Shared pytest setup: test the checkout the tests live in, and locate test data."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "SAMMed3DSlicer"
# Slicer puts the module folder on sys.path; do the same so the tests exercise this checkout's code.
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

DATA_DIR = REPO / "Testing" / "Data"
# ../shared/data beside the clone (CI, developers); SAMMED3D_SHARED_DATA overrides it (e.g. for git worktrees).
SHARED_DATA = Path(os.environ.get("SAMMED3D_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def ct_3mm_path():
    """The bundled abdominal CT (TotalSegmentator test case, Apache-2.0)."""
    return DATA_DIR / "ct_abdomen_3mm" / "image.nii.gz"


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data when present (CI and developers); tests that need it skip elsewhere."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED_DATA
