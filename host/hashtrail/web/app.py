"""The fleet view's routes on the `hashtrail serve` application: three pages, their
static scripts, and the JSON behind every page (README, "The fleet view in the
browser").

Why safe by default, and how:
- read-only: every route is a GET (aiohttp answers HEAD too, any other method 405),
  and the ledger is only read;
- no markup from data: the pages are static files; their scripts fetch JSON and put
  every device-supplied string into the DOM as text (`textContent`), never as HTML;
- a content-security policy on every answer forbids inline script, other origins,
  plugins, framing and `<base>`, so even markup that slipped into a page could not run;
- the listening address is the CLI's (127.0.0.1 unless `--listen`).

Why a worker thread and two side processes: verifying a ledger or decoding 10^5
readings takes long enough to stall every other request on the event loop (the tiles
among them). The quick reads run in a thread with its own connection to the ledger (an
SQLite connection belongs to the thread that opened it). Verification, which re-checks
every signature and takes seconds, runs in a process of its own with its own connection,
and so do the readings for plots, which it decodes, keeps and serialises to JSON there:
in a thread of the server either held the interpreter's lock for up to 5 ms at a time
(the switch interval) for as long as it ran, so every tile answered meanwhile waited for
it (p99 in tools/bench_serve.py: 5-20 ms while a reconcile appended, against ~1 ms with
no such thread); a process is scheduled by the OS beside the event loop instead. The
server verifies once as it starts and decodes the largest devices' readings, up to a
budget, so the first page waits for neither.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

from hashtrail.errors import HashtrailError
from hashtrail.ledger import serve
from hashtrail.ledger.ledger_db import Ledger, LedgerError
from hashtrail.ledger.witness_push import CosignedFeed
from hashtrail.web import data

if TYPE_CHECKING:
    from aiohttp import web

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
PAGES = {"/": "fleet.html", "/ledger": "ledger.html"}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".txt": "text/plain; charset=utf-8"}
_T = TypeVar("_T")
log = logging.getLogger(__name__)


def static_files() -> dict[str, tuple[bytes, str]]:
    """Every file under static/ by its URL path below /static/ (read once: the server
    answers only names it knows, so no request can reach another file)."""
    out: dict[str, tuple[bytes, str]] = {}
    root = resources.files("hashtrail.web").joinpath("static")

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            name = prefix + child.name
            if child.is_dir():
                walk(child, name + "/")
            elif "." + name.rsplit(".", 1)[-1] in _TYPES or name.endswith("LICENSE") \
                    or name.endswith("VERSION"):
                ext = "." + name.rsplit(".", 1)[-1]
                out[name] = (child.read_bytes(), _TYPES.get(ext, _TYPES[".txt"]))
    walk(root, "")
    return out


class _Worker:
    """One thread with its own ledger connection; `run(fn)` awaits fn(ledger) there."""

    def __init__(self, path: Any, name: str) -> None:
        self.path = path
        self.pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self.local = threading.local()

    def _call(self, fn: Callable[[Ledger], _T]) -> _T:
        led = getattr(self.local, "led", None)
        if led is None:
            led = self.local.led = Ledger.open(self.path)
        return fn(led)

    async def run(self, fn: Callable[[Ledger], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._call, fn)

    def close(self) -> None:
        def shut() -> None:
            led = getattr(self.local, "led", None)
            if led is not None:
                led.close()
        self.pool.submit(shut).result()
        self.pool.shutdown()


_side_ledger: Ledger | None = None      # a side process's own connection
_side_readings: data.Readings | None = None   # the readings process's decoded plots


def _side_process_start() -> None:
    """Ctrl-C in a terminal reaches the whole process group: the server stops this
    process as it shuts down, without a traceback from it. A server that is killed
    cannot: this process then ends as soon as the server has (it would otherwise wait
    for work forever, holding the server's stdout open)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        def orphaned() -> None:
            parent.join()
            os._exit(0)
        threading.Thread(target=orphaned, name="hashtrail-parent", daemon=True).start()


def _side_call(path: Any, job: Callable[..., _T], *args: Any) -> _T:
    """job(ledger, *args) in a side process, on a connection it opens once and keeps."""
    global _side_ledger
    if _side_ledger is None:
        _side_ledger = Ledger.open(path)
    return job(_side_ledger, *args)


def _fleet_job(led: Ledger) -> data.Fleet:
    return data.build_fleet(led)


def _readings(budget: int) -> data.Readings:
    global _side_readings
    if _side_readings is None:
        _side_readings = data.Readings(budget)
    return _side_readings


def _readings_job(led: Ledger, did: str, budget: int) -> bytes:
    """A device's plot columns as JSON bytes: decoded and serialised here, so that the
    server process only copies bytes (unpickling a list of 10^5 floats would hold its
    interpreter lock as long as decoding them)."""
    return json.dumps(_readings(budget).get(led, did), separators=(",", ":")).encode()


def _prefetch_job(led: Ledger, sizes: list[tuple[str, int]], budget: int) -> int:
    return _readings(budget).prefetch(led, sizes)


class _SideProcess:
    """One process, started when first asked (spawned: a fork would copy the server's
    open SQLite connections and threads), that runs jobs on the ledger at `path`."""

    def __init__(self, path: Any, what: str) -> None:
        self.path = path
        self.what = what
        self.pool: ProcessPoolExecutor | None = None

    async def run(self, job: Callable[..., _T], *args: Any) -> _T:
        if self.pool is None:
            self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_side_process_start)
        pool = self.pool
        try:
            return await asyncio.get_running_loop().run_in_executor(
                pool, _side_call, self.path, job, *args)
        except BrokenProcessPool:
            if self.pool is pool:        # the next request starts another
                self.pool = None
            pool.shutdown(wait=False)
            raise LedgerError(f"the {self.what} process stopped; ask again") from None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None


