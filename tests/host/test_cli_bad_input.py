"""Bad input: one line, exit 2, nothing touched (issue 15).

Every argument of every command that names a file, a folder or a port (enumerated from
the argparse parser in hashtrail.cli, so a new command or option fails
`test_every_argument_is_classified` until it is given a role here) is crossed with a
corpus of bad files: missing, empty, binary, 5 MB of junk, JSON nested 10,000 deep, a
hashtrail SQLite file of the wrong kind (a collector store where a ledger is expected and
vice versa), a directory. Every flag that takes a value is given malformed values. Each
run must end without a traceback, with exit 2, with one `hashtrail: error:` line naming
the path (or the flag), and with every file in the folder byte-identical and no file
created. The rest of each command line is valid, so the bad argument is the only reason
to refuse. In-process `hashtrail.cli.main` calls: no device, no subprocess.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hashtrail.cli import build_parser, main
from hashtrail.collector.store import Store
from hashtrail.device.release import ReleaseKey, keygen
from hashtrail.formats import manifest, note
from hashtrail.ledger.ledger_db import Ledger

DEVICE = "0123456789abcdef0123456789abcdef"

# The corpus: name -> how to make it in the folder (None: nothing there).
JUNK = 5 * 1024 * 1024


def _corpus(d: Path, store: Path, ledger: Path) -> dict[str, Path]:
    out = {"missing": d / "missing.dat"}
    (d / "empty.dat").write_bytes(b"")
    out["empty"] = d / "empty.dat"
    (d / "binary.dat").write_bytes(bytes(range(256)) * 4 + b"\xff\xfe\x00")
    out["binary"] = d / "binary.dat"
    (d / "junk.dat").write_bytes(hashlib.shake_256(b"junk").digest(JUNK))
    out["junk-5MB"] = d / "junk.dat"
    (d / "nested.json").write_text("[" * 10_000 + "]" * 10_000)
    out["nested-json"] = d / "nested.json"
    (d / "adir").mkdir()
    out["directory"] = d / "adir"
    out["store-db"] = store
    out["ledger-db"] = ledger
    return out


# What each argument expects, so the corpus entries that are legitimate for it are left
# out (a missing --state is a witness's first run; a directory is a fine --dir...).
ALL = ("missing", "empty", "binary", "junk-5MB", "nested-json", "directory", "store-db",
       "ledger-db")
FILES = tuple(c for c in ALL if c not in ("missing", "directory"))
ROLES: dict[str, tuple[str, ...]] = {
    "input": ALL,                                        # a file that must exist and parse
    "ledger": tuple(c for c in ALL if c != "ledger-db"),
    "store": tuple(c for c in ALL if c != "store-db"),
    "new-store": tuple(c for c in ALL if c not in ("missing", "store-db")),  # enroll
    "state": tuple(c for c in ALL if c != "missing"),    # missing: a witness's first run
    "new-file": (*FILES, "directory", "in-missing-folder"),  # must not exist yet
    "out": ("directory", "in-missing-folder"),           # written (replaced) by the command
    "dir": FILES,                                        # a folder, made when missing
    "port": ("missing", "empty", "binary", "directory"),
    "fleet-port": ("empty", "binary", "directory"),   # missing: that port's failed row
    "image": ("missing", "empty", "directory"),          # any bytes are an image
    "segments": ("missing",),   # contents are what verify-log judges (exit 1 if broken)
}

# (command path, option string or positional dest) -> role.
PATHS: dict[tuple[str, str], str] = {
    ("sim", "--dir"): "dir",
    ("image", "--micropython"): "image",
    ("image", "--out"): "out",
    ("flash", "--port"): "port",
    ("flash", "--image"): "image",
    ("deploy", "--port"): "port",
    ("release keygen", "--out"): "new-file",
    ("release build", "--key"): "input",
    ("release build", "--image"): "input",
    ("release build", "--out"): "out",
    ("update", "--port"): "port",
    ("update", "package"): "input",
    ("enroll", "--port"): "port",
    ("enroll", "--store"): "new-store",
    ("collect", "--port"): "port",
    ("collect", "--store"): "store",
    ("collect", "--mqtt-ca"): "input",
    ("collect", "--mqtt-cert"): "input",
    ("collect", "--mqtt-key"): "input",
    ("verify-log", "--pubkey"): "input",
    ("verify-log", "paths"): "segments",
    ("export", "--store"): "store",
    ("export", "--out"): "out",
    ("export", "--since"): "input",
    ("reconcile", "bundles"): "input",
    ("reconcile", "--ledger"): "ledger",
    ("reconcile", "--key-file"): "input",
    ("ledger init", "--ledger"): "new-file",
    ("ledger init", "--key-file"): "new-file",
    ("ledger checkpoint", "--ledger"): "ledger",
    ("ledger checkpoint", "--key-file"): "input",
    ("ledger prove", "--ledger"): "ledger",
    ("ledger prove", "--checkpoint"): "input",
    ("ledger consistency", "--ledger"): "ledger",
    ("ledger verify-proof", "--verifier-key-file"): "input",
    ("ledger verify-proof", "file"): "input",
    ("ledger verify-proof", "--collector-key"): "input",     # a key string, or a file
    ("ledger evidence", "--ledger"): "ledger",
    ("ledger evidence", "--out"): "out",
    ("ledger check-evidence", "file"): "input",
    ("ledger check-evidence", "--verifier-key-file"): "input",
    ("ledger witness-key", "--out"): "new-file",
    ("ledger trust", "--ledger"): "ledger",
    ("ledger trust", "key"): "input",
    ("ledger trusted", "--ledger"): "ledger",
    ("ledger cursor", "--ledger"): "ledger",
    ("ledger cursor", "--collector"): "input",
    ("ledger cosign", "--ledger"): "ledger",
    ("ledger cosign", "--key"): "input",
    ("ledger cosign", "--state"): "state",
    ("ledger cosign", "--verifier-key-file"): "input",
    ("ledger cosign", "checkpoint"): "input",
    ("ledger cosign", "--out"): "out",
    ("ledger publish", "--ledger"): "ledger",
    ("ledger publish", "--out"): "dir",
    ("serve", "--ledger"): "ledger",
    ("mirror", "--out"): "dir",
    ("serve", "--dir"): "dir",
    ("monitor", "--verifier-key-file"): "input",
    ("monitor", "--state"): "state",
    ("witness serve", "--key"): "input",
    ("witness serve", "--state"): "state",
    ("witness serve", "--verifier-key-file"): "input",
    ("mirror", "--verifier-key-file"): "input",
    ("devices list", "--ledger"): "ledger",
    ("ledger firmware", "--ledger"): "ledger",
    ("devices revoke", "--ledger"): "ledger",
    ("devices check", "--port"): "fleet-port",
    ("devices check", "--store"): "store",
    ("verify", "--ledger"): "ledger",
    ("verify", "--verifier-key-file"): "input",
}

# Flags whose value is checked as a value: malformed values, each refused with exit 2.
VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("sim", "--devices"): ("0", "x"),
    ("sim", "--board"): ("../boards/esp32", "nope"),
    ("image", "--board"): ("../boards/esp32",),
    ("flash", "--board"): ("nope",),
    ("flash", "--baud"): ("0", "fast"),
    ("deploy", "--board"): ("nope",),
    ("deploy", "--wait"): ("-1", "nan", "inf"),
    ("deploy", "--release-key"): ("04" * 10, "04" + "00" * 64),
    ("image", "--release-key"): ("04" * 10, "04" + "00" * 64),
    ("enroll", "--release-key"): ("04" * 10, "04" + "00" * 64),
    ("release build", "--counter"): ("0", "-1", "x"),
    ("release build", "--board"): ("nope", "../boards/esp32"),
    ("release build", "--version"): ("", "a b", "v" * 33),
    ("update", "--wait"): ("0", "nan"),
    ("enroll", "--baud"): ("0", "-9600"),
    ("collect", "--baud"): ("0",),
    ("collect", "--deadline"): ("0", "nan", "-5"),
    ("collect", "--max-records"): ("0", "many"),
    ("collect", "--mqtt"): ("ftp://127.0.0.1", "mqtt://", "mqtt://h:99999"),
    ("collect", "--device"): ("XYZ", DEVICE.upper()),
    ("collect", "--interval"): ("0", "nan"),
    ("collect", "--push-gap"): ("0", "nan", "-1"),
    ("verify-log", "--anchor"): ("5", "x:00", "1:" + "0" * 63),
    ("verify-log", "--policy"): ("2", "-1"),
    ("verify-log", "--pubkey"): ("04" + "00" * 64, "04" * 10),
    ("export", "--device"): ("XYZ", DEVICE.upper()),
    ("ledger prove", "--device"): ("0x" + DEVICE,),
    ("ledger prove", "--seq"): ("-1", "one"),
    ("ledger consistency", "--old"): ("0", "x"),
    ("ledger consistency", "--new"): ("0", "-3"),
    ("ledger verify-proof", "--verifier-key"): ("junk",),
    ("ledger verify-proof", "--witness-key"): ("junk",),
    ("ledger verify-proof", "--min-witnesses"): ("-1", "x"),
    ("ledger verify-proof", "--url"): ("ftp://x/", "not a url", "http://", "http://h/?q=1"),
    ("ledger verify-proof", "--seq"): ("-1", "x"),
    ("ledger evidence", "--device"): ("nope",),
    ("ledger firmware", "--device"): ("nope", DEVICE.upper()),
    ("ledger cosign", "--verifier-key"): ("junk",),
    ("ledger check-evidence", "--verifier-key"): ("junk",),
    ("mirror", "url"): ("ftp://x/", "not a url", "http://", "http://h/?q=1"),
    ("mirror", "--verifier-key"): ("junk",),
    ("monitor", "url"): ("ftp://x/", "not a url"),
    ("monitor", "--verifier-key"): ("junk",),
    ("witness serve", "--verifier-key"): ("junk",),
    ("ledger publish", "--witness"): ("ftp://x/", "not a url"),
    ("ledger publish", "--witness-key"): ("junk",),
    ("ledger publish", "--min-cosignatures"): ("-1", "x"),
    ("serve", "--witness"): ("ftp://x/", "not a url"),
    ("serve", "--witness-key"): ("junk",),
    ("serve", "--min-cosignatures"): ("-1", "x"),
    ("serve", "--witness-interval"): ("-1", "nan", "3601"),
    ("witness serve", "--listen"): ("nope", "127.0.0.1:99999"),
    ("monitor", "--device"): ("XYZ", DEVICE.upper()),
    ("monitor", "--interval"): ("-1", "nan"),
    ("monitor", "--passes"): ("0", "x"),
    ("devices revoke", "device"): ("abc",),
    ("devices check", "--baud"): ("0",),
    ("verify", "--device"): (DEVICE[:12],),
    ("verify", "--verifier-key"): ("junk+00+AAAA",),
    ("selfcheck", "--board"): ("../x",),
    ("selfcheck", "--reps"): ("0",),
    ("demo", "--devices"): ("0", "-1"),
    ("serve", "--listen"): ("nope", "127.0.0.1:99999", "127.0.0.1:-1", ":8080",
                            "127.0.0.1:08080x"),
    ("demo", "--mqtt"): ("ftp://127.0.0.1", "mqtt://"),
    ("demo", "--listen"): ("nope", "127.0.0.1:99999", ":8080"),
}

# Arguments that take no path and no checked value (free text, switches, names).
PLAIN: set[tuple[str, str]] = {
    ("enroll", "--label"), ("export", "--name"), ("export", "--show-key"),
    ("flash", "--allow-unpinned"), ("deploy", "--force"), ("sim", "--fresh"),
    ("sim", "--log"), ("collect", "--no-ack"), ("collect", "--no-set-time"),
    ("collect", "--follow"), ("collect", "--mqtt-user"), ("collect", "--mqtt-password"),
    ("collect", "--mqtt-insecure"),
    ("demo", "--keep"), ("demo", "--dir"),  # --dir: the corpus below, via DIRS
    ("demo", "--serve"),
    ("ledger init", "--origin"), ("ledger verify-proof", "--device"),
    ("ledger trust", "--name"), ("devices revoke", "--reason"),
    ("ledger prove", "--device"), ("ledger prove", "--seq"),
    ("ledger witness-key", "--name"), ("ledger publish", "--words"),
    ("mirror", "--words"), ("monitor", "--follow"), ("monitor", "--no-signatures"),
}
DIRS = {("demo", "--dir")}      # a folder role, run like ("sim", "--dir")
# Options every command takes (hashtrail.cli.logs): switches, so PLAIN for each command.
GLOBAL = ("-v", "-q")


def _package() -> bytes:
    """A well-formed update package (never sent anywhere: --port is the bad part)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key().public_bytes(serialization.Encoding.X962,
                                        serialization.PublicFormat.UncompressedPoint)
    files = {"/lib/hashtrail/app.mpy": b"M\x06"}
    return manifest.pack(manifest.sign_manifest(
        manifest.encode_payload("1.0", 2, "esp32", files), pub, ReleaseKey(key).sign),
        list(files.values()))


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[
        tuple[str, argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for s in subs:
        for name, p in s.choices.items():
            yield from _commands(p, f"{prefix} {name}".strip())


PARSER = build_parser()


def _arguments() -> dict[tuple[str, str], argparse.Action]:
    out = {}
    for cmd, p in _commands(PARSER):
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
                continue
            key = a.option_strings[0] if a.option_strings else a.dest
            if key == "--json":
                continue
            out[(cmd, key)] = a
    return out


def test_every_argument_is_classified() -> None:
    """A new command or option must say what it takes, so the fuzz below covers it."""
    known = set(PATHS) | set(VALUES) | PLAIN | {
        (cmd, opt) for cmd, _ in _commands(PARSER) for opt in GLOBAL}
    missing = sorted(k for k in _arguments() if k not in known)
    assert not missing, f"give these a role in PATHS, VALUES or PLAIN: {missing}"
    stale = sorted(k for k in set(PATHS) | set(VALUES) if k not in _arguments())
    assert not stale, f"no such argument any more: {stale}"


# -- the folder every case runs in --------------------------------------------------------

class World:
    def __init__(self, d: Path) -> None:
        self.dir = d
        self.store = d / "store.db"
        with Store.open(self.store) as st:
            self.collector_key = st.signer.verifier().to_string()
        self.ledger = d / "ledger.db"
        with Ledger.create(self.ledger, "example.com/log") as led:
            self.vkey = led.verifier.to_string()
            cp = led.latest_checkpoint()
        self.key = Path(f"{self.ledger}.key")
        self.checkpoint = d / "checkpoint.txt"
        self.checkpoint.write_bytes(cp)
        self.witness = d / "witness.key"
        self.witness.write_text(note.Signer.generate("witness.example").to_string())
        self.vkey_file = d / "vkey.txt"
        self.vkey_file.write_text(self.vkey)
        self.proof = d / "proof.json"
        self.proof.write_text("{}")
        self.bundle = d / "site.jsonl"
        assert main(["export", "--store", str(self.store), "--out", str(self.bundle)]) == 0
        self.image = d / "micropython.bin"
        self.image.write_bytes(b"\xe9" + bytes(4095))
        self.segdir = d / "segments"
        self.segdir.mkdir()
        self.pub = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint).hex()
        self.release_key = d / "release.key"
        keygen(self.release_key)
        self.package = d / "update.htu"
        self.package.write_bytes(_package())
        self.corpus = _corpus(d, self.store, self.ledger)
        self.new = d / "new.dat"          # a path that must stay missing

    def valid(self) -> dict[str, list[str]]:
        """A full command line per command, valid but for the argument under test."""
        s, led, d = str(self.store), str(self.ledger), str(self.dir)
        return {
            "sim": ["--dir", str(self.dir / "sim")],
            "image": ["--board", "esp32", "--micropython", str(self.image), "--out",
                      str(self.new)],
            "flash": ["--board", "esp32", "--port", os.devnull, "--image", str(self.image),
                      "--allow-unpinned"],
            "deploy": ["--board", "esp32", "--port", os.devnull],
            "release keygen": ["--out", str(self.new)],
            "release build": ["--key", str(self.release_key), "--version", "1.0",
                              "--counter", "2", "--board", "esp32", "--out", str(self.new)],
            "update": ["--port", os.devnull, str(self.package)],
            "enroll": ["--port", os.devnull, "--store", str(self.new), "--label", "x"],
            "collect": ["--port", os.devnull, "--store", s],
            "verify-log": ["--pubkey", self.pub, str(self.segdir)],
            "export": ["--store", s, "--out", str(self.new)],
            "reconcile": ["--ledger", led, "--key-file", str(self.key), str(self.bundle)],
            "ledger init": ["--ledger", str(self.new), "--origin", "example.com/x",
                            "--key-file", str(self.dir / "new.key")],
            "ledger checkpoint": ["--ledger", led, "--key-file", str(self.key)],
            "ledger prove": ["--ledger", led, "--device", DEVICE, "--seq", "0",
                             "--checkpoint", str(self.checkpoint)],
            "ledger consistency": ["--ledger", led, "--old", "1"],
            "ledger verify-proof": ["--verifier-key-file", str(self.vkey_file),
                                    str(self.proof)],
            "ledger evidence": ["--ledger", led, "--device", DEVICE, "--out", str(self.new)],
            "ledger check-evidence": ["--verifier-key-file", str(self.vkey_file),
                                      str(self.proof)],
            "ledger witness-key": ["--name", "w.example", "--out", str(self.new)],
            "ledger trust": ["--ledger", led, self.collector_key],
            "ledger trusted": ["--ledger", led],
            "ledger cursor": ["--ledger", led, "--collector", self.collector_key],
            "ledger cosign": ["--ledger", led, "--key", str(self.witness), "--state",
                              str(self.new), "--verifier-key-file", str(self.vkey_file),
                              "--out", str(self.dir / "out.txt"), str(self.checkpoint)],
            "ledger publish": ["--ledger", led, "--out", str(self.dir / "pub")],
            "serve": ["--ledger", led, "--listen", "127.0.0.1:0"],
            "witness serve": ["--key", str(self.witness), "--state", str(self.new),
                              "--verifier-key-file", str(self.vkey_file), "--listen",
                              "127.0.0.1:0"],
            "monitor": ["--verifier-key-file", str(self.vkey_file), "http://127.0.0.1:9/"],
            "mirror": ["--verifier-key-file", str(self.vkey_file), "--out",
                       str(self.dir / "replica"), "http://127.0.0.1:9/"],
            "devices list": ["--ledger", led],
            "ledger firmware": ["--ledger", led],
            "devices revoke": ["--reason", "x", "--ledger", led, DEVICE],
            "devices check": ["--port", os.devnull, "--store", s],
            "verify": ["--ledger", led, "--verifier-key-file", str(self.vkey_file)],
            "selfcheck": ["--board", "esp32"],
            "demo": ["--dir", d],
        }


def _snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): ("dir" if p.is_dir() else
                                    hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(d.rglob("*"))}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("bad-input"))


