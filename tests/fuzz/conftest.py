"""Property-based fuzzing against one real hub per module, run in its own thread and event loop.

The hub serves on 127.0.0.1 port 0 from a thread of its own, so the hypothesis tests stay plain functions that
talk to it over real HTTP and WebSocket connections. After every example the harness asks whether the hub still
holds: ``/health`` answers 200, the store writer and every background loop run, the sweeps run on the stored tasks
without raising and no socket handler logged a failure. A hub found dead is replaced by a fresh one (new data dir)
so that hypothesis can replay and shrink the input that killed it.

The budget is fixed for CI (``derandomize``: the same cases on every run); ``AGENTCOM_FUZZ_EXAMPLES`` raises it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from hub.server import HubServer
from hub.settings import HubSettings
from hub.sweeps import sweep_once

EXAMPLES = int(os.environ.get("AGENTCOM_FUZZ_EXAMPLES", "600"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
"""Settings of every fuzz test: a bounded, deterministic budget."""

QUIET_PRNG_WARNING = pytest.mark.filterwarnings(
    "ignore:It looks like `register_random`:hypothesis.errors.HypothesisWarning"
)
"""Hypothesis warns, on its first example in a process whose other threads hold no reference to its own PRNG, that
the PRNG might be collected; harmless here (it is kept in a thread-local), but the suite turns warnings into errors."""

COUNTS: Counter[str] = Counter()
"""Generated cases by kind, reported at the end of the session."""


class LogProbe(logging.Handler):
    """Keeps the hub's ERROR and CRITICAL records (a failed socket handler, a crashed background loop)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class FuzzHub:
    """A real hub in a background thread; :meth:`ensure` replaces it after it died, :meth:`check` asks if it holds."""

    def __init__(self, root: Path, **overrides: Any) -> None:
        self.root = root
        self.overrides = overrides
        self.deaths: list[str] = []
        self.started = 0
        """How many hubs this handle has started (a new one after each death)."""
        self.probe = LogProbe()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.server: HubServer | None = None
        self.http: httpx.Client | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._stop = asyncio.Event()
            # No GC freezing: its collector hook is process-wide, and a hub replaced after dying may not remove it.
            settings = HubSettings(
                host="127.0.0.1",
                port=0,
                data_dir=self.root / f"hub-{uuid.uuid4().hex[:6]}",
                **{"gc_freeze": False, **self.overrides},
            )
            self.server = HubServer(settings)
            # A hub that dies stops at once: the request that killed it is answered (or cut) without the 5 s grace.
            self.server.server.config.timeout_graceful_shutdown = 0.2
            try:
                await self.server.start()
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            stop = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait([stop, self.server._task], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[list-item]
            stop.cancel()
            await self.server.stop()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(serve())
            except BaseException:  # noqa: BLE001 - a hub that fails while stopping is already counted as dead
                logging.getLogger(__name__).exception("fuzz hub thread ended with an error")
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="fuzz-hub", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the hub did not start within 30 s")
        if failure:
            raise failure[0]
        assert self.server is not None
        self.started += 1
        self.http = httpx.Client(base_url=self.server.url, timeout=15)

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():

            def halt() -> None:  # no graceful wait for open connections: a test hub holds nothing worth it
                if self.server is not None:
                    self.server.server.force_exit = True
                if self._stop is not None:
                    self._stop.set()

            try:
                self._loop.call_soon_threadsafe(halt)
            except RuntimeError:
                pass  # the loop closed meanwhile: the thread is ending
        if self._thread is not None:
            self._thread.join(30)

    def ensure(self) -> None:
        """Before an example: a hub that holds (a dead one is recorded and replaced by a fresh one)."""
        problem = self.problem()
        if problem is None:
            return
        self.deaths.append(problem)
        self.stop()
        self.probe.records.clear()
        self.start()

    # --- what the tests use -------------------------------------------------------------------------------------

    @property
    def hub(self) -> Any:
        assert self.server is not None
        return self.server.hub

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def ws_url(self) -> str:
        assert self.server is not None
        return self.server.ws_url

    def call(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 15) -> Any:
        """Run ``coro`` on the hub's loop and return its result (its exception is raised here)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def mint(self, agent_id: str, role: str = "agent") -> str:
        assert self.http is not None
        r = self.http.post("/admin/tokens", json={"agent_id": agent_id, "role": role}, headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()["token"]

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.hub.admin_token}"}

    def problem(self) -> str | None:
        """Why the hub does not hold, or None: health, the writer, the loops, a sweep, the socket handlers."""
        if self.server is None or self._thread is None or not self._thread.is_alive():
            return "the hub thread has ended"
        hub = self.hub
        if hub.failed:
            return f"background loop {hub.failed!r} crashed"
        r = None
        for attempt in range(2):  # once more on a new connection: the server may have closed a pooled one
            try:
                # With the admin token: an address that failed auth a lot is refused without one (429), by design.
                r = self.http.get("/health", headers=self.admin) if self.http is not None else None
                break
            except httpx.TransportError as exc:
                if attempt:
                    return f"/health did not answer: {exc!r}"
        if r is None or r.status_code != 200:
            return f"/health answered {r.status_code if r is not None else None}"
        if not hub.store._writer_running:
            return "the store writer is not running"
        try:
            self.call(sweep_once(hub))  # the sweeps over every stored in-flight task, now, attributed to this case
        except Exception as exc:  # noqa: BLE001 - reported as the failure
            return f"a sweep raised {exc!r}"
        bad = [r for r in self.probe.records if r.levelno >= logging.CRITICAL or "handler failed" in r.getMessage()]
        if bad:
            self.probe.records.clear()
            first = bad[0]
            detail = f": {first.exc_info[1]!r}" if first.exc_info else ""
            return f"logged {first.levelname} {first.getMessage()!r}{detail}"
        return None


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzHub]:
    """One real hub for the module; its periodic sweeps are off because every example runs one and checks it."""
    handle = FuzzHub(tmp_path_factory.mktemp("fuzz"), sweep_interval_s=3600)
    hub_logger = logging.getLogger("hub")
    hub_logger.addHandler(handle.probe)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()
        hub_logger.removeHandler(handle.probe)
        if handle.deaths:
            COUNTS["hub replaced after dying"] += len(handle.deaths)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if COUNTS:
        parts = ", ".join(f"{n} {kind}" for kind, n in sorted(COUNTS.items()))
        terminalreporter.write_sep("-", f"fuzz ({EXAMPLES} examples per test): {parts}")
