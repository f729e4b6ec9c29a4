"""The shipped UI workflows in ComfyUI's real editor (headless Chromium): each loads with no missing node, the
editor's own graphToPrompt() equals its API twin, it runs from the editor, and the pack's badges survive a page
reload and a cached run.

Needs a browser: a Python with playwright ($LATENTSYNC_UI_PYTHON, else $COMFY_PYTHON when it has playwright),
Chromium ($CHROMIUM, default /usr/bin/chromium) and the comfy_harness tools ($COMFY_HARNESS, default
../shared/tools/comfy_harness beside the repository); skipped without them. With $LATENTSYNC_SCREENSHOTS set to a
folder, the after-run screenshots are kept there (docs/images/<workflow>_after_run.png and the templates'
.jpg thumbnails are made this way).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from comfy_env import PACK_ROOT, comfy_python
from workflow_helpers import TTS_NODE, configure_ui, load_ui, ui_names, ui_to_api

HARNESS = Path(os.environ.get("COMFY_HARNESS") or PACK_ROOT.parent / "shared" / "tools" / "comfy_harness")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

PERSIST = r"""
import asyncio, json, os, sys
from playwright.async_api import async_playwright
url, wf_path = sys.argv[1:3]
WAIT = ("() => window.app && window.app.graph && window.LiteGraph && "
        "Object.keys(window.LiteGraph.registered_node_types).length > 100")
QUEUE = '''async () => { window.__done = null; const api = window.app.api;
  for (const t of ['execution_success', 'execution_error']) api.addEventListener(t, () => { window.__done = t; });
  await window.app.queuePrompt(0, 1); }'''
BADGES = '''() => Object.fromEntries(window.app.graph._nodes.filter(n => n.properties?.latentsync_badge)
  .map(n => [String(n.id), n.properties.latentsync_badge]))'''

async def main():
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                          args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = await browser.new_page()
        out = {}
        await page.goto(url)
        await page.wait_for_function(WAIT, timeout=60000)
        await page.evaluate("wf => window.app.loadGraphData(wf, true, false, 'persist')", json.load(open(wf_path)))
        await page.evaluate(QUEUE)
        await page.wait_for_function("() => window.__done", timeout=300000)
        out["run"] = await page.evaluate("() => window.__done")
        out["after_run"] = await page.evaluate(BADGES)
        saved = await page.evaluate("() => window.app.graph.serialize()")
        await page.reload()
        await page.wait_for_function(WAIT, timeout=60000)
        await page.evaluate("wf => window.app.loadGraphData(wf, true, false, 'persist')", saved)
        out["after_reload"] = await page.evaluate(BADGES)
        await page.evaluate(QUEUE)
        await page.wait_for_function("() => window.__done", timeout=300000)
        out["cached_run"] = await page.evaluate("() => window.__done")
        out["after_cached_run"] = await page.evaluate(BADGES)
        await browser.close()
        print(json.dumps(out))

asyncio.run(main())
"""


def ui_python() -> str:
    for python in (os.environ.get("LATENTSYNC_UI_PYTHON"), comfy_python()):
        if python and subprocess.run([python, "-c", "import playwright"], capture_output=True).returncode == 0:
            return python
    pytest.skip("no Python with playwright for the editor checks (set LATENTSYNC_UI_PYTHON)")


@pytest.fixture(scope="module")
def browser(comfy):
    if comfy.version == "2024":
        pytest.skip("the editor checks target the current frontend (ComfyUI 0.8)")
    if not (HARNESS / "ui_check.py").is_file() or not shutil.which(CHROMIUM):
        pytest.skip(f"no comfy_harness ui_check.py at {HARNESS} or no Chromium at {CHROMIUM}")
    return ui_python()


@pytest.mark.parametrize("name", ui_names())
def test_workflow_runs_from_the_editor(comfy, browser, tmp_path, name):
    info = comfy.object_info()
    shipped = load_ui(name + ".json")
    shots = Path(os.environ.get("LATENTSYNC_SCREENSHOTS") or tmp_path)
    # As shipped: no missing node (but the TTS pack's, not on the test server); the editor's prompt is the twin's.
    api = tmp_path / "api.json"
    api.write_text(json.dumps(ui_to_api(shipped, info)))
    if not any(n["type"] == TTS_NODE for n in shipped["nodes"]):
        out = subprocess.run([browser, str(HARNESS / "ui_check.py"), str(PACK_ROOT / "example_workflows" / f"{name}.json"),
                              "--url", comfy.url, "--compare-api", str(api), "--screenshot", str(tmp_path / "as_shipped.png"),
                              "--keep-dialogs"], capture_output=True, text=True, timeout=300)
        assert "graphToPrompt() vs shipped API workflow: identical" in out.stdout, out.stdout[-3000:]
        assert "missing node types: none" in out.stdout, out.stdout[-3000:]
    # Set up for the tiny models and run from the editor.
    run = tmp_path / f"{name}.json"
    run.write_text(json.dumps(configure_ui(shipped, comfy, info, steps=1, short=name == "lipsync_still_image")))
    out = subprocess.run([browser, str(HARNESS / "ui_check.py"), str(run), "--url", comfy.url, "--queue",
                          "--queue-timeout", "300", "--viewport", "1920x1200", "--screenshot", str(shots / f"{name}.png")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    # The badges: in the node properties after the run, kept through a reload and a cached run. The other speech
    # clip, so every node runs again (a fully cached prompt sends a new page only the output nodes' results).
    short = name != "lipsync_still_image"
    run.write_text(json.dumps(configure_ui(shipped, comfy, info, steps=1, short=short)))
    out = subprocess.run([browser, "-c", PERSIST, comfy.url, str(run)], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "CHROMIUM": CHROMIUM})
    assert out.returncode == 0, out.stderr[-3000:]
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["run"] == state["cached_run"] == "execution_success", state
    face = next(str(n["id"]) for n in shipped["nodes"] if n["type"] == "LatentSyncFaceAlignCrop")
    assert face in state["after_run"] and state["after_run"][face]["text"].startswith("face in"), state
    assert state["after_reload"] == state["after_run"] == state["after_cached_run"], state
    embed = next(str(n["id"]) for n in shipped["nodes"] if n["type"] == "LatentSyncWhisperAudioEmbed")
    silent = short  # the short test speech is 0.24 s of silence
    assert state["after_run"][embed]["warn"] is silent and ("silent audio" in state["after_run"][embed]["text"]) is silent
