"""Static checks of the Slicer extension: module classes, .ui names, CMake lists, .s4ext fields, icons.

3D Slicer cannot run here; these checks catch what would only break at load time inside Slicer.
"""
import ast
import re
import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "SAMMed3DSlicer"
MODULE_FILE = MODULE_DIR / "SAMMed3DSlicer.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SAMMed3DSlicer.ui"
S4EXT_FIELDS = ("scm", "scmurl", "scmrevision", "depends", "build_subdirectory", "homepage", "contributors",
                "category", "iconurl", "status", "description", "screenshoturls", "enabled")


def module_tree():
    return ast.parse(MODULE_FILE.read_text(), filename=str(MODULE_FILE))


def cmake_lists(path):
    """{variable: [items]} for every set(VAR item ...) in a CMake file (comments removed)."""
    text = re.sub(r"#[^\n]*", "", path.read_text())
    return {m.group(1): m.group(2).split() for m in re.finditer(r"\bset\(\s*(\w+)\s+([^)]*)\)", text)}


def listed_module_files():
    lists = cmake_lists(MODULE_DIR / "CMakeLists.txt")
    assert lists["MODULE_NAME"] == ["SAMMed3DSlicer"]
    expand = lambda item: item.replace("${MODULE_NAME}", "SAMMed3DSlicer")  # noqa: E731
    scripts = [expand(i) for name, items in lists.items() if name.endswith("_SCRIPTS") for i in items]
    resources = [expand(i) for name, items in lists.items() if name.endswith("_RESOURCES") for i in items]
    return scripts, resources


def test_module_defines_the_four_slicer_classes():
    bases = {node.name: [ast.unparse(b) for b in node.bases]
             for node in module_tree().body if isinstance(node, ast.ClassDef)}
    assert bases["SAMMed3DSlicer"] == ["ScriptedLoadableModule"]
    assert "ScriptedLoadableModuleWidget" in bases["SAMMed3DSlicerWidget"]
    assert bases["SAMMed3DSlicerLogic"] == ["ScriptedLoadableModuleLogic"]
    assert bases["SAMMed3DSlicerTest"] == ["ScriptedLoadableModuleTest"]


def test_module_metadata_and_help():
    text = MODULE_FILE.read_text()
    assert 'self.parent.title = "SAM-Med3D"' in text
    assert 'self.parent.categories = ["Segmentation"]' in text
    assert "self.parent.contributors" in text
    shortcuts = next(node.value for node in module_tree().body if isinstance(node, ast.Assign)
                     and getattr(node.targets[0], "id", None) == "SHORTCUTS")
    keys = [element.elts[0].value for element in shortcuts.elts]
    methods = [element.elts[2].value for element in shortcuts.elts]
    assert {"A", "D", "Z", "Shift+Z", "N"} <= set(keys)
    # Keys Slicer's slice / 3D views and markups use, and those SlicerNNInteractive installs on the main window
    # (Qt makes a key bound twice ambiguous: neither fires). A main-window shortcut takes the key from the views.
    taken = {"R", "S", "F", "B", "G", "T", "V", "Shift+V", "E", "Ctrl+Z", "Ctrl+B", "Left", "Right", "Up", "Down",
             "Delete", "Backspace", "Home", "End", "Insert", "PgDown", "+", "-", "[", "]", "{", "}"}
    assert not set(keys) & taken, set(keys) & taken
    assert len(set(keys)) == len(keys)
    # Installed on enter, removed on exit (as the Segment Editor does), never at setup.
    bodies = {item.name: ast.unparse(item) for item in widget_methods()}
    assert "_installShortcuts" in bodies["enter"] and "_removeShortcuts" in bodies["exit"]
    assert "_installShortcuts" not in bodies["setup"] and "_removeShortcuts" in bodies["cleanup"]
    readme = (REPO / "README.md").read_text()
    for key in keys:
        assert "| %s |" % key in readme, "README key map lacks %s" % key
    widget = next(node for node in module_tree().body if isinstance(node, ast.ClassDef)
                  and node.name == "SAMMed3DSlicerWidget")
    defined = {item.name for item in widget.body if isinstance(item, ast.FunctionDef)}
    assert set(methods) <= defined, "shortcut handlers missing: %s" % (set(methods) - defined)
    assert "_shortcut_help()" in text.split("helpText")[1].split("acknowledgementText")[0]
    acknowledgement = text.split("acknowledgementText")[1]
    assert "SAM-Med3D" in acknowledgement and "2310.15161" in acknowledgement


