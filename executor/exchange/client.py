"""Building the python-binance ``AsyncClient`` the bot uses, and tapping its responses.

``make_client`` constructs the client directly (``AsyncClient.create`` would ping real
Binance), points it at a profile's endpoints, and makes the configured timeout the one
every request uses (python-binance's ``REQUEST_TIMEOUT``, the per-request
``requests_params`` timeout and the session default all agree).

python-binance keeps only the *last* response on ``client.response``; with concurrent
requests that attribute can belong to someone else's request by the time a caller reads
it. The client built here carries an aiohttp client middleware (``send_middleware``) that
records each response's status and headers into a per-task ``capture_response()`` slot, so
the REST gateway reads the usage headers of exactly its own request. (A middleware, not a
trace config: aiohttp awaits every trace signal of every request, which cost ~0.14 ms per
order on the tick-to-order path, bench/RESULTS.md #11.)

The same middleware can **hold** a request: ``capture_response(hold=awaitable)`` makes the
next request of the task wait, fully built and signed, until ``hold`` has completed, just
before aiohttp takes a connection and writes it. The order manager uses it to prepare an
order's request while the ledger commits its record-before-send: nothing is written to
the socket before the record is durable, and if ``hold`` raises, the request is dropped
unsent and ``NotSent`` raised. ``holds_requests(client)`` says whether a client carries the
middleware (only clients from ``make_client`` do); for any other, the caller must wait for
``hold`` itself before calling.

The requests of one decision (the legs of a hedge) are written back to back: the order
manager announces each in the decision's loop iteration (``join_send_group``) and sends it
inside ``send_leg``; at its hold point the middleware then also waits, at most
``SEND_GROUP_WAIT_S``, until the decision's other requests are built too (``SendLeg``).

The session builds its requests with ``FormBodyRequest``: python-binance hands an HMAC-signed
POST/PUT/DELETE body to aiohttp as a list of (key, value) strings, which aiohttp turns into
a ``FormData`` (a multipart writer with a random boundary, then ``urlencode``) -- a third of
an order's preparation on the tick path (bench/RESULTS.md, "#11/#15 ..."). Where every key
and value is made of characters form encoding leaves as they are (our symbols, sides,
decimal strings, client ids, timestamps, the hex signature), the body is those same bytes
joined directly; anything else takes aiohttp's own path.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
import weakref
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.client_middlewares import ClientHandlerType
from binance import AsyncClient

from executor.exchange.credentials import Credentials
from executor.venue.endpoints import Endpoints, apply_to_client


@dataclass
class CapturedResponse:
    """Status and headers of the last HTTP response seen inside ``capture_response()``."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    hold: Awaitable[object] | None = None  # the next request waits for it (see the module docstring)

    @property
    def seen(self) -> bool:
        return self.status is not None


_CURRENT: contextvars.ContextVar[CapturedResponse | None] = contextvars.ContextVar(
    "executor_rest_capture", default=None)


class NotSent(Exception):
    """A held request was dropped before anything was written: what it waited for failed."""


async def release_after(hold: Awaitable[object]) -> None:
    """Wait for ``hold``; its failure becomes ``NotSent`` (the request must not leave)."""
    try:
        # Shielded: a sender cancelled while it waits must not cancel what it waits for
        # (an order's record may still be committing; its outcome is the record's).
        await asyncio.shield(hold)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise NotSent(f"request not sent: {type(exc).__name__}: {exc}") from exc


async def send_middleware(req: aiohttp.ClientRequest, handler: ClientHandlerType) -> aiohttp.ClientResponse:
    """Hold the request until the task's ``hold`` completes (then connect and write it), and
    record the response's status and headers in the task's ``capture_response()`` slot."""
    slot = _CURRENT.get()
    if slot is not None and slot.hold is not None:
        hold, slot.hold = slot.hold, None  # one request per hold (a -1021 retry is not held again)
        await release_after(hold)
        leg = _LEG.get()
        if leg is not None:
            await leg.prepared()  # the decision's other requests: written back to back
    response = await handler(req)
    if slot is not None:
        slot.status = response.status
        slot.headers = response.headers
    return response


