"""Conventions users expect (issue 15): `-v` / `-q` backed by logging, progress bars on
a terminal only, `--json` on every command that prints data, every option documented.

The bars are checked on a real pseudo-terminal: a `hashtrail` process whose stderr is a
pty slave draws them, the same process with stderr on a pipe writes exactly its lines.
The file/flag side of HASHTRAIL_* variables is in test_cli_bad_input.py.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hashtrail.cli import build_parser, main
from hashtrail.collector.store import Store
from hashtrail.device.link import Link, LinkError
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import Device, bundle, save, trust

HOST = str(Path(__file__).resolve().parents[2] / "host")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


# -- a ledger with a witness: `ledger cosign` reports on stderr (INFO) ---------------------

@pytest.fixture
def witnessed(tmp_path: Path) -> dict[str, str]:
    led = tmp_path / "l.db"
    w = {"ledger": str(led), "key": str(tmp_path / "w.key"),
         "state": str(tmp_path / "w.state"), "cp": str(tmp_path / "cp.txt")}
    assert main(["ledger", "init", "--ledger", w["ledger"], "--origin", "example.com/l"]) == 0
    assert main(["ledger", "witness-key", "--name", "w.example", "--out", w["key"]]) == 0
    with Ledger.open(led) as lg:
        Path(w["cp"]).write_bytes(lg.latest_checkpoint())
        w["vkey"] = lg.verifier.to_string()
    return w


def _cosign(w: dict[str, str], *extra: str) -> list[str]:
    return ["ledger", "cosign", "--ledger", w["ledger"], "--key", w["key"], "--state",
            w["state"], "--verifier-key", w["vkey"], w["cp"], *extra]


def test_quiet_hides_informational_lines_never_errors(
        witnessed: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    # default: the informational line, exactly as before there were loggers
    code, out, err = _run(_cosign(witnessed), capsys)
    assert code == 0 and out.startswith("example.com/l\n")
    assert err.startswith("cosigned: example.com/l at size 0 by witness w.example "
                          "(cosigner key w.example+"), err
    assert len(err.splitlines()) == 1
    # -q, before or after the command name: stdout the same, stderr empty
    for argv in (["-q", *_cosign(witnessed)], [*_cosign(witnessed), "-q"],
                 [*_cosign(witnessed), "--quiet"]):
        code, out2, err = _run(argv, capsys)
        # the same checkpoint (the cosignature's own timestamp may differ by a second)
        same = out2.split("— w.example ")[0] == out.split("— w.example ")[0]
        assert (code, same, err) == (0, True, ""), argv
    # -q never hides an error: one line, its hint, exit 2
    code, _, err = _run(["-q", "verify", "--ledger", witnessed["state"] + ".missing"], capsys)
    assert code == 2 and err.startswith("hashtrail: error: ") and ".missing" in err
    # -v and -q together: a usage error
    code, _, err = _run(["-v", "-q", "verify", "--ledger", witnessed["ledger"]], capsys)
    assert code == 2 and "not allowed with argument" in err


def test_verbose_adds_debug_detail(witnessed: dict[str, str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["-v", *_cosign(witnessed)], capsys)
    assert code == 0
    lines = err.splitlines()
    assert lines[0].startswith("cosigned: example.com/l")    # the default line, unchanged
    assert any(x.startswith("hashtrail: debug: cli: ledger cosign: exit 0 after ")
               for x in lines), err
    code, _, err = _run(["verify", "--ledger", witnessed["ledger"], "-v"], capsys)
    assert code == 0 and "hashtrail: debug: cli: verify: exit 0 after " in err
    code, _, err = _run(["verify", "--ledger", witnessed["ledger"]], capsys)
    assert code == 0 and err == ""


def test_verbose_shows_link_retries(tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A port where nothing answers (a real pty, its other end silent): -v shows each
    re-sent HELLO, the default only the error."""
    store = tmp_path / "s.db"
    Store.open(store).close()
    master, slave = pty.openpty()
    try:
        port = os.ttyname(slave)
        argv = ["collect", "--port", port, "--store", str(store), "--deadline", "4.5"]
        code, _, err = _run(["-v", *argv], capsys)
        assert code != 0 and "hashtrail: error:" in err
        assert "hashtrail: debug: device.link: " in err
        assert "re-sent (try 2 of 3)" in err, err
        code, _, err = _run(argv, capsys)
        assert code != 0 and "re-sent" not in err and "debug" not in err
    finally:
        os.close(master)
        os.close(slave)


def test_library_logs_under_the_hashtrail_hierarchy(caplog: pytest.LogCaptureFixture
                                                    ) -> None:
    """A Python caller hears the link's notices through logging (no callback needed):
    here the re-sent requests, at DEBUG, from logger hashtrail.device.link."""
    master, slave = pty.openpty()
    try:
        link = Link(_Fd(slave), timeout=0.2)
        with caplog.at_level("DEBUG", logger="hashtrail"), pytest.raises(LinkError):
            link.hello()
    finally:
        os.close(master)
        os.close(slave)
    hits = [r for r in caplog.records if r.name == "hashtrail.device.link"]
    assert len(hits) == 2 and all(r.levelname == "DEBUG" for r in hits)


