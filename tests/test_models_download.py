"""`outreach models download`: streaming, resume, checksum, safe unzip, atomic install; against a local
HTTP server on 127.0.0.1 serving small zips (tests never reach the internet)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from outreach.cli import app

FOLDER = "vosk-model-small-cn-0.22"
ARCHIVE = "vosk-model-small-cn-0.22.zip"


def model_zip(entries: dict[str, bytes] | None = None, folder: str = FOLDER) -> bytes:
    rnd = hashlib.sha256(b"seed").digest() * 6000  # ~190 KB of incompressible-ish bytes
    files = entries or {
        f"{folder}/am/final.mdl": rnd,
        f"{folder}/conf/mfcc.conf": b"--sample-frequency=16000\n",
        f"{folder}/conf/model.conf": b"--min-active=200\n",
        f"{folder}/graph/words.txt": "有 1\n没有 2\n".encode(),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(zipfile.ZipInfo(f"{folder}/"), b"")
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


@dataclass
class ModelServer:
    files: dict[str, bytes] = field(default_factory=dict)
    honour_range: bool = True
    cut_after: int | None = None  # send only this many body bytes on the next request, then drop
    status: int | None = None
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/vosk/models/"


@pytest.fixture
def server() -> Iterator[ModelServer]:
    state = ModelServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            state.requests.append((self.path, rng))
            if state.status is not None:
                self.send_error(state.status)
                return
            name = self.path.rsplit("/", 1)[-1]
            data = state.files.get(name)
            if data is None:
                self.send_error(404)
                return
            start = 0
            if rng and state.honour_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if state.cut_after is not None:
                self.wfile.write(body[: state.cut_after])
                self.wfile.flush()
                state.cut_after = None
                self.close_connection = True
                return
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(tmp_path: Path, *args: str, config: str = "") -> Run:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config, encoding="utf-8")
    res = CliRunner().invoke(app, ["--config", str(cfg), "models", "download", *args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return Run(res.exit_code, res.stdout, res.stderr)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def test_download_verify_install(tmp_path: Path, server: ModelServer) -> None:
    data = model_zip()
    server.files[ARCHIVE] = data
    dest = tmp_path / "models"
    r = run(tmp_path, "vosk-small-cn", "--dir", str(dest), "--url", server.base, "--sha256", sha(data))
    assert r.code == 0, r.err
    assert r.out == f"installed vosk-small-cn at {dest / FOLDER}\nsha256 {sha(data)} verified\n"
    assert (dest / FOLDER / "am" / "final.mdl").read_bytes() == hashlib.sha256(b"seed").digest() * 6000
    assert (dest / FOLDER / "graph" / "words.txt").read_text(encoding="utf-8") == "有 1\n没有 2\n"
    info = json.loads((dest / FOLDER / ".download.json").read_text())
    assert info["sha256"] == sha(data) and info["verified"] is True
    assert info["url"] == server.base + ARCHIVE
    assert leftovers(dest) == []  # no part file, no unpack folder
    assert server.requests == [(f"/vosk/models/{ARCHIVE}", None)]


def test_url_dir_and_pin_from_config(tmp_path: Path, server: ModelServer) -> None:
    data = model_zip()
    server.files[ARCHIVE] = data
    config = f"models:\n  base_url: {server.base}\n  dir: {tmp_path / 'm'}\n  sha256:\n    vosk-small-cn: {sha(data)}\n"
    r = run(tmp_path, "vosk-small-cn", config=config)
    assert r.code == 0, r.err
    assert (tmp_path / "m" / FOLDER / "conf" / "mfcc.conf").is_file()


def test_interrupted_download_resumes(tmp_path: Path, server: ModelServer) -> None:
    data = model_zip()
    server.files[ARCHIVE] = data
    server.cut_after = 70_000
    dest = tmp_path / "models"
    args = ("vosk-small-cn", "--dir", str(dest), "--url", server.base, "--sha256", sha(data))
    first = run(tmp_path, *args)
    assert first.code == 1
    part = dest / f".{ARCHIVE}.part"
    got = part.stat().st_size  # whole chunks written before the connection dropped
    assert 0 < got <= 70_000 and part.read_bytes() == data[:got]
    assert f"download interrupted after {got} bytes" in first.err and "run the command again to resume" in first.err
    assert not (dest / FOLDER).exists()
    second = run(tmp_path, *args)
    assert second.code == 0, second.err
    assert server.requests[-1] == (f"/vosk/models/{ARCHIVE}", f"bytes={got}-")
    assert not part.exists() and (dest / FOLDER / "am" / "final.mdl").is_file()


def test_server_without_range_support_restarts(tmp_path: Path, server: ModelServer) -> None:
    data = model_zip()
    server.files[ARCHIVE] = data
    server.honour_range = False
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / f".{ARCHIVE}.part").write_bytes(b"stale bytes from some other file")
    r = run(tmp_path, "vosk-small-cn", "--dir", str(dest), "--url", server.base, "--sha256", sha(data))
    assert r.code == 0, r.err
    assert server.requests[0][1] == "bytes=32-"


def test_complete_part_file_is_not_downloaded_again(tmp_path: Path, server: ModelServer) -> None:
    data = model_zip()
    server.files[ARCHIVE] = data
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / f".{ARCHIVE}.part").write_bytes(data)
    r = run(tmp_path, "vosk-small-cn", "--dir", str(dest), "--url", server.base, "--sha256", sha(data))
    assert r.code == 0, r.err  # the server answered 416 to the range past the end


def test_checksum_mismatch_deletes_download(tmp_path: Path, server: ModelServer) -> None:
    server.files[ARCHIVE] = model_zip()
    dest = tmp_path / "models"
    wrong = "0" * 64
    r = run(tmp_path, "vosk-small-cn", "--dir", str(dest), "--url", server.base, "--sha256", wrong)
    assert r.code == 1
    assert f"error: {ARCHIVE}: sha256 mismatch: expected {wrong}, got {sha(server.files[ARCHIVE])}" in r.err
    assert leftovers(dest) == [] and not (dest / FOLDER).exists()


def test_unpinned_needs_explicit_no_verify(tmp_path: Path, server: ModelServer) -> None:
    data = model_zip()
    server.files[ARCHIVE] = data
    dest = tmp_path / "models"
    r = run(tmp_path, "vosk-small-cn", "--dir", str(dest), "--url", server.base)
    assert r.code == 2
    assert "no sha256 is pinned for vosk-small-cn" in r.err and "models.sha256.vosk-small-cn" in r.err
    assert server.requests == []  # refused before any download
    r = run(tmp_path, "vosk-small-cn", "--dir", str(dest), "--url", server.base, "--no-verify")
    assert r.code == 0, r.err
    assert f"sha256 {sha(data)} (NOT verified; pin it as models.sha256.vosk-small-cn" in r.out
    assert json.loads((dest / FOLDER / ".download.json").read_text())["verified"] is False


def symlink_entry() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(f"{FOLDER}/am/final.mdl")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (model_zip({f"{FOLDER}/../../evil.txt": b"x"}), "escapes the model folder"),
        (model_zip({"/tmp/evil.txt": b"x"}), "absolute or Windows path"),
        (model_zip({f"{FOLDER}\\..\\evil.txt": b"x"}), "absolute or Windows path"),
        (model_zip({"other-folder/evil.txt": b"x"}), f"outside the expected folder {FOLDER}/"),
        (symlink_entry(), "is a symbolic link"),
        (model_zip({f"{FOLDER}/README": b"hello"}), "not a Vosk model, missing am/final.mdl, conf/mfcc.conf"),
        (b"PK\x03\x04 this is not really a zip", "not a valid zip archive"),
    ],
)
def test_unsafe_or_wrong_archives_are_refused(
    tmp_path: Path, server: ModelServer, archive: bytes, message: str
) -> None:
    server.files[ARCHIVE] = archive
    dest = tmp_path / "a" / "b" / "models"
    r = run(tmp_path, "vosk-small-cn", "--dir", str(dest), "--url", server.base, "--sha256", sha(archive))
    assert r.code == 1
    assert message in r.err
    assert not (dest / FOLDER).exists()
    assert [p.name for p in dest.iterdir() if not p.name.endswith(".part")] == []  # no unpack folder left
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".part" and p.name != "config.yaml"]
    assert written == []  # nothing escaped anywhere


def test_existing_model_needs_force(tmp_path: Path, server: ModelServer) -> None:
    data = model_zip()
    server.files[ARCHIVE] = data
    dest = tmp_path / "models"
    (dest / FOLDER).mkdir(parents=True)
    (dest / FOLDER / "old.txt").write_text("old")
    args = ("vosk-small-cn", "--dir", str(dest), "--url", server.base, "--sha256", sha(data))
    r = run(tmp_path, *args)
    assert r.code == 2 and "already exists (use --force to replace it)" in r.err
    assert server.requests == []
    r = run(tmp_path, *args, "--force")
    assert r.code == 0, r.err
    assert not (dest / FOLDER / "old.txt").exists() and (dest / FOLDER / "am" / "final.mdl").is_file()
    assert leftovers(dest) == []


def test_bad_arguments_and_http_errors(tmp_path: Path, server: ModelServer) -> None:
    r = run(tmp_path, "vosk-en")
    assert r.code == 2 and "unknown model 'vosk-en'; choose one of: vosk-small-cn, vosk-cn" in r.err
    r = run(tmp_path, "vosk-cn", "--sha256", "xyz")
    assert r.code == 2 and "must be 64 hex digits" in r.err
    r = run(tmp_path, "vosk-cn", "--dir", str(tmp_path / "m"), "--url", server.base, "--no-verify")
    assert r.code == 1 and f"{server.base}vosk-model-cn-0.22.zip: HTTP 404" in r.err
    server.status = 503
    full = server.base + "custom-name.zip"
    r = run(tmp_path, "vosk-cn", "--dir", str(tmp_path / "m"), "--url", full, "--no-verify")
    assert r.code == 1 and f"{full}: HTTP 503" in r.err
    assert os.listdir(tmp_path / "m") == []