class WebView:
    """The fleet view's state: the workers, the last verification, decoded readings."""

    def __init__(self, ledger: Ledger, readings_budget: int = data.READINGS_KEPT) -> None:
        self.reads = _Worker(ledger.path, "hashtrail-web")
        self.verifier = _SideProcess(ledger.path, "verification")
        self.plots = _SideProcess(ledger.path, "readings")
        self.readings_budget = readings_budget
        self.fleet: data.Fleet | None = None
        self._pending: tuple[tuple[Any, ...], asyncio.Future[data.Fleet]] | None = None
        self.warming: asyncio.Future[None] | None = None

    async def current(self) -> data.Fleet:
        """The verification of the ledger as it is now (run again once it changed;
        concurrent requests share one run)."""
        key = await self.reads.run(data.state_key)
        if self.fleet is not None and self.fleet.key == key:
            return self.fleet
        if self._pending is not None and self._pending[0] == key:
            return await asyncio.shield(self._pending[1])
        fut = asyncio.ensure_future(self.verifier.run(_fleet_job))
        self._pending = (key, fut)
        try:
            f = await asyncio.shield(fut)
        finally:
            if self._pending is not None and self._pending[1] is fut:
                self._pending = None
        self.fleet = f
        return f

    async def readings(self, did: str) -> bytes:
        return await self.plots.run(_readings_job, did, self.readings_budget)

    async def prefetch(self, sizes: list[tuple[str, int]]) -> int:
        return await self.plots.run(_prefetch_job, sizes, self.readings_budget)

    def close(self) -> None:
        self.reads.close()
        self.verifier.close()
        self.plots.close()


def _json(obj: Any, status: int = 200, download: str | None = None) -> web.Response:
    """`obj` as a JSON answer; bytes are JSON serialised already (by a side process)."""
    from aiohttp import web
    headers = {"Cache-Control": "no-store"}
    if download is not None:
        headers["Content-Disposition"] = f'attachment; filename="{download}"'
    body = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    r = web.Response(body=body, status=status, content_type="application/json",
                     charset="utf-8", headers=headers)
    r.enable_compression()
    return r


def _int(request: web.Request, name: str, default: int) -> int:
    v = request.query.get(name)
    if v is None:
        return default
    if not v.isascii() or not v.isdigit() or len(v) > 12:
        raise data.NotFound(f"{name} must be a number")
    return int(v)


