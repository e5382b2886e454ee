"""The fleet view's JSON and its safety, against the real `hashtrail serve` application
on a loopback port, over a ledger with a device in each state verify reports
(tests/e2e/webkit.py).

What must hold: the fleet's numbers and statuses are exactly `hashtrail verify --json`'s;
a proof from the view is `hashtrail ledger prove --json`'s and verifies; the entries
table pages through every entry once; readings and fork evidence are the ledger's;
device markup comes back as data only (pages are static files that never contain it);
every method but GET/HEAD is 405 and nothing changes the ledger; every answer carries
the content-security policy."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from hashtrail.chain.evidence import check_evidence
from hashtrail.cli import build_parser, main
from hashtrail.formats import note
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.proof import check_inclusion_proof
from hashtrail.web import data
from hashtrail.web.app import CSP
from hashtrail.web.data import Series
from tileskit import Server
from webkit import XSS_LABEL, XSS_SENSOR, FleetLedger, make_fleet_ledger, served

pytest.importorskip("aiohttp")
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fl(tmp_path_factory: pytest.TempPathFactory) -> FleetLedger:
    return make_fleet_ledger(tmp_path_factory.mktemp("web") / "fleet.db")


@pytest.fixture(scope="module")
def url(fl: FleetLedger) -> Iterator[str]:
    with served(fl.path) as u:
        yield u


def _get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, data=b"x" if method in ("POST", "PUT")
                                 else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def _json(url: str) -> Any:
    status, headers, body = _get(url)
    assert status == 200, (url, body)
    assert headers["content-type"].startswith("application/json")
    return json.loads(body)


def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    main(list(argv))
    return json.loads(capsys.readouterr().out)


def test_fleet_says_what_verify_json_says(fl: FleetLedger, url: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    want = _cli_json(capsys, "verify", "--ledger", str(fl.path), "--json")
    assert _json(url + "api/verify") == want
    fleet = _json(url + "api/fleet")
    for k in ("ok", "size", "root", "checkpoints", "problems", "notes"):
        assert fleet[k] == want[k], k
    rows = {d["id"]: d for d in fleet["devices"]}
    assert sorted(rows) == sorted(d["device_id"] for d in want["devices"])
    for d in want["devices"]:
        row = rows[d["device_id"]]
        assert {k: row[k] for k in d} == d          # every field verify reports, equal
    by_role = {role: rows[did] for role, did in fl.ids.items()}
    assert by_role["xss"]["status"] == "ok" and by_role["xss"]["entries"] == 61
    assert by_role["cp"]["status"].startswith("unprotected until checkpoint")
    assert by_role["cp"]["pending"] > 0
    assert by_role["forked"]["status"] == "forked" and by_role["forked"]["evidence"] == 1
    assert by_role["revoked"]["status"] == "revoked"
    with Ledger.open(fl.path) as led:
        for role, did in fl.ids.items():
            dev = led.device(did)
            assert dev is not None
            assert by_role[role]["fingerprint"] == hashlib.sha256(dev.pub).hexdigest()
            assert by_role[role]["label"] == dev.label
    assert by_role["xss"]["label"] == XSS_LABEL      # data as stored, escaped by the page
    assert by_role["cp"]["last_collection"]["seq"] == 39
    assert by_role["xss"]["fw"] == "0.1.0"


def test_a_proof_from_the_view_is_the_cli_proof_and_verifies(
        fl: FleetLedger, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    key = note.Verifier.from_string(fl.verifier_key)
    for role, seq in (("xss", 37), ("cp", 5), ("cp", 0)):
        did = fl.ids[role]
        doc = _json(f"{url}api/proof/{did}/{seq}")
        assert doc == _cli_json(capsys, "ledger", "prove", "--ledger", str(fl.path),
                                "--device", did, "--seq", str(seq), "--json")
        pc = check_inclusion_proof(doc, key, device_id=did)
        assert (pc.device_id, pc.seq) == (did, seq)
    status, headers, _ = _get(f"{url}api/proof/{fl.ids['xss']}/3?download=1")
    assert status == 200 and "attachment" in headers["content-disposition"]
    assert _get(f"{url}api/proof/{fl.ids['xss']}/999")[0] == 404   # not in the ledger


def test_entries_page_through_every_entry_once(fl: FleetLedger, url: str) -> None:
    did = fl.ids["xss"]
    seen: list[int] = []
    off = 0
    while True:
        page = _json(f"{url}api/device/{did}/entries?offset={off}&limit=25")
        assert page["total"] == 61
        if not page["entries"]:
            break
        seen += [e["seq"] for e in page["entries"]]
        off += 25
    assert seen == list(range(60, -1, -1))          # newest first, each once
    first = _json(f"{url}api/device/{did}/entries?offset=0&limit=1")["entries"][0]
    assert first["kind"] == "reading" and first["signed"]
    assert {v["n"] for v in first["values"]} == {"temp", XSS_SENSOR}


def test_readings_are_the_ledgers(fl: FleetLedger, url: str) -> None:
    r = _json(f"{url}api/device/{fl.ids['xss']}/readings")
    assert len(r["t"]) == 60 and r["t"] == sorted(r["t"])
    series = {s["name"]: s for s in r["series"]}
    assert set(series) == {"temp", XSS_SENSOR}
    assert series["temp"]["unit"] == "Cel"
    assert series["temp"]["v"] == [20 + i % 7 for i in range(60)]
    cp = _json(f"{url}api/device/{fl.ids['cp']}/readings")
    assert len(cp["t"]) == 39   # readings 1..39: accepted up to the last checkpoint


def test_fork_evidence_downloads_and_proves_the_fork(fl: FleetLedger, url: str) -> None:
    did = fl.ids["forked"]
    info = _json(f"{url}api/device/{did}")
    (ev,) = info["evidence"]
    status, headers, body = _get(f"{url}api/device/{did}/evidence/{ev['digest']}")
    assert status == 200 and "attachment" in headers["content-disposition"]
    v = check_evidence(body.decode())
    assert (v.device_id, v.seq) == (did, 6) and ev["seq"] == 6
    held = _json(f"{url}api/device/{fl.ids['cp']}/held")["held"]
    assert held and all(h["seq"] > 39 for h in held)
    assert _json(f"{url}api/device/{fl.ids['cp']}")["held"] == [
        {"seq": h["seq"], "entry_hash": h["entry_hash"], "signed": False} for h in held]


def test_ledger_page_data(fl: FleetLedger, url: str) -> None:
    led = _json(url + "api/ledger")
    assert led["verifier_key"] == fl.verifier_key and led["origin"] == "example.com/fleet"
    assert led["checkpoints"][-1]["size"] == led["size"]
    assert all(s["kind"] == "ledger" for c in led["checkpoints"] for s in c["signatures"])
    assert led["collectors"][0]["name"] == "test collector"


def test_pages_are_static_and_carry_no_device_text(fl: FleetLedger, url: str) -> None:
    for path in ("", "ledger", f"device/{fl.ids['xss']}"):
        status, headers, body = _get(url + path)
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert b"<script>" not in body and b"onerror" not in body   # only <script src>
        assert b"<script src=" in body
    scripts = b"".join(_get(f"{url}static/{n}")[2] for n in
                       ("common.js", "fleet.js", "device.js", "ledger.js"))
    assert b"innerHTML" not in scripts and b"insertAdjacentHTML" not in scripts
    assert b"document.write" not in scripts
    # everything from this server (no CDN): the pages name only same-origin files, which
    # are the package's own, uPlot among them
    static = Path(__file__).resolve().parents[2] / "host" / "hashtrail" / "web" / "static"
    for html in static.glob("*.html"):
        refs = re.findall(rb'(?:src|href)="([^"]*)"', html.read_bytes())
        assert refs and all(r.startswith((b"/", b"data:")) and not r.startswith(b"//")
                            for r in refs), html
        for r in refs:
            if r.startswith(b"/static/"):
                got = _get(url + r[1:].decode())
                assert got[0] == 200 and got[2] == (static / r[8:].decode()).read_bytes()
    fetched = re.findall(rb'getJSON\([`"]([^`"]*)', scripts)
    assert fetched and all(f.startswith(b"/api/") for f in fetched), fetched


def test_read_only_and_csp_on_every_answer(fl: FleetLedger, url: str) -> None:
    assert isinstance(fl.path, Path)
    before = hashlib.sha256(fl.path.read_bytes()).hexdigest()
    did = fl.ids["xss"]
    paths = ["", "ledger", f"device/{did}", "api/fleet", "api/ledger", f"api/device/{did}",
             f"api/proof/{did}/1", "static/fleet.js", "checkpoint", "tile/0/000.p/1"]
    for p in paths:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            status, headers, _ = _get(url + p, method)
            assert status == 405, (p, method)
            assert headers["content-security-policy"] == CSP
        status, headers, _ = _get(url + p)
        assert status == 200, p
        assert headers["content-security-policy"] == CSP
        assert headers["x-content-type-options"] == "nosniff"
    for p in ("device/" + did.upper(), "device/xyz", f"api/device/{'0' * 32}",
              "static/../app.py", "static/%2e%2e/app.py", "static/nope.js",
              f"api/device/{did}/entries?offset=-1", "api/proof/x/1",
              "tile/0/x999/000", "nope"):        # the tiles' route: headers built in
        status, headers, _ = _get(url + p)
        assert status == 404, p
        assert headers["content-security-policy"] == CSP
    for directive in ("script-src 'self'", "object-src 'none'", "base-uri 'none'",
                      "frame-ancestors 'none'", "default-src 'self'"):
        assert directive in CSP
    assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
    assert hashlib.sha256(fl.path.read_bytes()).hexdigest() == before


def test_serve_listens_on_loopback_unless_told() -> None:
    args = build_parser().parse_args(["serve", "--ledger", "x.db"])
    assert args.listen == ("127.0.0.1", 8080)


def test_the_view_follows_the_ledger(tmp_path: Path) -> None:
    fl = make_fleet_ledger(tmp_path / "f.db")
    with served(fl.path) as u:
        did = fl.ids["xss"]
        assert next(d for d in _json(u + "api/fleet")["devices"]
                    if d["id"] == did)["status"] == "ok"
        before = _json(f"{u}api/device/{did}/readings")
        fl.grow("xss", 7)                   # readings decoded since, not all again
        after = _json(f"{u}api/device/{did}/readings")
        fresh = Series()
        with Ledger.open(fl.path) as led:
            fresh.extend(led.entry_bodies(did, 0, 67), 0)
        assert after == fresh.to_json() and len(after["t"]) == len(before["t"]) + 7
        assert next(d for d in _json(u + "api/fleet")["devices"]
                    if d["id"] == did)["entries"] == 68
        with Ledger.open(fl.path) as led:
            led.revoke(did, "test")
        assert next(d for d in _json(u + "api/fleet")["devices"]
                    if d["id"] == did)["status"] == "revoked"


@pytest.mark.postgresql
def test_the_view_on_a_postgresql_ledger(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The same view over the PostgreSQL backend (--ledger postgresql://...)."""
    import pgtest
    pgtest.require_server()
    with pgtest.databases() as made:
        fl = make_fleet_ledger(pgtest.new_database(made), key_file=tmp_path / "k")
        with served(fl.path) as u:
            want = _cli_json(capsys, "verify", "--ledger", str(fl.path), "--json")
            assert _json(u + "api/verify") == want
            rows = {d["id"]: d for d in _json(u + "api/fleet")["devices"]}
            for d in want["devices"]:
                assert {k: rows[d["device_id"]][k] for k in d} == d
            did = fl.ids["cp"]
            assert len(_json(f"{u}api/device/{did}/readings")["t"]) == 39
            doc = _json(f"{u}api/proof/{did}/5")
            check_inclusion_proof(doc, note.Verifier.from_string(fl.verifier_key),
                                  device_id=did)


