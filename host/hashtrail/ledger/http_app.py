"""Running aiohttp applications: shared by the tile server (hashtrail.ledger.serve) and
the witness (hashtrail.ledger.witness_http), so neither reaches into the other.

Why a module of its own: aiohttp is an optional extra (`hashtrail[serve]`); every
server checks for it the same way (one ConfigError with the install hint), listens the
same way (HOST:PORT, port 0 picks one, the bound URL handed to `ready`), and tests,
the demo and `serve --witness` run an application from a background thread the same
way (`serving_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from hashtrail.errors import ConfigError

if TYPE_CHECKING:
    from aiohttp import web


def require_aiohttp() -> None:
    try:
        import aiohttp.web  # noqa: F401
    except ImportError:
        raise ConfigError(
            "serving needs aiohttp", hint="install the extra: pip install 'hashtrail[serve]'"
        ) from None


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [::1]:PORT); ValueError when it is not one."""
    host, sep, port = text.rpartition(":")
    if (
        not sep
        or not host
        or not port.isascii()
        or not port.isdigit()
        or not 0 <= int(port) <= 65535
        or len(port) > 5
    ):
        raise ValueError(f"expected HOST:PORT with a port 0..65535, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def serve_app(
    app: web.Application,
    host: str,
    port: int,
    ready: Callable[[str], Awaitable[None] | None] | None = None,
) -> None:
    """Run an aiohttp application until interrupted (`serve`, `witness serve`)."""
    from aiohttp import web

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise ConfigError(
                f"cannot listen on {host}:{port}: {e.strerror or e}",
                hint="pick another --listen address or port",
            ) from None
        bound = runner.addresses[0][1] if runner.addresses else port
        shown = f"[{host}]" if ":" in host else host
        if ready is not None:
            r = ready(f"http://{shown}:{bound}/")
            if r is not None:
                await r
        # SIGTERM (a service manager's stop) ends the server as Ctrl-C does: through
        # the cleanup, which stops the fleet view's verification process; killed
        # outright, it left that process's semaphores to the resource tracker's warning
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


def available() -> bool:
    """Whether aiohttp (the `serve` extra) is installed."""
    try:
        require_aiohttp()
    except ConfigError:
        return False
    return True


@contextlib.contextmanager
def serving_app(
    build: Callable[[contextlib.ExitStack], web.Application],
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 10.0,
) -> Iterator[str]:
    """Run the application `build` makes (in the server's thread, with an ExitStack for
    what it opens there) from a background thread; yields its URL, stops it on exit."""
    require_aiohttp()
    from aiohttp import web

    started: queue.Queue[str | BaseException] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        with contextlib.ExitStack() as st:
            runner = web.AppRunner(build(st), access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, host, port).start()
                bound = runner.addresses[0][1]
                started.put(f"http://{f'[{host}]' if ':' in host else host}:{bound}/")
                await stop.wait()
            finally:
                await runner.cleanup()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as e:  # handed to the caller, never lost
            started.put(e)
        finally:
            loop.close()

    t = threading.Thread(target=run, name="hashtrail-serve", daemon=True)
    t.start()
    try:
        got = started.get(timeout=timeout)
    except queue.Empty:
        raise ConfigError(f"the server did not start within {timeout} s") from None
    if isinstance(got, BaseException):
        t.join(timeout)
        if isinstance(got, OSError):
            raise ConfigError(f"cannot listen on {host}:{port}: {got.strerror or got}") from None
        raise got
    try:
        yield got
    finally:
        loop.call_soon_threadsafe(stop.set)
        t.join(timeout)