def add_routes(app: web.Application, ledger: Ledger,
               feed: CosignedFeed | None = None) -> None:
    """Register the fleet view on `app` (before the tiles' catch-all route); with a
    witness `feed`, the ledger page lists the cosignatures of the checkpoint served."""
    from aiohttp import web

    view = WebView(ledger)
    files = static_files()

    async def warm(_: web.Application) -> None:
        """Verify once as the server starts, and decode the plots of the largest devices
        that fit in the readings budget, so the first visitor does not wait for either;
        then say so (a line a script can wait for: tools/bench_serve.py does)."""
        async def run() -> None:
            t0 = time.monotonic()
            try:
                f = await view.current()
                sizes = [(d.device_id, d.entries) for d in f.report.devices]
                plotted = await view.prefetch(sizes)
            except Exception as e:      # the next request tries again and reports it
                log.warning(f"hashtrail: the fleet view could not verify the ledger: {e}")
                return
            log.info(f"hashtrail: fleet view ready: {len(sizes)} devices, "
                     f"{sum(n for _, n in sizes)} entries verified, readings of {plotted} "
                     f"decoded, in {time.monotonic() - t0:.1f} s")
        view.warming = asyncio.ensure_future(run())

    async def on_cleanup(_: web.Application) -> None:
        if view.warming is not None:
            view.warming.cancel()
        await asyncio.get_running_loop().run_in_executor(None, view.close)
    app.on_startup.append(warm)
    app.on_cleanup.append(on_cleanup)

    def page(name: str) -> Callable[[web.Request], Any]:
        body, ctype = files[name]

        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, headers={"Content-Type": ctype,
                                                    "Cache-Control": "no-cache"})
        return handler

    async def static(request: web.Request) -> web.Response:
        got = files.get(request.match_info["name"])
        if got is None:
            raise web.HTTPNotFound(text="not found\n")
        return web.Response(body=got[0], headers={"Content-Type": got[1],
                                                  "Cache-Control": "no-cache"})

    async def device_page(request: web.Request) -> web.Response:
        data.device_id_or_404(request.match_info["id"])
        body, ctype = files["device.html"]
        return web.Response(body=body, headers={"Content-Type": ctype,
                                                "Cache-Control": "no-cache"})

    async def api_fleet(request: web.Request) -> web.Response:
        f = await view.current()
        return _json(await view.reads.run(lambda led: data.fleet_json(f, led)))

    async def api_verify(request: web.Request) -> web.Response:
        f = await view.current()
        return _json(f.verify_json, download="verify.json"
                     if "download" in request.query else None)

    async def api_device(request: web.Request) -> web.Response:
        did = data.device_id_or_404(request.match_info["id"])
        f = await view.current()
        return _json(await view.reads.run(lambda led: data.device_json(led, f, did)))

    async def api_readings(request: web.Request) -> web.Response:
        did = data.device_id_or_404(request.match_info["id"])
        return _json(await view.readings(did))

    async def api_entries(request: web.Request) -> web.Response:
        did = data.device_id_or_404(request.match_info["id"])
        off, lim = _int(request, "offset", 0), _int(request, "limit", 50)
        return _json(await view.reads.run(lambda led: data.entries_page(led, did, off, lim)))

    async def api_evidence(request: web.Request) -> web.Response:
        did = data.device_id_or_404(request.match_info["id"])
        digest = request.match_info["digest"]
        doc = await view.reads.run(lambda led: data.evidence_doc(led, did, digest))
        return web.Response(text=doc, content_type="application/json", headers={
            "Content-Disposition": f'attachment; filename="fork-{did}-{digest[:16]}.json"'})

    async def api_held(request: web.Request) -> web.Response:
        did = data.device_id_or_404(request.match_info["id"])
        return _json(await view.reads.run(lambda led: data.held_json(led, did)),
                     download=f"held-{did}.json")

    async def api_proof(request: web.Request) -> web.Response:
        did = data.device_id_or_404(request.match_info["id"])
        seq = request.match_info["seq"]
        if not seq.isascii() or not seq.isdigit() or len(seq) > 19:
            raise data.NotFound("seq must be a number")
        doc = await view.reads.run(lambda led: data.proof_json(led, did, int(seq)))
        return _json(doc, download=f"proof-{did}-{seq}.json"
                     if "download" in request.query else None)

    async def api_ledger(request: web.Request) -> web.Response:
        served = feed.served() if feed is not None else None
        return _json(await view.reads.run(lambda led: data.ledger_json(led, served)))

    for path, name in PAGES.items():
        app.router.add_get(path, _guarded(page(name)))
    app.router.add_get("/device/{id}", _guarded(device_page))
    app.router.add_get("/static/{name:.+}", _guarded(static))
    app.router.add_get("/api/fleet", _guarded(api_fleet))
    app.router.add_get("/api/verify", _guarded(api_verify))
    app.router.add_get("/api/ledger", _guarded(api_ledger))
    app.router.add_get("/api/device/{id}", _guarded(api_device))
    app.router.add_get("/api/device/{id}/readings", _guarded(api_readings))
    app.router.add_get("/api/device/{id}/entries", _guarded(api_entries))
    app.router.add_get("/api/device/{id}/held", _guarded(api_held))
    app.router.add_get("/api/device/{id}/evidence/{digest}", _guarded(api_evidence))
    app.router.add_get("/api/proof/{id}/{seq}", _guarded(api_proof))


def _guarded(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
             ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`handler` answering every error as a response, all with the security headers.
    Per route rather than a middleware: a middleware runs for every request, the tiles
    too, which carry the headers already (hashtrail.ledger.serve.make_app)."""
    from aiohttp import web

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            resp: web.StreamResponse = await handler(request)
        except data.NotFound as e:
            resp = web.Response(status=404, text=f"{e}\n")
        except (HashtrailError, sqlite3.Error) as e:
            resp = web.Response(status=503, text=f"the ledger cannot be read now: {e}\n")
        except web.HTTPException as e:     # 404: answered as a response, not raised
            resp = web.Response(status=e.status, text=e.text, headers=e.headers)
        except Exception:                  # a bug: logged, answered with the headers too
            log.exception(f"hashtrail: {request.method} {request.path}")
            resp = web.Response(status=500, text="internal error\n")
        resp.headers.update(SECURITY_HEADERS)
        return resp
    return guarded


def make_app(ledger: Ledger, feed: CosignedFeed | None = None) -> web.Application:
    """The `hashtrail serve` application: the tiles and the fleet view, every answer
    with the security headers (405s too: the tiles' catch-all route answers them for
    every path); `feed` as in hashtrail.ledger.serve.make_app."""
    return serve.make_app(ledger, feed, before=lambda a: add_routes(a, ledger, feed),
                          extra_headers=SECURITY_HEADERS)
