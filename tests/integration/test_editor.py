"""What the ComfyUI editor shows of the pack, checked against the real server: the templates it lists and their
thumbnails, validation messages (once, on the input they are about), and the shipped UI workflows themselves."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from comfy_env import PACK_LINK_NAME
from workflow_helpers import UI_WORKFLOWS, WORKFLOWS, ui_names


def fetch(comfy, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(comfy.url + path, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_templates_are_exactly_the_ui_workflows_with_jpg_thumbnails(comfy):
    if comfy.version == "2024":
        pytest.skip("the 2024 ComfyUI serves no custom-node templates (added in December 2024)")
    status, listing = comfy.get("/workflow_templates")
    assert status == 200, listing
    assert sorted(listing.get(PACK_LINK_NAME, [])) == ui_names()
    assert len(ui_names()) == 4 and not any(n.endswith("_api") for n in ui_names())
    assert not list(UI_WORKFLOWS.glob("*_api*")) and list(WORKFLOWS.glob("*_api.json"))
    for name in ui_names():
        status, body = fetch(comfy, f"/api/workflow_templates/{PACK_LINK_NAME}/{name}.jpg")
        assert status == 200 and body[:3] == b"\xff\xd8\xff", (name, status)  # a JPEG, as the editor asks for
        status, body = fetch(comfy, f"/api/workflow_templates/{PACK_LINK_NAME}/{name}.json")
        assert status == 200 and b'"nodes"' in body, name  # UI format: the editor can open it
    status, _ = fetch(comfy, f"/api/workflow_templates/{PACK_LINK_NAME}/lipsync_basic_api.json")
    assert status == 404
