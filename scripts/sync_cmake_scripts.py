"""Rewrite the SAMMED3D_PACKAGE_SCRIPTS / _RESOURCES lists in SAMMed3DSlicer/CMakeLists.txt from the files on disk.

Slicer's build copies only the files listed there, so a new sammed3d module must be listed (explicitly, no glob);
Testing/test_slicer_extension.py fails and names the missing files. Usage: python scripts/sync_cmake_scripts.py
"""
import re
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1] / "SAMMed3DSlicer"
CMAKE = MODULE_DIR / "CMakeLists.txt"


def package_files():
    """(python files, data files) of the sammed3d package, relative to the module folder."""
    files = sorted(p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "sammed3d").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))
    return [f for f in files if f.endswith(".py")], [f for f in files if not f.endswith(".py")]


def replace_block(text, name, files):
    block = "set(%s\n" % name + "".join("  %s\n" % f for f in files) + "  )"
    new_text, count = re.subn(r"set\(%s\n.*?  \)" % name, lambda _: block, text, flags=re.S)
    if count != 1:
        raise SystemExit("%s block not found in %s" % (name, CMAKE))
    return new_text


def main():
    scripts, resources = package_files()
    text = replace_block(CMAKE.read_text(), "SAMMED3D_PACKAGE_SCRIPTS", scripts)
    text = replace_block(text, "SAMMED3D_PACKAGE_RESOURCES", resources)
    tmp = CMAKE.with_suffix(".txt.tmp")
    tmp.write_text(text)
    tmp.replace(CMAKE)
    print("listed %d sammed3d scripts and %d data files in %s" % (len(scripts), len(resources), CMAKE))


if __name__ == "__main__":
    main()
