"""Can model files be downloaded from Hugging Face right now, and if not, why not.

Checked once, quickly, before any download: the environment may switch downloads off (``HF_HUB_OFFLINE``,
``TRANSFORMERS_OFFLINE``, as huggingface_hub reads them), and the hub (``HF_ENDPOINT`` or huggingface.co) must
answer one request within a few seconds. Without this, huggingface_hub retries each file five times with
back-off, which took over a minute offline before saying anything useful.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Optional

DEFAULT_ENDPOINT = "https://huggingface.co"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
TRUE_VALUES = ("1", "on", "yes", "true")
REACH_TIMEOUT_S = 3.0
_CACHE_S = 15.0
_cache: dict[str, tuple[float, Optional[str]]] = {}


def endpoint() -> str:
    """The hub address downloads go to: ``$HF_ENDPOINT`` (a mirror) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline_variable() -> Optional[str]:
    """The environment variable that switches huggingface_hub offline, or None.

    huggingface_hub reads ``HF_HUB_OFFLINE`` and falls back to ``TRANSFORMERS_OFFLINE`` only when the first is
    unset or empty; the name returned is the one that decided.
    """
    for name in OFFLINE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return name if value.lower() in TRUE_VALUES else None
    return None


def _probe(url: str, timeout: float) -> Optional[str]:
    """One HEAD request through huggingface_hub's own HTTP session (its proxies and certificates)."""
    try:
        from huggingface_hub import get_session
    except ImportError:
        return "huggingface_hub is not installed (pip install huggingface_hub)"
    try:
        get_session().head(url, timeout=timeout)  # any HTTP answer, even an error status, means the hub is there
    except Exception as exc:  # requests / httpx / ssl / socket errors: the host cannot be reached
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0] if text else 'no answer'}"
    return None


def unreachable_reason(url: Optional[str] = None, timeout: float = REACH_TIMEOUT_S) -> Optional[str]:
    """None when ``url`` (default: the hub) answers within ``timeout`` seconds, else why it did not.

    The request runs in a daemon thread so that a hanging name lookup cannot hold the caller longer than the
    timeout. Answers are cached for a few seconds (a ComfyUI prompt validates, then loads).
    """
    url = url or endpoint()
    cached = _cache.get(url)
    if cached is not None and time.monotonic() - cached[0] < _CACHE_S:
        return cached[1]
    result: list[Optional[str]] = [f"no answer within {timeout:g} s"]

    def worker() -> None:
        result[0] = _probe(url, timeout)

    thread = threading.Thread(target=worker, name="latentsync-hub-check", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    reason = result[0] if not thread.is_alive() else f"no answer within {timeout:g} s"
    _cache[url] = (time.monotonic(), reason)
    return reason


def forget_checks() -> None:
    """Drop the cached reachability answers (the network may have changed)."""
    _cache.clear()


def download_blocker(allow_download: bool = True, *, check_network: bool = True) -> Optional[str]:
    """Why model files cannot be downloaded now (downloads off, an offline variable, no network), or None."""
    if not allow_download:
        return "downloads are turned off"
    variable = offline_variable()
    if variable:
        return f"{variable} is set, so nothing is downloaded (unset it to allow downloads)"
    if check_network:
        reason = unreachable_reason()
        if reason:
            return f"no network: {endpoint()} cannot be reached ({reason})"
    return None