def _parser_of(action: argparse.Action) -> argparse.ArgumentParser:
    for _, p in _commands(PARSER):
        if any(a is action for a in p._actions):
            return p
    raise AssertionError(action)


def _replace(argv: list[str], action: argparse.Action, value: str) -> list[str]:
    """`argv` with the argument of `action` set to `value` (added when absent, and an
    option of its mutually exclusive group dropped). The valid lines put positionals
    last, in the parser's order."""
    parser = _parser_of(action)
    out = list(argv)
    for g in parser._mutually_exclusive_groups:
        if any(a.dest == action.dest for a in g._group_actions):
            for other in g._group_actions:
                for opt in other.option_strings:
                    if opt in out and other.dest != action.dest:
                        i = out.index(opt)
                        del out[i:i + 2]
    if action.option_strings:
        for opt in action.option_strings:
            if opt in out:
                out[out.index(opt) + 1] = value
                return out
        return [action.option_strings[0], value, *out]
    pos = [a.dest for a in parser._actions if not a.option_strings]
    out[len(out) - len(pos) + pos.index(action.dest)] = value
    return out


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:     # argparse refuses a value itself
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _cases() -> list[tuple[str, str, str]]:
    out = []
    for (cmd, arg), role in sorted(PATHS.items()):
        for bad in ROLES[role]:
            out.append((cmd, arg, bad))
    for cmd, arg in sorted(DIRS):
        for bad in ROLES["dir"]:
            out.append((cmd, arg, bad))
    return out


