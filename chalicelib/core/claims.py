"""Claiming pushed events' markers: one conditional put per event, many in flight at once.

Idempotency is a conditional put per event: BatchWriteItem takes no condition, a transaction
costs two write units an item, and PartiQL's batched INSERT, which would do, has no local server
here that checks its duplicates (moto 5.2 does not), so it could not be tested. A 1,000-event
batch is therefore 1,000 requests, and our CPU per request is what a batch costs. Through
botocore a put costs about 1 ms of our CPU (its event hooks, signing, urllib3 and http.client);
through aiodynamo on aiohttp about 0.4 ms (bench/events.py --claims). So the claims, and only
they, go through aiodynamo: every other request stays with PynamoDB.

The puts run on an event loop of their own, in one background thread per process, started on
first use; a claim from any thread waits for its puts there. The loop keeps its aiohttp session,
so a warm Lambda reuses its connections to DynamoDB. Credentials come from botocore's chain (as
PynamoDB's do), read for each request so refreshed ones are used.

In-process moto (the unit tier) sees only botocore and ``requests``: tests set ``transport`` to
one that sends through ``requests`` (tests/support/claims_transport.py).
"""
from __future__ import annotations

import asyncio
import atexit
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Sequence

import botocore.session

from chalicelib.core.errors import StoreError

if TYPE_CHECKING:
    from aiodynamo.http.types import Request, Response

REQUEST_TIMEOUT_SECONDS = 5  # one put: DynamoDB answers in milliseconds, so this is a lost connection
RETRY_SECONDS = 15  # a throttled, failed or timed-out put is tried again until this long after the first try

# Set by tests: the HTTP layer to use instead of aiohttp (an async callable, Request -> Response).
transport: Optional[Callable[["Request"], Awaitable["Response"]]] = None


class _Loop:
    """An event loop in a daemon thread, and the aiohttp session that lives on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._session: Any = None
        threading.Thread(target=self.loop.run_forever, name="marker-claims", daemon=True).start()
        atexit.register(self.close)

    def run(self, coroutine) -> Any:
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result()

    def http(self):
        """The HTTP layer for aiodynamo (called on the loop). The session's connections are not
        limited: each claim limits its puts in flight, and keeps its connections for the next."""
        if transport is not None:
            return transport
        import aiohttp
        from aiodynamo.http.aiohttp import AIOHTTP

        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                                  timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS))
        return AIOHTTP(self._session)

    def close(self) -> None:
        """Close the session's connections (at exit: else aiohttp warns of them); a loop that
        does not answer within 5 s is left as it is."""
        if self._session is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._session.close(), self.loop).result(timeout=5)
            except Exception:  # noqa: BLE001 - the process is ending either way
                pass


_loop: Optional[_Loop] = None
_loop_lock = threading.Lock()


def _the_loop() -> _Loop:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = _Loop()
        return _loop


def _credentials():
    """botocore's credentials as aiodynamo's: the same chain PynamoDB signs with."""
    from aiodynamo.credentials import Credentials, Key

    class BotocoreCredentials(Credentials):
        def __init__(self) -> None:
            self._found = botocore.session.get_session().get_credentials()

        async def get_key(self, http) -> Optional[Key]:
            if self._found is None:
                return None
            frozen = self._found.get_frozen_credentials()  # refreshed by botocore when due
            return Key(frozen.access_key, frozen.secret_key, frozen.token)

        def invalidate(self) -> bool:
            return False

        def is_disabled(self) -> bool:
            return self._found is None

    return BotocoreCredentials()


class MarkerClaims:
    """Conditional puts of marker items, ``in_flight`` at a time, into one table."""

    def __init__(self, in_flight: int = 16) -> None:
        self.in_flight = max(1, in_flight)
        self._credentials: Any = None

    def put_unless(self, table: str, region: str, host: Optional[str], items: Sequence[Dict[str, Any]],
                   batch: str) -> List[bool]:
        """Put each item unless an item with its key exists whose ``batch`` is not ``batch``:
        True where it was put, False where the condition failed. Raises StoreError when DynamoDB
        cannot be reached or refuses otherwise."""
        if not items:
            return []
        if self._credentials is None:
            self._credentials = _credentials()
        loop = _the_loop()
        try:
            return loop.run(self._put_all(loop, table, region, host, list(items), batch))
        except Exception as e:  # aiodynamo's errors, aiohttp's, timeouts: the first put's that failed
            raise StoreError(f"claiming pushed events failed: {type(e).__name__}: {e}") from e

    async def _put_all(self, loop: _Loop, table: str, region: str, host: Optional[str],
                       items: List[Dict[str, Any]], batch: str) -> List[bool]:
        from aiodynamo.client import Client
        from aiodynamo.errors import ConditionalCheckFailed
        from aiodynamo.expressions import F
        from aiodynamo.models import ExponentialBackoffRetry
        from yarl import URL

        client = Client(loop.http(), self._credentials, region,
                        endpoint=URL(host) if host else None,
                        throttle_config=ExponentialBackoffRetry(time_limit_secs=RETRY_SECONDS, base_delay_secs=1.5))
        condition = F("pk").does_not_exist() | F("batch").equals(batch)
        slots = asyncio.Semaphore(self.in_flight)

        async def put(item: Dict[str, Any]) -> bool:
            async with slots:
                try:
                    await client.put_item(table, item, condition=condition)
                    return True
                except ConditionalCheckFailed:
                    return False

        tasks = [asyncio.ensure_future(put(item)) for item in items]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:  # the first failure ends the claim: the puts not yet made are not made
            for task in tasks:
                task.cancel()
            raise
