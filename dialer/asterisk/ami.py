"""The AMI client: panoramisk's `Manager`, with a guard for each of its known problems.

(../shared/reference/dialer.md §4.3; read against panoramisk 1.4 and master d0df36b.)

- `KeyError: 'async'` in `Action.multi` kills the connection when a "successfully queued" reply comes for
  an action without an `Async` key: every Originate carries `Async: true` *and* is sent with
  `as_list=False`, so it completes on the ack and `multi` never reads the key.
- After a reconnect panoramisk re-sends actions that got no reply (an Originate could be dialled
  twice): every action name we send is "forgettable", the awaiting list is cleared on each disconnect,
  and the backend dedupes by ChannelId on top.
- Futures of actions cut by a disconnect are never resolved: every wait has a timeout, and our pending
  futures fail with `AmiDisconnected` the moment the connection drops.
- Its keep-alive never checks the Pong: ours sends `Ping` and aborts the connection when no reply comes
  within `ping_timeout_s`, so a half-open TCP connection is noticed in seconds.
- A failed Login leaves it silently unauthenticated: we wait for the Login reply and report a rejected
  secret as a permanent fault (`AmiAuthError`), an unreachable manager as a transient one.
- An exception in an event callback propagates out of `data_received` and drops the connection: our
  callback is wrapped.
- `Message.success` is true for any event: replies are judged by `Response` only.
- Its reconnect delay is fixed and it reconnects even after `close()`: reconnection here is ours, one
  supervising task with the project's one retry policy (`common.retry`: tenacity, jittered
  exponential backoff), every connect+login bounded by `connect_timeout_s`, stopped for good on `close()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from panoramisk import Manager
from panoramisk.message import Message

from common.retry import async_retrying
from dialer.base import TelephonyError

log = logging.getLogger(__name__)

# Every action this client sends: none is ever re-sent by panoramisk after a reconnect.
OUR_ACTIONS = ("ping", "login", "logoff", "originate", "redirect", "hangup", "coreshowchannels",
               "showdialplan", "status", "getvar", "command", "events", "challenge")


class AmiError(TelephonyError):
    """The manager interface cannot do what was asked (see subclasses)."""


class AmiDisconnected(AmiError):
    """Not connected or logged in now, or the connection dropped while waiting (transient)."""


class AmiTimeout(AmiError):
    """No reply within the time allowed (transient)."""


class AmiAuthError(AmiError):
    """Asterisk rejected the username/secret (permanent until the configuration is fixed)."""


class AmiActionError(AmiError):
    """Asterisk answered `Response: Error` (the message is Asterisk's)."""

    def __init__(self, action: str, message: str) -> None:
        super().__init__(f"AMI {action} failed: {message}")
        self.action = action
        self.reason = message


@dataclass(frozen=True, slots=True)
class AmiSettings:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "outreach"
    secret: str = ""
    events: str = "call,system,user"
    connect_timeout_s: float = 5.0
    action_timeout_s: float = 5.0
    ping_interval_s: float = 5.0
    ping_timeout_s: float = 3.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


EventHandler = Callable[[Message], None]
StateHandler = Callable[[bool, str], None]


class _Manager(Manager):
    """panoramisk's Manager with our reconnect policy and disconnect hooks."""

    pinger: asyncio.TimerHandle | None

    def __init__(self, client: AmiClient, **config: Any) -> None:
        super().__init__(**config)
        self._client = client
        self.closing = False

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if self.closing or not self._client._connecting():  # closed, or a connect that outlived its attempt
            if not f.cancelled() and f.exception() is None:
                f.result()[0].close()
            return
        if f.cancelled() or f.exception() is not None:
            exc = None if f.cancelled() else f.exception()
            self._client._connect_failed(f"cannot connect: {exc}")
            return
        super().connection_made(f)

    def connection_lost(self, exc: Any) -> None:
        self._connected = False
        self.authenticated = False
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        self.awaiting_actions.clear()
        self._client._lost(exc)

    def login(self, future: asyncio.Future[Any]) -> bool:
        self.authenticated_future = None
        try:
            resp = future.result()
        except (asyncio.CancelledError, Exception) as exc:  # the connection dropped mid-login
            self._client._login_result(False, f"login interrupted: {exc!r}")
            return False
        ok = getattr(resp, "response", "") == "Success"
        self.authenticated = ok
        self._client._login_result(ok, "" if ok else (getattr(resp, "message", "") or "Authentication failed"))
        return ok

    def ping(self) -> None:  # pragma: no cover - ours replaces it
        return None


class AmiClient:
    """One AMI connection, logged in, kept alive, reconnected; events go to `on_event`."""

    def __init__(
        self,
        settings: AmiSettings,
        *,
        on_event: EventHandler | None = None,
        on_state: StateHandler | None = None,
    ) -> None:
        self.settings = settings
        self.on_event = on_event
        self.on_state = on_state
        self._manager: _Manager | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self._ready = asyncio.Event()
        self._first_result: asyncio.Future[tuple[bool, str]] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._attempt: asyncio.Future[tuple[bool, str]] | None = None  # the connect+login under way
        self._down = asyncio.Event()  # the logged-in session ended
        self._closing = False
        self.generation = 0  # counts successful logins: a change means "we reconnected"
        self.last_error = ""
        self.auth_failed = False
        self.disconnects = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    async def start(self, *, wait: bool = True) -> None:
        """Connect and log in. Raises AmiAuthError when the secret is refused; with `wait`, raises
        AmiDisconnected when no login succeeded within `connect_timeout_s` (reconnection goes on)."""
        loop = asyncio.get_running_loop()
        s = self.settings
        self._first_result = loop.create_future()
        self._manager = _Manager(
            self, host=s.host, port=s.port, username=s.username, secret=s.secret, events=s.events,
            ping_delay=10**6, ping_interval=10**6, reconnect_timeout=10**6, loop=loop,
            forgetable_actions=OUR_ACTIONS,
        )
        self._manager.register_event("*", self._dispatch)
        self._supervisor = asyncio.create_task(self._supervise(), name="ami-connection")
        self._pinger = asyncio.create_task(self._keepalive(), name="ami-keepalive")
        if not wait:
            return
        try:
            ok, why = await asyncio.wait_for(asyncio.shield(self._first_result), s.connect_timeout_s)
        except TimeoutError:
            raise AmiDisconnected(
                f"cannot log in to AMI at {s.host}:{s.port} within {s.connect_timeout_s:.0f} s"
                f" ({self.last_error or 'no reply'}); retrying in the background"
            ) from None
        if not ok:
            if self.auth_failed:
                raise AmiAuthError(f"AMI at {s.host}:{s.port} refused user {s.username!r}: {why}")
            raise AmiDisconnected(f"cannot log in to AMI at {s.host}:{s.port}: {why}; retrying in the background")

    async def close(self) -> None:
        self._closing = True
        self._down.set()
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                pass
        if self._pinger is not None:
            self._pinger.cancel()
            try:
                await self._pinger
            except asyncio.CancelledError:
                pass
        m = self._manager
        if m is not None:
            if self.connected:
                try:
                    await self.send({"Action": "Logoff"}, wait_s=1.0)
                except AmiError as exc:
                    log.debug("AMI logoff: %s", exc)
            m.closing = True
            m.close()
        self._ready.clear()
        self._fail_pending(AmiDisconnected("AMI client closed"))

    # ------------------------------------------------------------------ actions

    async def send(self, action: dict[str, Any], *, wait_s: float | None = None, as_list: bool | None = None) -> Any:
        """Send one action; returns the reply Message (or the list for list actions).

        Raises AmiDisconnected (not logged in / dropped meanwhile), AmiTimeout, AmiActionError.
        """
        m = self._manager
        name = str(action.get("Action", "?"))
        if m is None or not self.connected or (self._closing and name.lower() != "logoff"):
            raise AmiDisconnected(f"AMI not connected; {name} not sent ({self.last_error or 'connecting'})")
        if name.lower() == "originate":
            action.setdefault("Async", "true")  # panoramisk KeyError 'async' guard
            as_list = False
        fut = m.send_action(dict(action), as_list=as_list)
        self._pending.add(fut)
        try:
            reply = await asyncio.wait_for(asyncio.shield(fut), wait_s or self.settings.action_timeout_s)
        except TimeoutError:
            raise AmiTimeout(f"AMI {name}: no reply within {wait_s or self.settings.action_timeout_s:.1f} s") from None
        finally:
            self._pending.discard(fut)
        first = reply[0] if isinstance(reply, list) and reply else reply
        response = getattr(first, "response", "") if first is not None else ""
        if response not in ("Success", "Goodbye", "Follows"):
            raise AmiActionError(name, getattr(first, "message", "") or response or "no response")
        return reply

    # ------------------------------------------------------------------ connection events

    def _connecting(self) -> bool:
        return self._attempt is not None and not self._attempt.done()

    async def _supervise(self) -> None:
        """Connect and log in; after a failure or a loss, again, waiting as the project's one retry policy
        says (common.retry). A session that lasted `backoff_max_s` or more starts the backoff afresh
        (the first reconnect is at once); one dropped sooner keeps it growing, so a manager that accepts
        and drops is not hammered. Ends on close()."""
        s = self.settings
        while not self._closing:
            policy = async_retrying(lambda e: isinstance(e, AmiDisconnected) and not self._closing, attempts=None,
                                    first_s=s.backoff_initial_s, max_s=s.backoff_max_s,
                                    before_sleep=self._before_retry)
            try:
                await policy(self._session)
            except AmiDisconnected:
                return  # closing

    def _before_retry(self, state: Any) -> None:
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.info("AMI %s:%d: reconnecting in %.2f s (try %d)", self.settings.host, self.settings.port, wait,
                 state.attempt_number + 1)

    async def _session(self) -> None:
        """One connect + login (bounded by connect_timeout_s), then the session until it is lost. Raises
        AmiDisconnected when the try failed or the session was short."""
        if self._closing or self._manager is None:
            return
        loop = asyncio.get_running_loop()
        s = self.settings
        fut = self._attempt = loop.create_future()
        self._down.clear()
        self._manager.connect()
        try:
            ok, why = await asyncio.wait_for(asyncio.shield(fut), s.connect_timeout_s)
        except TimeoutError:
            why = f"no login within {s.connect_timeout_s:.1f} s"
            self.last_error = why
            self._resolve_first(False, why)
            self._abort()
            raise AmiDisconnected(why) from None
        finally:
            self._attempt = None
        if not ok:
            raise AmiDisconnected(why)
        t0 = loop.time()
        await self._down.wait()
        if not self._closing and loop.time() - t0 < s.backoff_max_s:
            raise AmiDisconnected(f"{self.last_error} ({loop.time() - t0:.1f} s after login)")

    def _end_attempt(self, ok: bool, why: str) -> None:
        f = self._attempt
        if f is not None and not f.done():
            f.set_result((ok, why))

    def _connect_failed(self, why: str) -> None:
        self.last_error = why
        log.warning("AMI %s:%d: %s", self.settings.host, self.settings.port, why)
        self._resolve_first(False, why)
        self._end_attempt(False, why)

    def _login_result(self, ok: bool, why: str) -> None:
        if ok:
            self.generation += 1
            self.auth_failed = False
            self.last_error = ""
            self._ready.set()
            log.info("AMI %s:%d: logged in (session %d)", self.settings.host, self.settings.port, self.generation)
            self._notify(True, "logged in")
        else:
            self.last_error = why
            self.auth_failed = "authentication" in why.lower()
            log.error("AMI %s:%d: login failed: %s", self.settings.host, self.settings.port, why)
        self._resolve_first(ok, why)
        self._end_attempt(ok, why)

    def _lost(self, exc: Any) -> None:
        was = self._ready.is_set()
        self._ready.clear()
        self.disconnects += 1
        why = "connection closed" if exc is None or not isinstance(exc, BaseException) else f"connection lost: {exc}"
        if self.auth_failed:
            why = f"{self.last_error} (connection closed by Asterisk)"
        self.last_error = why
        self._fail_pending(AmiDisconnected(f"AMI {why}"))
        if was and not self._closing:
            log.warning("AMI %s:%d: %s", self.settings.host, self.settings.port, why)
        if was:
            self._notify(False, why)
        self._resolve_first(False, why)
        self._end_attempt(False, why)
        if was:
            self._down.set()

    def _fail_pending(self, exc: AmiError) -> None:
        for fut in list(self._pending):
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()

    def _resolve_first(self, ok: bool, why: str) -> None:
        f = self._first_result
        if f is not None and not f.done():
            if ok or self.auth_failed or why:
                f.set_result((ok, why))

    def _notify(self, up: bool, why: str) -> None:
        if self.on_state is None:
            return
        try:
            self.on_state(up, why)
        except Exception:
            log.exception("AMI state handler failed")

    def _dispatch(self, manager: Any, message: Message) -> None:
        """panoramisk's callback: never let an exception out (it would drop the connection)."""
        if self.on_event is None:
            return
        try:
            self.on_event(message)
        except Exception:
            log.exception("AMI event handler failed on %s", getattr(message, "event", "?"))

    async def _keepalive(self) -> None:
        s = self.settings
        while not self._closing:
            await asyncio.sleep(s.ping_interval_s)
            if not self.connected:
                continue
            gen = self.generation
            try:
                await self.send({"Action": "Ping"}, wait_s=s.ping_timeout_s)
            except AmiTimeout:
                if gen == self.generation and self.connected:
                    log.warning("AMI: no Pong within %.1f s; dropping the connection", s.ping_timeout_s)
                    self._abort()
            except AmiError:
                continue

    def _abort(self) -> None:
        m = self._manager
        proto = getattr(m, "protocol", None)
        transport = getattr(proto, "transport", None)
        if transport is not None:
            transport.abort()