def _bad_path(world: World, bad: str) -> Path:
    if bad == "in-missing-folder":
        return world.dir / "no-such-folder" / "x.dat"
    return world.corpus[bad]


def _check_refused(world: World, argv: list[str], code: int, out: str, err: str,
                   before: dict[str, str], names: str) -> None:
    assert "Traceback" not in err + out, err
    lines = err.strip().splitlines()
    errors = [x for x in lines if x.startswith("hashtrail: error:")]
    assert code == 2, f"{argv}: exit {code}\n{err}"
    assert len(errors) == 1 and len(lines) <= 2, f"{argv}: not one error line:\n{err}"
    assert names in errors[0], f"{argv}: the error does not name {names}:\n{err}"
    assert _snapshot(world.dir) == before, f"{argv}: files changed or created"


@pytest.mark.parametrize("cmd,arg,bad", _cases())
def test_bad_file_is_refused_and_nothing_changes(world: World, cmd: str, arg: str, bad: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    action = _arguments()[(cmd, arg)]
    path = _bad_path(world, bad)
    argv = cmd.split() + _replace(world.valid()[cmd], action, str(path))
    before = _snapshot(world.dir)
    code, out, err = _run(argv, capsys)
    _check_refused(world, argv, code, out, err, before, str(path))


@pytest.mark.parametrize("cmd,arg,value",
                         [(c, a, v) for (c, a), vs in sorted(VALUES.items()) for v in vs])
def test_malformed_flag_value_is_refused(world: World, cmd: str, arg: str, value: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    action = _arguments()[(cmd, arg)]
    argv = cmd.split() + _replace(world.valid()[cmd], action, value)
    before = _snapshot(world.dir)
    code, out, err = _run(argv, capsys)
    # the line names the flag (argparse: "argument --seq: ...") or quotes the value
    named = arg if arg.startswith("-") and arg in err else repr(value) \
        if repr(value) in err else value
    assert named in (arg, repr(value)) or len(value) > 3, f"{argv}: neither named:\n{err}"
    _check_refused(world, argv, code, out, err, before, named)


def test_missing_store_is_not_created_by_collect_or_export(world: World) -> None:
    """Stores are made only by `enroll` (an explicit command); collect and export refuse
    a missing store and say to enroll first (also covered above; here the hint)."""
    store = world.dir / "never.db"
    for argv in (["collect", "--port", os.devnull, "--store", str(store)],
                 ["export", "--store", str(store), "--show-key"]):
        r = subprocess.run([sys.executable, "-m", "hashtrail.cli", *argv],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": str(
                               Path(__file__).resolve().parents[2] / "host")})
        assert r.returncode == 2, r.stderr
        assert f"{store}: no such file" in r.stderr and "hashtrail enroll" in r.stderr
        assert not store.exists()


