"""The web console in a real browser: Debian's Chromium (/usr/bin/chromium, headless) driven by Python
playwright, against `outreach serve`'s app on 127.0.0.1 (port 0). No browser is downloaded.

Staff: log in, upload a resident file (row errors shown, rejects offered), create a campaign, rehearse it on
the simulated network, start it, let the dialer run (`outreach run --virtual-time`), see the dashboard.
Worker: log in, see only their community's queue, play a kept answer, show the number, record a callback and
close it. Screenshots go to test-artifacts/ (desktop and phone widths).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import select

from outreach.web.app import create_app
from results.models import Callback, Escalation, Resident, ScreeningRecord
from results.store import Store
from tests.web_support import PASSWORD, ROOT, World, build_world

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--lang=zh-CN"]

pytestmark = pytest.mark.slow


class Served:
    def __init__(self, app: object) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",  # type: ignore[arg-type]
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the web app did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("browserworld"))


@pytest.fixture(scope="module")
def base_url(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = Store(world.url)
    app = create_app(world.config, store, data_dir=tmp_path_factory.mktemp("webdata"))
    with Served(app) as url:
        yield url
    store.close()


@pytest.fixture(scope="module")
def browser(base_url: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="outreach-chromium-")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                                                   locale="zh-CN", timezone_id="Asia/Shanghai",
                                                   viewport={"width": 1280, "height": 900})
        yield ctx
        ctx.close()


def shot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    assert path.stat().st_size > 10_000
    return path


def login(page: object, base: str, name: str) -> None:
    page.goto(f"{base}/login")  # type: ignore[attr-defined]
    page.fill("input[name=username]", name)  # type: ignore[attr-defined]
    page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.click("form[action='/login'] button[type=submit]")  # type: ignore[attr-defined]
    assert "/login" not in page.url, page.inner_text("main")  # type: ignore[attr-defined]


def logout(page: object) -> None:
    page.click("header .who button")  # type: ignore[attr-defined]
    page.wait_for_url("**/login")  # type: ignore[attr-defined]


def _resident_csv(path: Path) -> None:
    lines = ["姓名,手机号,社区,地址,返回日期"]
    for i in range(60):
        lines.append(f"测试{i:02d},139{10000000 + i * 7919:08d},东湖社区,东湖路{i}号,2026-11-20")
    lines.append("坏号码,12345,东湖社区,东湖路99号,2026-11-20")
    lines.append("没号码,,东湖社区,东湖路98号,2026-11-20")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_staff_uploads_rehearses_starts_and_watches(browser: object, base_url: str, world: World, tmp_path: Path) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    login(page, base_url, "staff")
    assert page.url.endswith("/campaigns")
    csv = tmp_path / "返乡人员.csv"
    _resident_csv(csv)
    page.goto(f"{base_url}/upload")
    page.set_input_files("input[type=file]", str(csv))
    page.click("form[action='/upload'] button[type=submit]")
    page.wait_for_selector("#import-result")
    assert page.inner_text("#rejected") == "2"
    assert page.locator("#reject-rows tbody tr").count() == 2
    assert "手机号" in page.inner_text("#reject-rows")
    with page.expect_download() as dl:
        page.click("#rejects-link")
    assert dl.value.suggested_filename.endswith(".csv")
    shot(page, "staff-upload.png")

    page.goto(f"{base_url}/campaigns/new")
    page.fill("input[name=name]", "东湖返乡筛查")
    page.select_option("select[name=source_files]", "返乡人员.csv")
    page.fill("input[name=max_concurrent]", "5")
    page.click("form[action='/campaigns'] button[type=submit]")
    page.wait_for_selector("#btn-rehearse")
    assert "共 60 名居民" in page.inner_text("main")
    page.click("#btn-rehearse")
    page.wait_for_selector("#forecast", timeout=120_000)
    forecast = page.inner_text("#forecast")
    assert "预计" in forecast and "峰值线路" in forecast
    assert float(page.inner_text("#f-days")) > 0
    shot(page, "staff-rehearsal.png")

    page.click("#btn-start")
    page.wait_for_selector("#btn-pause")
    assert "进行中" in page.inner_text("#state")
    # the dialer service, as an operator runs it, on the same store, in virtual time
    env = {**os.environ, "OUTREACH_TURN__AUDIO_DIR": world.config.turn.audio_dir}
    run = subprocess.run(
        [sys.executable, "-m", "outreach", "--db", world.url, "run", "--virtual-time", "--exit-when-complete",
         "--campaign", "东湖返乡筛查"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    page.reload()
    page.wait_for_function("document.body.dataset.dashboard === 'ready'", timeout=30_000)
    # the numbers are refreshed in the background: the page shows the finished run within a few polls
    page.wait_for_function("parseInt(document.getElementById('k-calls').textContent, 10) >= 60", timeout=30_000)
    assert page.inner_text("#k-rate").endswith("%")
    assert page.locator("#t-communities tbody tr").count() == 1
    assert page.locator("#ch-timeline canvas").count() == 1
    shot(page, "staff-dashboard.png")
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.wait_for_function("document.body.dataset.dashboard === 'ready'", timeout=30_000)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "staff-dashboard-phone.png")
    page.close()


def test_worker_sees_own_queue_plays_answer_and_resolves(browser: object, base_url: str, world: World) -> None:
    store = Store(world.url)
    try:
        with store.session() as s:
            # a community with a kept answer audio and an open escalation for that resident
            target = None
            for community, rec_id in world.audio_records.items():
                rid = s.scalar(select(ScreeningRecord.resident_id).where(ScreeningRecord.id == rec_id))
                esc = s.scalar(select(Escalation).where(Escalation.resident_id == rid, Escalation.status == "open"))
                if esc is None:
                    esc = Escalation(resident_id=rid, campaign_id=1, record_id=rec_id, kind="flagged",
                                     community=community, priority=1, status="open", reasons=["自述发热"])
                    s.add(esc)
                    s.flush()
                target = (community, rid, esc.id, rec_id)
                break
            assert target is not None
            others = {c for (c,) in s.execute(select(Escalation.community).where(Escalation.community != target[0]))}
            name = s.scalar(select(Resident.name).where(Resident.id == target[1]))
    finally:
        store.close()
    community, resident_id, esc_id, rec_id = target
    from outreach.services.accounts import add_user

    store = Store(world.url)
    try:
        add_user(store, "worker_x", role="worker", communities=[community], password=PASSWORD, actor="test")
    finally:
        store.close()
    page = browser.new_page()  # type: ignore[attr-defined]
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, base_url, "worker_x")
    assert page.url.endswith("/queue")
    rows = page.locator("table.queue tbody tr")
    assert rows.count() >= 1
    text = page.inner_text("table.queue")
    assert community in text and not any(o in text for o in others)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "worker-queue-phone.png")
    page.click(f"a[href='/residents/{resident_id}#e{esc_id}']")
    page.wait_for_selector(f"#e{esc_id}")
    assert (name or "") in page.inner_text("h1")
    # the phone is masked until 显示号码
    assert "****" in page.inner_text("#phone")
    page.click("#show-phone")
    page.wait_for_selector("#phone .phone.shown")
    assert "****" not in page.inner_text("#phone")
    # play the kept answer audio
    audio = page.locator(f"#r{rec_id} audio")
    assert audio.count() == 1
    ok = page.evaluate(
        """async (sel) => { const a = document.querySelector(sel); a.muted = true; await a.play();
           await new Promise(r => setTimeout(r, 300)); return [a.duration, a.currentTime, a.error]; }""",
        f"#r{rec_id} audio",
    )
    assert ok[0] > 0.3 and ok[2] is None
    shot(page, "worker-resident-phone.png")
    form = page.locator(f"#e{esc_id} form.callback")
    form.locator("input[value=yes]").check()
    form.locator("select[name=action]").select_option("visit")
    form.locator("textarea[name=notes]").fill("已电话联系，明早上门测体温")
    form.locator("input[name=close]").check()
    form.locator("button[type=submit]").click()
    page.wait_for_selector("p.ok[role=status]")
    assert "已关闭" in page.inner_text(f"#e{esc_id} h2")
    assert "上门" in page.inner_text("main")
    page.set_viewport_size({"width": 1280, "height": 900})
    shot(page, "worker-resident.png")
    logout(page)
    page.close()
    store = Store(world.url)
    try:
        with store.session() as s:
            e = s.get(Escalation, esc_id)
            assert e is not None and e.status == "closed" and e.result == "reached:visit"
            cb = s.scalar(select(Callback).where(Callback.escalation_id == esc_id))
            assert cb is not None and cb.worker == "worker_x" and cb.reached
    finally:
        store.close()
