"""Everything under SAMMed3DSlicer/ must run on Python 3.9 (Slicer 5.8 ships 3.9): checked with vermin."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[1] / "SAMMed3DSlicer"


def vermin_command():
    executable = shutil.which("vermin") or str(Path(sys.executable).with_name("vermin"))
    if not Path(executable).exists():
        pytest.fail("vermin is not installed (it is in the `test` extra)")
    return [executable]


def test_module_code_runs_on_python_3_9():
    result = subprocess.run(
        vermin_command() + ["--target=3.9-", "--no-tips", "--violations", "--eval-annotations",
                            "--no-parse-comments", str(MODULE_DIR)],
        capture_output=True, text=True)
    assert result.returncode == 0, "Python > 3.9 constructs:\n" + result.stdout + result.stderr


def test_vermin_catches_a_violation(tmp_path):
    (tmp_path / "new.py").write_text("def f(x):\n    match x:\n        case 1:\n            return 2\n")
    result = subprocess.run(vermin_command() + ["--target=3.9-", "--no-tips", "--violations", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode != 0
