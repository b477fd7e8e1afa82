"""`outreach serve` right after `outreach demo` (what `make demo` runs), from the same folder, without
--db: it serves the demo's store and says so; with a real store present it serves that one and names the
--db of the demo. Real CLI processes, real web server over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def outreach(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OUTREACH_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "outreach", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def serve_and_login(cwd: Path, name: str, password: str) -> tuple[int, str]:
    """Start `outreach serve` in `cwd`, log in over HTTP; returns the login's status code and serve's stderr."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OUTREACH_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "outreach", "serve", "--port", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            end = time.monotonic() + 60
            while True:
                try:
                    page = client.get("/login")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, "outreach serve exited"
                    assert time.monotonic() < end, "outreach serve did not come up"
                    time.sleep(0.2)
            assert page.status_code == 200
            token = client.cookies.get("outreach_login_csrf")
            r = client.post("/login", data={"username": name, "password": password, "csrf_token": token, "next": "/"})
            status = r.status_code
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    return status, err


@pytest.mark.slow
def test_serve_after_the_demo_finds_the_demo_store_or_names_its_db(tmp_path: Path) -> None:
    res = outreach(tmp_path, "demo", "--residents", "20", "--seed", "3", "--json")
    assert res.returncode == 0, res.stderr
    web = json.loads(res.stderr.strip().splitlines()[-1])["web"]
    staff = next(a for a in web["accounts"] if a["role"] == "staff")
    status, err = serve_and_login(tmp_path, staff["name"], staff["password"])
    assert status == 303, err  # the demo's login works: the demo store is served
    assert "serving the demo store demo/outreach.db" in err
    assert not (tmp_path / "var" / "outreach.db").exists()  # no empty default store was made meanwhile

    # a real store appears (e.g. residents imported): it is served, and the demo's --db is named
    (tmp_path / "people.csv").write_text("姓名,手机号\n张三,13800138000\n", encoding="utf-8")
    res = outreach(tmp_path, "contacts", "import", "people.csv")
    assert res.returncode == 0, res.stderr
    status, err = serve_and_login(tmp_path, staff["name"], staff["password"])
    assert status != 303  # the demo's accounts are not in the real store
    assert "`outreach --db sqlite:///demo/outreach.db serve` opens it" in err
