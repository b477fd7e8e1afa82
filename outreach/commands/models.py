"""`outreach models download vosk-small-cn|vosk-cn`: fetch an official Vosk Chinese model for production.

Steps, each safe to interrupt:
1. stream the zip into `<dir>/.<archive>.part`; a rerun resumes it with an HTTP Range request (a server
   that ignores Range sends the whole file again and the part file is restarted);
2. check the archive's sha256 against the pinned value (`--sha256`, else `models.sha256.<name>` in the
   config, else the built-in pin); a mismatch deletes the part file;
3. unzip into a temp folder beside the target, refusing absolute paths, `..`, links and entries outside
   the model's folder, and check the model's layout;
4. move the folder into place with a rename (an existing model is replaced only with --force).

Checksums: alphacephei.com publishes no checksums for these archives and none could be verified when
this was written, so the built-in pins are empty. Pin the sum you trust in the config
(`models.sha256.vosk-small-cn: <hex>`) or pass `--sha256`; `--no-verify` downloads without a pin and
prints the sum so it can be pinned. See docs/voice.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx
import typer

from outreach.context import fail, get_ctx

app = typer.Typer(help="Speech models (Vosk) for production recognition.", no_args_is_help=True)

CHUNK = 1 << 16
MAX_UNPACKED_BYTES = 8 << 30  # refuse zip bombs: the big Chinese model unpacks to ~1.3 GB


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    archive: str  # file name on the server
    folder: str  # top-level folder inside the zip, and the installed folder name
    sha256: str | None  # built-in pin (None: not published / not verified)
    size: int | None  # expected archive size in bytes, informational
    required: tuple[str, ...]  # files that must exist in the unpacked model


MODELS: dict[str, ModelSpec] = {
    "vosk-small-cn": ModelSpec(
        name="vosk-small-cn",
        archive="vosk-model-small-cn-0.22.zip",
        folder="vosk-model-small-cn-0.22",
        sha256=None,
        size=43_898_754,  # as listed on alphacephei.com/vosk/models (reference/voicebot.md)
        required=("am/final.mdl", "conf/mfcc.conf"),
    ),
    "vosk-cn": ModelSpec(
        name="vosk-cn",
        archive="vosk-model-cn-0.22.zip",
        folder="vosk-model-cn-0.22",
        sha256=None,
        size=None,
        required=("am/final.mdl", "conf/mfcc.conf"),
    ),
}


class DownloadError(RuntimeError):
    """The download, the checksum or the archive failed; the message says what and what to do."""


# ----------------------------------------------------------------------------- download


def _content_range_start(value: str | None) -> int | None:
    # "bytes 1000-4999/5000"
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def download(url: str, part: Path, progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Stream `url` into `part`, resuming what is already there. Returns `part` once complete.

    Raises DownloadError on HTTP errors and interruptions (the part file is kept for the next run).
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    timeout = httpx.Timeout(30.0, read=120.0)
    try:
        with httpx.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as resp:
            if resp.status_code == 416 and have:
                return part  # the part file already holds the whole archive
            if resp.status_code == 206 and _content_range_start(resp.headers.get("Content-Range")) == have:
                mode, done = "ab", have
            elif resp.status_code == 200:
                mode, done = "wb", 0  # no resume support: start over
            else:
                raise DownloadError(f"{url}: HTTP {resp.status_code} {resp.reason_phrase}")
            length = resp.headers.get("Content-Length")
            total = done + int(length) if length and length.isdigit() else None
            with part.open(mode) as f:
                for chunk in resp.iter_bytes(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            if total is not None and done != total:
                raise DownloadError(f"{url}: got {done} of {total} bytes; run the command again to resume")
    except httpx.HTTPError as exc:
        got = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"{url}: download interrupted after {got} bytes ({exc}); run the command again to resume"
        ) from exc
    return part


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- safe unzip


def _check_member(info: zipfile.ZipInfo, folder: str, archive: str) -> PurePosixPath:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DownloadError(f"{archive}: entry {name!r} is a symbolic link; refusing the archive")
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise DownloadError(f"{archive}: entry {name!r} has an absolute or Windows path; refusing the archive")
    path = PurePosixPath(name)
    if any(part in ("..", "") for part in path.parts) or not path.parts:
        raise DownloadError(f"{archive}: entry {name!r} escapes the model folder; refusing the archive")
    if path.parts[0] != folder:
        raise DownloadError(f"{archive}: entry {name!r} is outside the expected folder {folder}/")
    return path


def safe_unzip(zip_path: Path, folder: str, dest_parent: Path) -> Path:
    """Unpack `zip_path` (whose entries must all sit under `folder/`) into a new temp dir in `dest_parent`.

    Returns the unpacked `<tmp>/<folder>` path. Nothing is written outside the temp dir.
    """
    archive = zip_path.name
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive}: not a valid zip archive ({exc})") from exc
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.unpack-", dir=dest_parent))
    try:
        with zf:
            infos = zf.infolist()
            members = [(info, _check_member(info, folder, archive)) for info in infos]
            if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
                raise DownloadError(f"{archive}: unpacks to more than {MAX_UNPACKED_BYTES >> 30} GiB; refusing")
            for info, rel in members:
                target = tmp.joinpath(*rel.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp / folder


def install_model(
    spec: ModelSpec,
    dest_dir: Path,
    url: str,
    expected_sha256: str | None,
    *,
    force: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[Path, str]:
    """Download, verify, unpack and move a model into `dest_dir/<folder>`. Returns (path, archive sha256).

    `expected_sha256=None` skips verification (the caller decided so); the computed sum is returned.
    """
    target = dest_dir / spec.folder
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists (use --force to replace it)")
    dest_dir.mkdir(parents=True, exist_ok=True)
    part = dest_dir / f".{spec.archive}.part"
    download(url, part, progress)
    digest = sha256_of(part)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{spec.archive}: sha256 mismatch: expected {expected_sha256.lower()}, got {digest}; "
            "the download was deleted"
        )
    unpacked = safe_unzip(part, spec.folder, dest_dir)
    staging = unpacked.parent
    try:
        missing = [r for r in spec.required if not (unpacked / r).is_file()]
        if missing:
            raise DownloadError(f"{spec.archive}: not a Vosk model, missing {', '.join(missing)}")
        info = {"model": spec.name, "url": url, "sha256": digest, "verified": expected_sha256 is not None}
        info["installed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (unpacked / ".download.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        old: Path | None = None
        if target.exists():
            old = dest_dir / f".{spec.folder}.old-{os.getpid()}"
            target.rename(old)
        os.replace(unpacked, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    part.unlink(missing_ok=True)
    return target, digest


# ----------------------------------------------------------------------------- CLI


def _model_url(base_or_url: str, spec: ModelSpec) -> str:
    if base_or_url.endswith(".zip"):
        return base_or_url
    return base_or_url.rstrip("/") + "/" + spec.archive


@app.command("download")
def download_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=f"Model: {', '.join(MODELS)}."),
    dir_: Path | None = typer.Option(None, "--dir", help="Folder for models (default: models.dir)."),
    url: str | None = typer.Option(None, "--url", help="Base URL or full archive URL (default: models.base_url)."),
    sha256: str | None = typer.Option(None, "--sha256", help="Expected sha256 of the archive (overrides the pin)."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Download without a pinned sha256; print the sum."),
    force: bool = typer.Option(False, "--force", help="Replace a model that is already installed."),
) -> None:
    """Download an official Vosk Chinese model, verify its checksum, and unpack it safely."""
    spec = MODELS.get(name)
    if spec is None:
        fail(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
        return
    cfg = get_ctx(ctx).config().models
    expected = sha256 or cfg.sha256.get(name) or spec.sha256
    if expected is not None and (len(expected) != 64 or any(c not in "0123456789abcdefABCDEF" for c in expected)):
        fail(f"sha256 for {name} must be 64 hex digits, got {expected!r}")
    if expected is None and not no_verify:
        fail(
            f"no sha256 is pinned for {name} (the model site publishes none); pass --sha256 HEX from a source "
            f"you trust, set models.sha256.{name} in the config, or use --no-verify to download and print the sum"
        )
    dest = dir_ if dir_ is not None else Path(cfg.dir)
    src = _model_url(url or cfg.base_url, spec)
    if (dest / spec.folder).exists() and not force:
        fail(f"{dest / spec.folder} already exists (use --force to replace it)")

    bar_ctx: contextlib.AbstractContextManager[Callable[[int, int | None], None] | None]
    if sys.stdout.isatty():
        bar_ctx = _rich_bar(spec.archive, spec.size)
    else:
        bar_ctx = contextlib.nullcontext(None)
    try:
        with bar_ctx as progress:
            path, digest = install_model(spec, dest, src, expected, force=force, progress=progress)
    except DownloadError as exc:
        fail(str(exc), code=1)
        return
    except FileExistsError as exc:
        fail(str(exc))
        return
    except OSError as exc:
        fail(f"cannot install into {dest}: {exc}", code=1)
        return
    print(f"installed {name} at {path}")
    if expected is None:
        print(f"sha256 {digest} (NOT verified; pin it as models.sha256.{name} in the config)")
    else:
        print(f"sha256 {digest} verified")


@contextlib.contextmanager
def _rich_bar(label: str, size: int | None) -> Iterator[Callable[[int, int | None], None]]:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn()) as bar:
        task = bar.add_task("download", total=size)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total or size)

        yield update