def widget_methods():
    widget = next(node for node in module_tree().body if isinstance(node, ast.ClassDef)
                  and node.name == "SAMMed3DSlicerWidget")
    return [item for item in widget.body if isinstance(item, ast.FunctionDef)]


def test_ui_file_parses_and_holds_every_widget_the_module_uses():
    root = ElementTree.parse(UI_FILE).getroot()
    names = {widget.get("name") for widget in root.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    assert used, "the widget uses no self.ui names?"
    assert used <= names, "used by the module but missing in the .ui: %s" % sorted(used - names)
    # Every non-Qt widget class is declared as a custom widget (else Qt's loader makes a plain QWidget).
    classes = {widget.get("class") for widget in root.iter("widget")}
    declared = {custom.findtext("class") for custom in root.iter("customwidget")}
    assert {c for c in classes if not c.startswith("Q")} <= declared


def test_every_module_python_file_is_listed_in_cmake():
    scripts, _ = listed_module_files()
    # sammed3d_web (the browser app, `pip install sammed3d[web]`) is not part of the Slicer module.
    on_disk = sorted(p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*.py")
                     if "__pycache__" not in p.parts and p.relative_to(MODULE_DIR).parts[0] != "sammed3d_web")
    missing = [path for path in on_disk if path not in scripts]
    assert not missing, "add these to SAMMed3DSlicer/CMakeLists.txt (MODULE_PYTHON_SCRIPTS, or run " \
                        "python scripts/sync_cmake_scripts.py for sammed3d/): %s" % missing
    absent = [path for path in scripts if not (MODULE_DIR / path).is_file()]
    assert not absent, "listed in CMake but not on disk: %s" % absent
    assert len(scripts) == len(set(scripts)), "listed twice"


def test_every_resource_and_package_data_file_is_listed_in_cmake():
    _, resources = listed_module_files()
    on_disk = [p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()]
    on_disk += [p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "sammed3d").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc", ".pyo")]
    missing = sorted(set(on_disk) - set(resources))
    assert not missing, "add to SAMMed3DSlicer/CMakeLists.txt (python scripts/sync_cmake_scripts.py): %s" % missing
    absent = [path for path in resources if not (MODULE_DIR / path).is_file()]
    assert not absent, "listed in CMake but not on disk: %s" % absent


def test_top_level_cmake_builds_an_extension():
    text = (REPO / "CMakeLists.txt").read_text()
    for needle in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(SAMMed3DSlicer)",
                   "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert needle in text
    lists = {name: " ".join(items).strip('"') for name, items in
             ((m.group(1), [m.group(2)]) for m in re.finditer(r'set\((EXTENSION_\w+) "([^"]*)"\)', text))}
    s4ext = read_s4ext()
    assert lists["EXTENSION_CATEGORY"] == s4ext["category"]
    assert lists["EXTENSION_HOMEPAGE"] == s4ext["homepage"]
    assert lists["EXTENSION_DESCRIPTION"] == s4ext["description"]
    assert lists["EXTENSION_ICONURL"] == s4ext["iconurl"]
    assert lists["EXTENSION_DEPENDS"] == s4ext["depends"] == "PyTorch"


def read_s4ext():
    fields = {}
    for line in (REPO / "SAMMed3DSlicer.s4ext").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            fields[key] = value.strip()
    return fields


def test_s4ext_has_every_extensions_index_field():
    fields = read_s4ext()
    missing = [key for key in S4EXT_FIELDS if not fields.get(key)]
    assert not missing, missing
    assert fields["scm"] == "git" and fields["scmurl"].endswith(".git")
    assert fields["category"] == "Segmentation" and fields["enabled"] in ("0", "1")
    assert fields["iconurl"].endswith("SAMMed3DSlicer.png")
    assert all(url.startswith("https://") for url in fields["screenshoturls"].split())


@pytest.mark.parametrize("path", ["SAMMed3DSlicer.png", "SAMMed3DSlicer/Resources/Icons/SAMMed3DSlicer.png"])
def test_icons_are_128_pixel_pngs(path):
    data = (REPO / path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (128, 128)


def test_mrml_logic_needs_no_qt_and_no_slicer_application():
    forbidden_modules = {"qt", "ctk", "slicer.ScriptedLoadableModule"}
    for path in (MODULE_DIR / "SAMMed3DSlicerLib").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not {alias.name for alias in node.names} & forbidden_modules, path
            if isinstance(node, ast.ImportFrom):
                assert node.module not in forbidden_modules, path
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "slicer":
                assert node.attr not in ("app", "modules", "util", "mrmlScene"), "%s uses slicer.%s" % (path, node.attr)


def test_the_mrml_logic_imports_without_torch():
    """Slicer must be able to load the module before torch is installed (the first-run install dialog needs it)."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, %r); import SAMMed3DSlicerLib.interactive_logic, "
            "SAMMed3DSlicerLib.background, SAMMed3DSlicerLib.controller, SAMMed3DSlicerLib.dependencies, SAMMed3DSlicerLib.self_test_case; "
            "assert 'torch' not in sys.modules, 'torch imported at module load'" % str(MODULE_DIR))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cosmetic_defects_stay_fixed():
    """Positive / Negative are distinct, labelled buttons (not markups place widgets, whose icons are identical and
    whose Delete button comes back); the segment selector offers no dead "Edit" entry; the demo model is offered."""
    root = ElementTree.parse(UI_FILE).getroot()
    widgets = {widget.get("name"): widget for widget in root.iter("widget")}
    assert not [w for w in widgets.values() if w.get("class") == "qSlicerMarkupsPlaceWidget"]
    texts = []
    for name in ("positivePlaceButton", "negativePlaceButton"):
        widget = widgets[name]
        assert widget.get("class") == "QPushButton"
        properties = {p.get("name"): p for p in widget.iter("property")}
        assert properties["checkable"].findtext("bool") == "true"
        texts.append(properties["text"].findtext("string"))
    assert texts[0] != texts[1] and all(texts)
    selector = {p.get("name"): p for p in widgets["segmentSelector"].iter("property")}
    assert selector["editEnabled"].findtext("bool") == "false"
    text = MODULE_FILE.read_text()
    assert '(DEMO, "Bundled demo model (offline)")' in text
    assert "_dotIcon(color)" in text  # green / red icons from the point lists' colours


#: Signals of the widget classes the .ui uses (Qt / CTK / Slicer headers); PythonQt's connect() with a misspelt
#: signature only returns False, so a typo would silently disconnect a control.
SIGNALS = {
    "QComboBox": {"currentIndexChanged(int)", "activated(int)"},
    "QLineEdit": {"editingFinished()", "textChanged(QString)", "returnPressed()"},
    "QPushButton": {"clicked()", "clicked(bool)", "toggled(bool)"},
    "QCheckBox": {"toggled(bool)", "stateChanged(int)", "clicked(bool)"},
    "ctkPathLineEdit": {"currentPathChanged(QString)"},
    "qMRMLNodeComboBox": {"currentNodeChanged(vtkMRMLNode*)", "currentNodeChanged(bool)"},
    "qMRMLSegmentSelectorWidget": {"currentNodeChanged(vtkMRMLNode*)", "currentSegmentChanged(QString)"},
}


def test_every_connected_signal_exists_on_its_widget_class():
    root = ElementTree.parse(UI_FILE).getroot()
    classes = {widget.get("name"): widget.get("class") for widget in root.iter("widget")}
    connections = re.findall(r'self\.ui\.(\w+)\.connect\(\s*"([^"]+)"', MODULE_FILE.read_text())
    assert len(connections) >= 15
    wrong = [(name, signal) for name, signal in connections if signal not in SIGNALS.get(classes[name], ())]
    assert not wrong, wrong


def test_engine_choice_lives_in_user_settings_not_in_the_scene():
    """Engine, server URL and token: read from and written to Slicer's application settings (through
    engine_settings), never stored in the parameter node (saved with the scene); the token field masks its text."""
    text = MODULE_FILE.read_text()
    keys = re.findall(r'(?:SetParameter|GetParameter)\(\s*"([^"]+)"', text)
    assert keys and not [key for key in keys if re.search(r"server|token|url|engine", key, re.I)], keys
    assert "SetNodeReferenceID(\"Server" not in text and "SetAttribute(" not in text
    bodies = {item.name: ast.unparse(item) for item in widget_methods()}
    assert "read_engine_choice(qt.QSettings())" in bodies["setup"] and "self.onEngineChanged()" in bodies["setup"]
    assert "choose_engine(qt.QSettings(), self.controller" in bodies["onEngineChanged"]
    widgets = {widget.get("name"): widget for widget in ElementTree.parse(UI_FILE).getroot().iter("widget")}
    echo = {p.get("name"): p for p in widgets["serverTokenLineEdit"].iter("property")}["echoMode"]
    assert echo.findtext("enum") == "QLineEdit::Password"
    help_text = text.split("helpText")[1].split("acknowledgementText")[0]
    assert "Server" in help_text and "Slicer's settings" in help_text
