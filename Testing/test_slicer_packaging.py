"""Extensions Index packaging: the JSON catalog entry (Slicer 5.8+) against the catalog-entry schema's
requirements, its agreement with the CMake metadata, and every icon / screenshot URL naming a real image here."""
import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "SAMMed3DSlicer.json"
SCHEMA_URL = ("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
              "slicer-extension-catalog-entry-schema-v1.0.1.json#")

# The requirements of slicer-extension-catalog-entry-schema v1.0.1 (Slicer/Slicer, Schemas/), restated for the test
# (the build has no network to fetch it): three required fields, a closed set of optional ones with their types.
CATALOG_ENTRY_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema",
    "type": "object",
    "required": ["$schema", "category", "scm_url"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "category": {"type": "string"},
        "scm_url": {"type": "string"},
        "scm_revision": {"type": "string"},
        "scm_type": {"type": "string", "enum": ["git", "local"]},
        "build_dependencies": {"type": "array", "items": {"type": "string"}},
        "build_subdirectory": {"type": "string"},
        "enabled": {"type": "boolean"},
        "tier": {"type": "integer", "enum": [1, 3, 5]},
    },
}


def cmake_metadata():
    text = (REPO / "CMakeLists.txt").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r'set\((EXTENSION_\w+) "([^"]*)"\)', text)}


def test_catalog_entry_validates_against_the_schema():
    entry = json.loads(ENTRY.read_text())
    jsonschema.validate(entry, CATALOG_ENTRY_SCHEMA)
    assert entry["$schema"] == SCHEMA_URL


@pytest.mark.parametrize("broken", [{"category": "Segmentation"},  # no scm_url
                                    {"scm_url": "x", "category": "Segmentation", "depends": ["PyTorch"]},  # old key
                                    {"scm_url": "x", "category": "Segmentation", "enabled": 1}])  # not a boolean
def test_the_schema_rejects_broken_entries(broken):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dict(broken, **{"$schema": SCHEMA_URL}), CATALOG_ENTRY_SCHEMA)


def test_catalog_entry_agrees_with_the_cmake_metadata():
    entry = json.loads(ENTRY.read_text())
    metadata = cmake_metadata()
    assert entry["category"] == metadata["EXTENSION_CATEGORY"]
    assert entry["build_dependencies"] == metadata["EXTENSION_DEPENDS"].split()
    assert entry["build_subdirectory"] == metadata["EXTENSION_BUILD_SUBDIRECTORY"]
    assert entry["scm_url"] == metadata["EXTENSION_HOMEPAGE"] + ".git"


def metadata_image_urls():
    metadata = cmake_metadata()
    return [metadata["EXTENSION_ICONURL"]] + metadata["EXTENSION_SCREENSHOTURLS"].split()


@pytest.mark.parametrize("url", metadata_image_urls())
def test_every_icon_and_screenshot_url_names_a_non_blank_image_in_the_repository(url):
    match = re.match(r"https://raw\.githubusercontent\.com/([^/]+)/([^/]+)/([^/]+)/(.+)$", url)
    assert match, "not a raw GitHub URL of this repository: %s" % url
    homepage = cmake_metadata()["EXTENSION_HOMEPAGE"]
    assert homepage.endswith("/%s/%s" % (match.group(1), match.group(2))), url
    path = REPO / match.group(4)
    assert path.is_file(), "%s names %s, which is not in the repository" % (url, path.relative_to(REPO))
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.std() > 10, "%s is (nearly) blank" % path.name
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 16, "%s has too few colours to be a picture" % path.name


def test_screenshot_is_a_real_view_capture():
    """The screenshot is wide enough to show several views (made by scripts/make_screenshot.py)."""
    with Image.open(REPO / "Screenshots" / "SAMMed3DSlicer_1.png") as image:
        assert image.width >= 2 * image.height >= 400
