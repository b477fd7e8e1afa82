"""kill -9 of the sending process between the provider's acceptance and the store: after a restart the
dispatcher asks the provider (Twilio: messages to the number; Aliyun: QuerySendDetails by OutId) and
neither resends what the provider has nor loses what it does not have."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from results.store import Store
from tests.fake_aliyun import FakeAliyun
from tests.fake_twilio import FakeTwilio
from tests.sms_helpers import T0, aliyun_gateway, dispatcher, messages, plan_texts, residents, twilio_gateway

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import asyncio, sys
sys.path.insert(0, {root!r})
from results.store import Store
from tests.sms_helpers import T0, dispatcher
from sms.gateways import AliyunGateway, TwilioGateway
store = Store({url!r})
if {kind!r} == "twilio":
    gw = TwilioGateway("AC" + "0" * 32, "test-token", from_number="+15005550006", base_url={base!r}, timeout_s=60)
else:
    gw = AliyunGateway("LTAI-test", "test-secret", sign_name="健康热线", endpoint={base!r}, protocol="http", timeout_s=60)
d = dispatcher(store, gw, concurrency=1, batch=50)
asyncio.run(d.run_once())
"""


@pytest.mark.parametrize("kind", ["twilio", "aliyun"])
def test_kill_9_between_send_and_store(sqlite_url: str, kind: str) -> None:
    store = Store(sqlite_url)
    fake: FakeTwilio | FakeAliyun = (FakeTwilio(delay_s=30.0) if kind == "twilio" else FakeAliyun(delay_s=30.0)).start()
    try:
        ids = residents(store, 10)
        plan_texts(store, ids)
        fake.faults.extend([""] * 5 + ["timeout"])  # the 6th create is accepted, then the answer hangs
        base = fake.base_url if isinstance(fake, FakeTwilio) else fake.endpoint
        code = CHILD.format(root=str(ROOT), url=sqlite_url, kind=kind, base=base)
        child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + 60
        created = (lambda: len(fake.messages)) if isinstance(fake, FakeTwilio) else (lambda: len(fake.sent))
        while created() < 6 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        assert created() == 6, "the child never reached the 6th send"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        rows = messages(store)
        # everything claimed is committed `sending`; nothing of what the provider accepted was stored
        assert [m.state for m in rows] == ["sending"] * 10
        gw = twilio_gateway(fake) if isinstance(fake, FakeTwilio) else aliyun_gateway(fake)
        d = dispatcher(store, gw, now=T0 + dt.timedelta(minutes=5))
        try:
            stats = asyncio.run(d.run_once())
        finally:
            d.close()
        assert stats.reconciled_found == 6 and stats.reconciled_resend == 4 and stats.sent == 4
        rows = messages(store)
        assert all(m.state in ("accepted", "sent", "delivered") for m in rows), [m.state for m in rows]
        if isinstance(fake, FakeTwilio):
            assert fake.duplicates() == 0 and len(fake.messages) == 10
            assert sorted(len(fake.bodies_to(m.to_phone)) for m in rows) == [1] * 10
        else:
            assert fake.duplicates() == 0 and set(fake.out_ids()) == {m.out_id for m in rows}
    finally:
        fake.stop()
        store.close()