# How long a prepared request of a decision waits for the decision's other requests to be
# prepared too (``SendLeg.prepared``): well above a request's preparation (0.1 ms warm,
# 0.4-0.6 ms in the two-leg bench), and a bound on what a leg held up elsewhere (the weight
# budget, the 429 gate) can cost the others.
SEND_GROUP_WAIT_S = 0.002


class _SendGroup:
    """The held requests announced in one loop iteration (one decision's legs)."""

    __slots__ = ("pending", "timer", "waiting")

    def __init__(self) -> None:
        self.pending = 0  # announced, neither prepared nor gone
        # Prepared and waiting for the others, in the order they got there: each its own
        # future, so a waiter's cancellation touches no other (and each wakes in one hop).
        self.waiting: list[asyncio.Future[None]] = []
        self.timer: asyncio.TimerHandle | None = None

    def settle(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.release()

    def release(self) -> None:
        waiting, self.waiting = self.waiting, []
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class SendLeg:
    """One held request of a decision whose requests are written back to back.

    ``join_send_group()`` (synchronously, in the decision's loop iteration) announces it;
    ``send_leg(leg)`` around the send makes the middleware wait, once the request is built
    and its ``hold`` has completed, until every other request announced in that iteration
    is built too (or gone: failed, not sent, or not through a holding client), for at most
    ``SEND_GROUP_WAIT_S``. Then they are written one after another in the order they were
    announced, with no preparation between the writes. Why: a write can cost this thread
    its CPU (the receiving process woken onto it: 0.5-0.7 ms p50 for the first leg's write
    in the two-leg bench, where the exchange shares the 2-core machine), and a later leg's
    preparation must not wait behind it. aiohttp writes the body from a task of its own:
    on Python 3.11 that task runs after the tasks already queued, so the legs' writes
    happened to be adjacent anyway; from 3.12 it starts eagerly, inside ``send``, i.e.
    before the next leg is built. This makes the order explicit, whatever the versions
    (bench/RESULTS.md, "#15 two legs, session 7"). Nothing is written earlier than before:
    a leg waits only after its own hold (the order's record-before-send) has completed;
    the last leg never waits. A decision with one request is not delayed at all."""

    __slots__ = ("_group", "_settled")

    def __init__(self, group: _SendGroup) -> None:
        self._group = group
        self._settled = False

    async def prepared(self) -> None:
        """This leg's request is built and may leave: wait for the group (see the class)."""
        if self._settled:
            return
        self._settled = True
        group = self._group
        released = bool(group.waiting)
        group.settle()
        if group.pending == 0:
            if released:
                # The legs prepared earlier (announced earlier) are written first: their
                # wake-ups are queued already, this one's comes after them.
                await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        group.waiting.append(fut)
        if group.timer is None:
            group.timer = loop.call_later(SEND_GROUP_WAIT_S, group.release)
        await fut

    def leave(self) -> None:
        """This leg will not reach its write through the middleware (any more): the others
        do not wait for it. Idempotent."""
        if not self._settled:
            self._settled = True
            self._group.settle()


_LEG: contextvars.ContextVar[SendLeg | None] = contextvars.ContextVar("executor_send_leg", default=None)
_OPEN_GROUPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SendGroup] = weakref.WeakKeyDictionary()


def _close_group(loop: asyncio.AbstractEventLoop, group: _SendGroup) -> None:
    if _OPEN_GROUPS.get(loop) is group:
        del _OPEN_GROUPS[loop]


def join_send_group() -> SendLeg:
    """Announce a held request of the current decision (see ``SendLeg``). Call it in the
    loop iteration the decision is made in; every request announced in that iteration is
    one group."""
    loop = asyncio.get_running_loop()
    group = _OPEN_GROUPS.get(loop)
    if group is None:
        group = _OPEN_GROUPS[loop] = _SendGroup()
        loop.call_soon(_close_group, loop, group)  # the next iteration's decisions: a new group
    group.pending += 1
    return SendLeg(group)


@contextlib.contextmanager
def send_leg(leg: SendLeg) -> Iterator[None]:
    """The requests made inside are ``leg``'s (its first held one waits for the group);
    on leaving, ``leg`` no longer holds the others up."""
    token = _LEG.set(leg)
    try:
        yield
    finally:
        _LEG.reset(token)
        leg.leave()


def leave_send_group() -> None:
    """The current task's request will not pass the middleware: release its group."""
    leg = _LEG.get()
    if leg is not None:
        leg.leave()


