"""Serve a ledger over HTTP as C2SP tlog-tiles, straight from its SQLite file.

Why a server when `ledger publish` writes the same files: a published folder is a
snapshot, while `hashtrail serve` follows the ledger as reconciles append (the
checkpoint is re-read on every request for it, and a tile past the last known tree
size re-reads it once), with nothing to re-run. Paths and bytes are those of
hashtrail.ledger.tiles, identical to a published folder.

Why aiohttp: one event loop with a C HTTP parser answers thousands of small GETs per
second on one core (tools/bench_serve.py), and the whole server is one handler; SQLite
reads of immutable tiles are cached in memory, so the loop rarely waits on the file.

Caching headers say what tlog-tiles promises: a tile's path names its level, index and
width, so its bytes never change (`immutable`, a year); the checkpoint changes as the
log grows (a second). Anything that is not one of the log's paths is a 404, a method
other than GET or HEAD a 405; nothing a client sends changes the ledger (it is opened
read-only in spirit: only reads are issued).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from hashtrail.errors import ConfigError, HashtrailError
from hashtrail.ledger.http_app import require_aiohttp, serve_app, serving_app
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.tiles import LedgerTiles, NotFound, TileError, WordRef, parse_path
from hashtrail.ledger.witness_push import CosignedFeed

if TYPE_CHECKING:
    from aiohttp import web

IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=1"
CONTENT_TYPES = {"checkpoint": "text/plain; charset=utf-8",
                 "tile": "application/octet-stream",
                 "word": "application/json",
                 "revocations": "application/json"}


def _headers(kind: str) -> dict[str, str]:
    return {"Content-Type": CONTENT_TYPES[kind],
            "Cache-Control": IMMUTABLE if kind == "tile" else SHORT,
            "Access-Control-Allow-Origin": "*"}


def make_app(ledger: Ledger, feed: CosignedFeed | None = None,
             before: Callable[[web.Application], None] | None = None,
             extra_headers: Mapping[str, str] | None = None) -> web.Application:
    """The aiohttp application serving `ledger` (also used by tests in-process).
    `feed`: serve only checkpoints with enough witness cosignatures (the feed's
    thread, started and stopped with the application, asks the witnesses).
    `before(app)` may add routes first (the fleet view, hashtrail.web), which then win
    over the tiles' catch-all route; that route also answers every method but GET and
    HEAD, on any path, with 405. `extra_headers` go on every answer of that route,
    built once with the rest (the fleet view's security headers: a middleware adding
    them cost every tile some 15% more CPU, tools/bench_serve.py)."""
    require_aiohttp()
    from aiohttp import web

    tiles = LedgerTiles(ledger, checkpoints=None if feed is None else feed.served)
    extra = dict(extra_headers or {})
    headers = {kind: {**_headers(kind), **extra} for kind in CONTENT_TYPES}
    not_allowed = {**extra, "Allow": "GET, HEAD"}

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="method not allowed\n", headers=not_allowed)
        path = request.rel_url.raw_path.removeprefix("/")
        try:
            kind, body = tiles.get(path)
        except (TileError, NotFound):
            return web.Response(status=404, text="not found\n", headers=extra)
        except (HashtrailError, sqlite3.Error):
            return web.Response(status=503, text="the ledger cannot be read now\n",
                                headers=extra)
        return web.Response(body=body, headers=headers[kind])

    app = web.Application(client_max_size=1024)
    if before is not None:
        before(app)
    app.router.add_route("*", "/{tail:.*}", handle)
    if feed is not None:
        async def start(_: web.Application) -> None:
            feed.start()

        async def stop(_: web.Application) -> None:
            await asyncio.get_running_loop().run_in_executor(None, feed.stop)
        app.on_startup.append(start)
        app.on_cleanup.append(stop)
    return app


def make_dir_app(folder: Path) -> web.Application:
    """An aiohttp application serving a published or mirrored folder (`ledger publish`,
    `hashtrail mirror`) with the same paths, headers and refusals as `make_app`: only
    paths tlog-tiles defines are looked up (so nothing outside the log's files, no
    `..`, no other spelling), each file read as it is on request."""
    require_aiohttp()
    from aiohttp import web

    root = folder.resolve()

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path.removeprefix("/")
        try:
            ref = parse_path(path)
        except TileError:
            return web.Response(status=404, text="not found\n")
        kind = "checkpoint" if ref is None else "word" if isinstance(ref, WordRef) \
            else "revocations" if isinstance(ref, str) else "tile"
        try:
            body = (root / path).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return web.Response(status=404, text="not found\n")
        except OSError:
            return web.Response(status=503, text="the folder cannot be read now\n")
        return web.Response(body=body, headers=_headers(kind))

    app = web.Application(client_max_size=1024)
    app.router.add_get("/{tail:.*}", handle)
    return app


def serve(ledger: Ledger | Path, host: str, port: int,
          ready: Callable[[str], Awaitable[None] | None] | None = None,
          feed: CosignedFeed | None = None) -> None:
    """Serve a ledger, or a published or mirrored folder (a Path), until interrupted;
    `ready(url)` is called once the socket listens."""
    require_aiohttp()
    if isinstance(ledger, Path):
        if not ledger.is_dir():
            raise ConfigError(f"{ledger}: not a folder",
                              hint="give the folder `ledger publish --out` or `hashtrail "
                                   "mirror --out` wrote")
        app = make_dir_app(ledger)
    else:
        app = make_app(ledger, feed)
    serve_app(app, host, port, ready)


def serving(ledger_path: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0,
            timeout: float = 10.0) -> contextlib.AbstractContextManager[str]:
    """Serve the ledger at `ledger_path` from a background thread; yields its URL and
    stops the server (and closes its ledger connection) on the way out.

    Why a thread with its own ledger connection: the demo, tests and a mirror checking
    itself talk to the server with blocking HTTP from this thread, and an SQLite
    connection belongs to the thread that opened it."""
    return serving_app(lambda st: make_app(st.enter_context(Ledger.open(ledger_path))),
                       host, port, timeout)
