"""JupyterLab smoke test: what `make lab` opens works for a learner.

Starts `jupyter lab --no-browser` on a free local port, lists the course through
the REST API, starts a kernel, runs a cell that imports bertlab over the kernel's
websocket, and shuts everything down, leaving no process behind.
"""

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import requests
import websocket

ROOT = Path(__file__).resolve().parents[1]
TOKEN = uuid.uuid4().hex


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    port = _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
           f"--ServerApp.root_dir={ROOT}", "--LabApp.check_for_updates_class="
           "jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:  # as `make lab` does: Jupyter refuses root without it
        cmd.append("--allow-root")
    log = open(tmp_path / "lab.log", "w")
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    session = requests.Session()
    session.headers["Authorization"] = f"token {TOKEN}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if session.get(f"{base}/api/status", timeout=2).ok:
                break
        except requests.ConnectionError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text())
        time.sleep(0.5)
    yield base, session, server
    if server.poll() is None:  # the test failed before its own shutdown
        server.kill()
        server.wait(10)
    log.close()


def _execute(base: str, kernel_id: str, code: str) -> str:
    ws = websocket.create_connection(
        base.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels?token={TOKEN}",
        timeout=120)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                   "session": uuid.uuid4().hex, "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))
    out, status = [], None
    while status is None:
        reply = json.loads(ws.recv())
        if reply.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = reply["msg_type"]
        if kind == "stream":
            out.append(reply["content"]["text"])
        elif kind == "error":
            out.append("\n".join(reply["content"]["traceback"]))
        elif kind == "execute_reply":
            status = reply["content"]["status"]
    ws.close()
    assert status == "ok", "".join(out)
    return "".join(out)


def test_lab_lists_course_runs_bertlab_and_shuts_down_cleanly(lab):
    base, session, server = lab
    listing = session.get(f"{base}/api/contents/notebooks", timeout=10).json()
    names = sorted(item["name"] for item in listing["content"] if item["type"] == "notebook")
    expected = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert names == expected
    assert session.get(f"{base}/lab", timeout=30).ok  # the JupyterLab page itself is served

    kernel = session.post(f"{base}/api/kernels", json={"name": "python3"}, timeout=60).json()
    out = _execute(base, kernel["id"], "import bertlab, torch; print('bertlab', bertlab.__version__)")
    assert out.strip() == "bertlab 0.1.0"
    children = psutil.Process(server.pid).children(recursive=True)
    assert children, "the kernel should run as a child of the server"

    assert session.delete(f"{base}/api/kernels/{kernel['id']}", timeout=30).status_code == 204
    session.post(f"{base}/api/shutdown", timeout=30)
    server.wait(timeout=60)
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"stray processes left behind: {alive}"
