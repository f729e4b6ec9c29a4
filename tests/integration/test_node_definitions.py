"""The pack's registration, checked in a fresh interpreter without ComfyUI: light import, frozen IDs, docs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]

FROZEN_IDS = {
    "LoadLatentSyncModel", "LatentSyncWhisperAudioEmbed", "LatentSyncFaceAlignCrop", "LatentSyncMaskedVAEEncode",
    "LatentSyncSampler", "LatentSyncVAEDecodeComposite", "LatentSyncMuxAudio", "LatentSyncMatchLength",
    "LatentSyncLoadVideo", "LatentSyncLoadAudio", "LatentSyncVideoFile", "LatentSyncLoadSyncNet", "LatentSyncSyncScore",
    "LatentSyncFixAudioOffset",
}

# The editor's node menu: LatentSync > loaders / stages / output / tools.
CATEGORIES = {"LatentSync/loaders", "LatentSync/stages", "LatentSync/output", "LatentSync/tools"}

PROBE = r"""
import importlib.util, json, sys, time
root = sys.argv[1]
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("latentsync_pack_probe", root + "/__init__.py",
                                              submodule_search_locations=[root])
pack = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = pack
spec.loader.exec_module(pack)
lib = sorted(m for m in sys.modules if ".latentsync." in m)  # what importing alone pulled in
nodes = {}
for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
    nodes[node_id] = {
        "category": getattr(cls, "CATEGORY", None),
        "description": getattr(cls, "DESCRIPTION", ""),
        "function": callable(getattr(cls, getattr(cls, "FUNCTION", ""), None)),
        "return_types": list(cls.RETURN_TYPES),
        "return_names": list(getattr(cls, "RETURN_NAMES", ())),
        "output_tooltips": list(getattr(cls, "OUTPUT_TOOLTIPS", ())),
        "display": pack.NODE_DISPLAY_NAME_MAPPINGS.get(node_id),
        "aliases": list(getattr(cls, "SEARCH_ALIASES", ())),
    }
# Reading the node definitions (as ComfyUI's object_info does) may read light library modules, never heavy ones.
heavy = sorted(m for m in ("torch", "numpy", "av", "onnxruntime", "dlib", "safetensors") if m in sys.modules)
print(json.dumps({"nodes": nodes, "heavy": heavy, "library_modules": lib, "web": pack.WEB_DIRECTORY}))
"""


def _probe() -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(PACK_ROOT)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_is_light_and_registers_frozen_ids():
    info = _probe()
    assert set(info["nodes"]) == FROZEN_IDS
    assert info["heavy"] == [], f"importing the pack pulled in {info['heavy']}"
    assert info["library_modules"] == [], info["library_modules"]
    assert (PACK_ROOT / info["web"] / "latentsync.js").is_file()
    for node_id, node in info["nodes"].items():
        assert node["category"] in CATEGORIES, (node_id, node["category"])
        assert (PACK_ROOT / info["web"] / "docs" / f"{node_id}.md").is_file(), f"no help page for {node_id}"
        assert node["aliases"] and all(isinstance(a, str) and a for a in node["aliases"]), node_id
        assert len(node["description"]) > 40, node_id
        assert node["function"], node_id
        assert node["display"] and node["display"].startswith(("LatentSync", "Load LatentSync")), node_id
        n = len(node["return_types"])
        assert len(node["return_names"]) == n and len(node["output_tooltips"]) == n, node_id
        assert all(node["output_tooltips"]), node_id


def test_workflows_come_in_ui_and_api_pairs():
    apis = sorted(p for p in (PACK_ROOT / "workflows_api").glob("*_api.json"))
    assert len(apis) >= 3
    assert sorted(p.name for p in (PACK_ROOT / "workflows_api").iterdir()) == [p.name for p in apis]
    for api_path in apis:
        ui_path = PACK_ROOT / "example_workflows" / api_path.name.replace("_api.json", ".json")
        assert ui_path.is_file(), f"{api_path.name} has no UI twin"
        api = json.loads(api_path.read_text())
        ui = json.loads(ui_path.read_text())
        assert all("class_type" in n and "inputs" in n for n in api.values())
        ui_types = {n["type"] for n in ui["nodes"]} - {"Note", "MarkdownNote"}
        api_types = {n["class_type"] for n in api.values()}
        assert ui_types == api_types, (api_path.name, ui_types ^ api_types)
        node_ids = {n["id"] for n in ui["nodes"]}
        for link in ui["links"]:
            assert link[1] in node_ids and link[3] in node_ids, (ui_path.name, link)