def test_wrong_kind_names_what_the_file_is(world: World,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["verify", "--ledger", str(world.store)], capsys)
    assert code == 2 and "is a hashtrail collector store; expected a hashtrail ledger" in err
    code, _, err = _run(["export", "--store", str(world.ledger), "--show-key"], capsys)
    assert code == 2 and "is a hashtrail ledger; expected a hashtrail collector store" in err


def test_corpus_is_what_it_claims(world: World) -> None:
    c = world.corpus
    assert c["junk-5MB"].stat().st_size == JUNK
    with pytest.raises(RecursionError):
        json.loads(c["nested-json"].read_text())
    assert not c["missing"].exists() and c["directory"].is_dir()



# -- the same files named through HASHTRAIL_* variables instead of the flag ---------------

ENV = {"--ledger": "HASHTRAIL_LEDGER", "--store": "HASHTRAIL_STORE",
       "--key-file": "HASHTRAIL_LEDGER_KEY"}


def _without(argv: list[str], opt: str) -> list[str]:
    if opt not in argv:
        return argv
    i = argv.index(opt)
    return argv[:i] + argv[i + 2:]


@pytest.mark.parametrize("cmd,arg,bad", [c for c in _cases() if c[1] in ENV])
def test_bad_file_from_the_environment_is_refused_alike(
        world: World, cmd: str, arg: str, bad: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A path given by HASHTRAIL_LEDGER / HASHTRAIL_STORE / HASHTRAIL_LEDGER_KEY (the
    flag left out) meets the same checks as the flag: one line naming it, exit 2,
    nothing created or changed; the hint says which variable named it."""
    path = _bad_path(world, bad)
    monkeypatch.setenv(ENV[arg], str(path))
    argv = cmd.split() + _without(world.valid()[cmd], arg)
    before = _snapshot(world.dir)
    code, out, err = _run(argv, capsys)
    _check_refused(world, argv, code, out, err, before, str(path))
    assert f"{path} came from ${ENV[arg]}" in err, err


def test_environment_fills_a_required_flag_and_the_flag_wins(
        world: World, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, by_flag, _ = _run(["devices", "list", "--ledger", str(world.ledger), "--json"],
                            capsys)
    assert code == 0
    # no flag: without the variable argparse refuses (exit 2), with it the same answer
    monkeypatch.delenv("HASHTRAIL_LEDGER", raising=False)
    code, _, err = _run(["devices", "list"], capsys)
    assert code == 2 and "the following arguments are required: --ledger" in err, err
    monkeypatch.setenv("HASHTRAIL_LEDGER", str(world.ledger))
    assert _run(["devices", "list", "--json"], capsys)[:2] == (0, by_flag)
    # an explicit flag wins over a variable naming a missing file
    monkeypatch.setenv("HASHTRAIL_LEDGER", str(world.corpus["missing"]))
    assert _run(["devices", "list", "--ledger", str(world.ledger), "--json"],
                capsys)[:2] == (0, by_flag)
    # the store alike
    monkeypatch.setenv("HASHTRAIL_STORE", str(world.store))
    code, out, _ = _run(["export", "--show-key"], capsys)
    assert code == 0 and out.strip() == world.collector_key
    # set but empty: as if unset (the flag is required again)
    monkeypatch.setenv("HASHTRAIL_STORE", "")
    code, _, err = _run(["export", "--show-key"], capsys)
    assert code == 2 and "the following arguments are required: --store" in err, err


def test_help_names_the_variables() -> None:
    """--help says which variable stands in for which flag, and that a required flag
    is satisfied by it."""
    for cmd, p in _commands(PARSER):
        for a in p._actions:
            if a.option_strings and a.option_strings[0] in ENV:
                assert f"${ENV[a.option_strings[0]]}" in (a.help or ""), (cmd, a.help)
    top = PARSER.format_help()
    assert all(f"${v}" in top for v in ENV.values()), top
    assert "exit status: 0" in top


# -- a ledger named by a PostgreSQL URL -----------------------------------------------------
# Every --ledger takes a postgresql:// URL too (hashtrail.ledger.backend). A URL that
# leads to no usable ledger is bad input like a bad file: one line naming it (password
# hidden), exit 2, nothing made in the folder (no key file) or in the database.

UNREACHABLE = "postgresql://hashtrail:s3cret@127.0.0.1:1/ledger"


@pytest.fixture(scope="module")
def foreign_db() -> Iterator[str]:
    """A database that holds another program's table (and no hashtrail ledger)."""
    import pgtest
    pgtest.require_server()
    with pgtest.databases() as made:
        url = pgtest.new_database(made)
        import psycopg
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE TABLE invoices (id INT PRIMARY KEY, total NUMERIC)")
        yield url


def _ledger_args() -> list[tuple[str, str]]:
    return [(cmd, arg) for (cmd, arg), role in sorted(PATHS.items())
            if arg == "--ledger" and role in ("ledger", "new-file")]


@pytest.mark.parametrize("bad", ["unreachable", "foreign-tables"])
@pytest.mark.parametrize("cmd,arg", _ledger_args())
def test_bad_ledger_url_is_refused_and_nothing_changes(
        world: World, cmd: str, arg: str, bad: str, request: pytest.FixtureRequest,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = UNREACHABLE if bad == "unreachable" else request.getfixturevalue("foreign_db")
    action = _arguments()[(cmd, arg)]
    argv = cmd.split() + _replace(world.valid()[cmd], action, url)
    before = _snapshot(world.dir)
    code, out, err = _run(argv, capsys)
    _check_refused(world, argv, code, out, err, before, url.replace(":s3cret@", ":***@"))
    assert "s3cret" not in err
    if bad == "foreign-tables":
        assert "another program's tables (invoices)" in err
        import psycopg
        with psycopg.connect(url) as c:
            assert [r[0] for r in c.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public'")] == ["invoices"]