class _Fd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, n: int, timeout: float) -> bytes:
        r, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        return os.read(self.fd, n) if r else b""

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        pass


# -- progress bars: on a terminal, never elsewhere -------------------------------------

def _on_pty(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """Run `hashtrail argv` with stderr on a pseudo-terminal: (exit, stdout, what the
    terminal received)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hashtrail.cli", *argv], stdout=subprocess.PIPE,
        stderr=slave, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": HOST, "TERM": "xterm-256color", "COLUMNS": "120",
             **(env or {})})
    os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:        # the slave side closed: the process is gone
                break
            if not data:
                break
            seen += data
        elif proc.poll() is not None:
            break
    out = proc.stdout.read().decode() if proc.stdout else ""
    code = proc.wait(timeout=60)
    os.close(master)
    return code, out, bytes(seen)


def _piped(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hashtrail.cli", *argv],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": HOST})


@pytest.fixture
def ledger_and_bundle(tmp_path: Path) -> tuple[str, str]:
    d = Device(1001, per_entry_sig=True)
    d.readings(40)
    with trust(Ledger.create(tmp_path / "l.db", "test.example/ledger")) as led:
        reconcile(led, bundle([d], {d.id_hex: (0, 20)}))
    b = save(bundle([d], {d.id_hex: (20, 41)}, name="c2"), tmp_path / "b.jsonl")
    return str(tmp_path / "l.db"), str(b)


def test_progress_bars_on_a_terminal_only(ledger_and_bundle: tuple[str, str]) -> None:
    led, b = ledger_and_bundle
    # on a terminal: reconcile draws a bar (1 of 1 bundles), verify a pulsing one
    code, out, tty = _on_pty(["reconcile", "--ledger", led, b])
    assert code == 0, tty
    assert b"reconcile" in tty and b"1/1" in tty and b"bundles" in tty, tty
    assert b"\x1b[" in tty                  # drawn: terminal control sequences
    assert "ledger size 41" in out           # stdout untouched by the bar
    code, out, tty = _on_pty(["verify", "--ledger", led])
    assert code == 0 and b"verify " + led.encode() in tty, tty
    assert out.rstrip().endswith("verify: OK")
    # -q on a terminal: no bar, nothing at all on stderr
    code, _, tty = _on_pty(["verify", "--ledger", led, "-q"])
    assert code == 0 and tty == b"", tty
    # not a terminal: stderr carries exactly the command's lines (none here)
    p = _piped(["verify", "--ledger", led])
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout.rstrip().endswith("verify: OK")


def test_json_stays_pure_on_a_terminal(ledger_and_bundle: tuple[str, str]) -> None:
    """A bar is drawn on stderr only: stdout with --json is one JSON document."""
    led, _ = ledger_and_bundle
    code, out, tty = _on_pty(["verify", "--ledger", led, "--json"])
    assert code == 0 and json.loads(out)["ok"] is True and b"verify" in tty


# -- --json on every command that prints data; every option documented -----------------

def _leaves(parser: argparse.ArgumentParser, prefix: str = ""
            ) -> list[tuple[str, argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(prefix, parser)]
    return [leaf for s in subs for name, p in s.choices.items()
            for leaf in _leaves(p, f"{prefix} {name}".strip())]


def test_every_command_has_json_and_documented_options() -> None:
    parser = build_parser()
    for cmd, p in _leaves(parser):
        opts = {o for a in p._actions for o in a.option_strings}
        assert "--json" in opts, f"`hashtrail {cmd}` prints data but has no --json"
        assert {"-v", "-q"} <= opts, cmd
        for a in p._actions:
            assert a.help and a.help != argparse.SUPPRESS, (cmd, a.dest)
    top = {o for a in parser._actions for o in a.option_strings}
    assert {"--version", "-v", "-q"} <= top


def test_every_ledger_option_says_it_takes_a_url() -> None:
    """Every command's --ledger takes a SQLite file or a postgresql:// URL
    (ledger.backend), and its help says so."""
    seen = 0
    for cmd, p in _leaves(build_parser()):
        for a in p._actions:
            if "--ledger" in a.option_strings:
                seen += 1
                assert a.help and "postgresql://" in a.help and "file" in a.help, cmd
    assert seen > 10


def test_flash_json_is_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`flash --json` prints what it wrote; a refused image prints nothing on stdout.
    (Writing needs a board; the refusal path runs here, the JSON shape below.)"""
    from hashtrail.cli.flash import plan_json
    from hashtrail.device.flash import FlashPlan

    image = tmp_path / "mp.bin"
    image.write_bytes(b"\xe9" + bytes(4095))
    code, out, err = _run(["flash", "--board", "esp32", "--port", os.devnull, "--image",
                           str(image), "--json"], capsys)
    assert code == 2 and out == "" and "no pinned MicroPython image" in err, err
    plan = FlashPlan(image, "ab" * 32, "esp32", "/dev/ttyUSB0", "0x1000", [])
    assert json.loads(json.dumps(plan_json("esp32", plan))) == {
        "board": "esp32", "image": str(image), "sha256": "ab" * 32, "chip": "esp32",
        "port": "/dev/ttyUSB0", "offset": "0x1000"}


# -- exit status: 0, 1 or 2, whatever fails ---------------------------------------------

def test_every_error_exits_1_or_2() -> None:
    """Every exception a command can end with maps to 1 (a problem found) or 2 (usage or
    input): no other code for scripts to learn (README "Exit status")."""
    import importlib
    import pkgutil

    import hashtrail
    from hashtrail.errors import HashtrailError

    for m in pkgutil.walk_packages(hashtrail.__path__, "hashtrail."):
        if ".sim.rom" in m.name or "._data" in m.name or m.name.endswith("__main__"):
            continue
        importlib.import_module(m.name)
    seen: list[type[HashtrailError]] = []
    todo = [HashtrailError]
    while todo:
        c = todo.pop()
        seen.append(c)
        todo += c.__subclasses__()
    odd = {c.__qualname__: c.exit_code for c in seen if c.exit_code not in (1, 2)}
    assert not odd, odd
    assert len(seen) > 10


# -- the README's conventions block runs as printed --------------------------------------

def test_readme_conventions_block_runs_as_printed(tmp_path: Path) -> None:
    """Each line of the README's "Conventions every command shares" block, run by bash in
    an empty folder inside the project's environment (this checkout's package first)."""
    import re

    text = (Path(HOST).parent / "README.md").read_text()
    section = text.split("## Conventions every command shares\n", 1)[1].split("\n## ")[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    activate = Path(sys.executable).parent / "activate"
    script = f'set -e\n. "{activate}"\n{block}'
    p = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": HOST})
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "ledger.db").is_file() and (tmp_path / "ledger.db.key").is_file()
    assert json.loads((tmp_path / "devices.json").read_text()) == []
    assert "hashtrail: debug: cli: verify: exit 0 after" in p.stderr
    assert p.stdout.count("verify: OK") == 2


def test_library_is_silent_for_a_python_caller_after_main(
        witnessed: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """The command's stderr handler lives only while `main` runs: a Python caller of the
    library afterwards hears nothing it did not configure (not even warnings)."""
    import logging

    assert _run(["-v", "verify", "--ledger", witnessed["ledger"]], capsys)[0] == 0
    logging.getLogger("hashtrail.collector.collect").warning("a device's report")
    logging.getLogger("hashtrail.device.link").info("woken")
    assert capsys.readouterr().err == ""
    assert logging.getLogger("hashtrail").level == logging.NOTSET


def test_esptool_output_goes_to_stderr_and_follows_q_and_v(tmp_path: Path) -> None:
    """`hashtrail image` runs esptool (merge-bin, no board needed): its output is on
    stderr, so stdout is hashtrail's own line or JSON; -q makes it --silent, -v
    --verbose. `flash` runs esptool the same way (hashtrail.device.espflash.run)."""
    mp = tmp_path / "mp.bin"
    mp.write_bytes(b"\xe9" + os.urandom(199_999))

    def image(*extra: str) -> subprocess.CompletedProcess[str]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}.bin"
        return _piped(["image", "--board", "esp32", "--micropython", str(mp), "--out",
                       str(out), *extra])

    p = image("--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["board"] == "esp32"        # nothing of esptool's in it
    assert "Wrote 0x" in p.stderr, p.stderr                 # esptool's report
    p = image("-q")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.count("\n") == 1 and "MicroPython + " in p.stdout
    v = image("-v")
    assert v.returncode == 0 and "Wrote 0x" in v.stderr, v.stderr
    assert "hashtrail: debug: cli: image: exit 0 after " in v.stderr


def test_serve_json_line_and_ledger_from_the_environment(
        ledger_and_bundle: tuple[str, str]) -> None:
    """`serve --json` says where it listens as one JSON line (a script starting it on
    port 0 learns the port), the ledger coming from HASHTRAIL_LEDGER."""
    import signal
    import urllib.request

    led, _ = ledger_and_bundle
    p = subprocess.Popen([sys.executable, "-m", "hashtrail.cli", "serve", "--listen",
                          "127.0.0.1:0", "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": HOST, "HASHTRAIL_LEDGER": led})
    try:
        assert p.stdout is not None
        first = json.loads(p.stdout.readline())
        assert first["ledger"] == led and first["url"].startswith("http://127.0.0.1:")
        with urllib.request.urlopen(first["url"].rstrip("/") + "/checkpoint",
                                    timeout=10) as r:
            assert r.read().startswith(b"test.example/ledger\n20\n")
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
    assert p.returncode == 0 and err == "hashtrail: stopped\n", err