def test_verification_runs_beside_the_event_loop(fl: FleetLedger,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The fleet view verifies the ledger in a process of its own, not on a thread of the
    server's: in a thread it held the interpreter's lock for seconds, 5 ms at a time, and
    every tile answered meanwhile waited (p99 of tools/bench_serve.py). Here the
    server's own build_fleet refuses to run: the view still answers, from the other
    process."""
    def not_here(led: Ledger) -> data.Fleet:
        raise AssertionError("verified on the serving process")
    monkeypatch.setattr(data, "build_fleet", not_here)
    with served(fl.path) as u:
        got = _json(u + "api/fleet")
    assert got["size"] > 0 and len(got["devices"]) == len(fl.ids)


def test_sigterm_stops_the_server_and_its_verification_process_cleanly(
        fl: FleetLedger) -> None:
    """A service manager stops `hashtrail serve` with SIGTERM. It used to kill the server
    outright: the fleet view's verification process was left to notice on its own and
    the resource tracker printed 'leaked semaphore objects'. Now SIGTERM runs the same
    cleanup as Ctrl-C: exit 0, nothing more on stderr, both side processes (verification,
    readings) gone."""
    srv = Server(Path(fl.path))
    try:
        status, _, body = srv.get("/api/fleet")
        assert status == 200, body
        assert srv.proc.stderr is not None     # the start-up warm-up says when it is done
        ready = _line_within(srv.proc.stderr, 60)
        assert ready.startswith("hashtrail: fleet view ready: "), ready
        children = _children(srv.proc.pid)
        assert len(children) >= 2, "verification and readings in processes of their own"
        srv.proc.send_signal(signal.SIGTERM)
        _, err = srv.proc.communicate(timeout=20)
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
    assert srv.proc.returncode == 0, err
    assert err == "", err
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{c}").exists() for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{c}").exists() for c in children), children


def _line_within(stream: IO[str], seconds: float) -> str:
    """The next line of `stream`, or a failure after `seconds` (a thread reads it)."""
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    t.start()
    t.join(seconds)
    assert got, f"no line within {seconds} s"
    return got[0]


def _children(pid: int) -> list[int]:
    """The processes `pid` started (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids = (task / "children").read_text().split()
        out += [int(k) for k in kids]
    return out