# What urlencode leaves unchanged (quote_plus's always-safe set): such a pair needs no escaping.
_FORM_SAFE = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch
_FORM = "application/x-www-form-urlencoded"


def plain_form_body(body: object) -> bytes | None:
    """``body`` (a list of (key, value) strings) form-encoded, if no character of it needs
    escaping (then it is exactly what ``urlencode`` gives); None otherwise."""
    if type(body) is not list:
        return None
    parts = []
    for pair in body:
        if type(pair) is not tuple or len(pair) != 2:
            return None
        key, value = pair
        if type(key) is not str or type(value) is not str or not (_FORM_SAFE(key) and _FORM_SAFE(value)):
            return None
        parts.append(f"{key}={value}")
    return "&".join(parts).encode("ascii")


class FormBodyRequest(aiohttp.ClientRequest):
    """aiohttp's request, with python-binance's signed form bodies encoded without FormData
    (see the module docstring); byte for byte what ``urlencode`` would send."""

    def update_body_from_data(self, body: Any, _stacklevel: int = 3) -> None:
        if self.headers.get(aiohttp.hdrs.CONTENT_TYPE) == _FORM:
            plain = plain_form_body(body)
            if plain is not None:
                body = plain
        super().update_body_from_data(body, _stacklevel + 1)


# Clients whose session runs ``send_middleware`` (built by ``make_client``).
_HOLDING: weakref.WeakSet[AsyncClient] = weakref.WeakSet()


def holds_requests(client: object) -> bool:
    """True if ``client``'s requests honour ``capture_response(hold=...)``."""
    try:
        return client in _HOLDING
    except TypeError:  # not weak-referenceable: certainly not one of ours
        return False


@contextlib.contextmanager
def capture_response(hold: Awaitable[object] | None = None) -> Iterator[CapturedResponse]:
    """Collect the status/headers of requests made by this task inside the block; with
    ``hold``, the first request waits for it before it is written (``holds_requests``)."""
    slot = CapturedResponse(hold=hold)
    token = _CURRENT.set(slot)
    try:
        yield slot
    finally:
        _CURRENT.reset(token)


def _key_arguments(creds: Credentials) -> dict[str, Any]:
    if creds.api_secret:
        return {"api_key": creds.api_key, "api_secret": creds.api_secret}
    pem = creds.private_key_pem
    assert pem
    password = creds.private_key_pass
    if password and creds.kind != "RSA":
        # python-binance imports Ed25519 keys without the passphrase (and mistakes a long
        # encrypted PEM for RSA), so decrypt here and hand it the plain PEM.
        from Crypto.PublicKey import ECC

        try:
            pem = ECC.import_key(pem, passphrase=password).export_key(format="PEM")
        except (ValueError, IndexError, TypeError):
            raise ValueError("could not decrypt the Ed25519 private key (wrong passphrase?)") from None
        password = None
    return {"api_key": creds.api_key, "private_key": pem, "private_key_pass": password}


def make_client(endpoints: Endpoints, creds: Credentials, *, timeout_s: float,
                recv_window_ms: int | None = None) -> AsyncClient:
    """A python-binance ``AsyncClient`` for ``endpoints``, with no network I/O.

    Call it inside the running event loop (the aiohttp session binds to it). Close it
    with ``await client.close_connection()``. The clock offset starts at 0: sync it with
    ``ServerClock`` (the ``RestGateway`` does so in ``start()``).
    """
    timeout = float(timeout_s)
    if not timeout > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    if recv_window_ms is not None and not 0 < recv_window_ms <= 60_000:
        raise ValueError(f"recv_window_ms must be in 1..60000, got {recv_window_ms!r}")
    client = AsyncClient(
        **_key_arguments(creds),
        requests_params={"timeout": timeout},
        session_params={
            "timeout": aiohttp.ClientTimeout(total=timeout),
            "middlewares": (send_middleware,),
            "request_class": FormBodyRequest,
        },
        testnet=False,
        demo=False,
    )
    client.REQUEST_TIMEOUT = timeout
    if recv_window_ms is not None:
        client.REQUEST_RECVWINDOW = recv_window_ms
    apply_to_client(client, endpoints)
    _HOLDING.add(client)
    return client
