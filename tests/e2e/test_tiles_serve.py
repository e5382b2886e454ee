"""`hashtrail serve` and `ledger verify-proof --url`: the ledger over HTTP as tlog-tiles,
served by a real `hashtrail serve` process on loopback from a real ledger file.

The server answers with the bytes `ledger publish` writes, with the cache headers the
spec asks for; follows the ledger as a reconcile appends; refuses what is not one of
the log's paths (4xx) without changing the ledger; restarts serving identical tiles.
A proof fetched over HTTP is checked down to the device's signature, and a server that
lies (another device's word, a flipped tile) is refused at the step that catches it."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.formats import note
from hashtrail.ledger import tiles
from ledgerkit import COLLECTOR
from tileskit import Server, TileLedger, make_ledger


@pytest.fixture(scope="module")
def tl(tmp_path_factory: pytest.TempPathFactory) -> TileLedger:
    return make_ledger(tmp_path_factory.mktemp("serve") / "led.db", 300, 500)


@pytest.fixture
def server(tl: TileLedger) -> Iterator[Server]:
    s = Server(tl.path)
    yield s
    s.stop()


def _published(tl: TileLedger, out: Path) -> dict[str, bytes]:
    assert main(["ledger", "publish", "--ledger", str(tl.path), "--out", str(out)]) == 0
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_serves_the_published_bytes_with_the_specs_headers(
        tl: TileLedger, server: Server, tmp_path: Path) -> None:
    files = _published(tl, tmp_path / "pub")
    assert len(files) > 5
    for path, data in files.items():
        status, headers, body = server.get("/" + path)
        assert (status, body) == (200, data), path
        if path == "checkpoint":
            assert headers["content-type"] == "text/plain; charset=utf-8"
            assert headers["cache-control"] == "public, max-age=1"
        elif path == tiles.REVOCATIONS:        # signed statements, not in the tree
            assert headers["content-type"] == "application/json"
            assert headers["cache-control"] == "public, max-age=1"
        else:
            assert headers["content-type"] == "application/octet-stream"
            assert headers["cache-control"] == "public, max-age=31536000, immutable"
    status, headers, body = server.get("/tile/0/000", "HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == "8192"


def test_bad_requests_are_4xx_and_change_nothing(tl: TileLedger, server: Server) -> None:
    before = _sha(tl.path)
    size = int(server.get("/checkpoint")[2].split(b"\n")[1])
    for path in ("/../../etc/passwd", "/tile/0/%2e%2e/000", "/tile/../checkpoint",
                 "/tile/0/..%2f..%2fetc", "//etc/passwd", "/tile/0/-001", "/tile/-1/000",
                 "/tile/0/" + "x999/" * 7 + "999", "/tile/0/" + "x999/" * 300 + "000",
                 f"/tile/0/{tiles.index_path(size // 256 + 1)}", "/tile/0/003.p/255",
                 "/tile/3/000.p/1", "/tile/entries/000.p/0", "/tile/0/000.p/256",
                 "/tile/0/1", "/tile/64/000", "/checkpoint/x", "/index.html",
                 "/hashtrail/word/" + "00" * 16 + "/000",
                 f"/hashtrail/word/{tl.unsigned.id_hex}/{tiles.index_path(10**9)}",
                 f"/hashtrail/word/{tl.unsigned.id_hex}/{tiles.index_path(2**64)}",
                 f"/hashtrail/word/{tl.unsigned.id_hex}/{tiles.index_path(2**63)}",
                 "/tile/entries/" + tiles.index_path(2**70),
                 "/tile/0/%30%30%30", "/tile/0/000\x00"):
        status, _, _ = server.get(path.replace("\x00", "%00"))
        assert status == 404, path
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert server.get("/checkpoint", method)[0] == 405
    # a request line no HTTP parser accepts, and a client that leaves mid-response
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /checkpoint HTTP/9.9 junk\r\n\r\n")
        assert s.recv(100).split(b" ")[1].startswith(b"4")
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET /tile/entries/000 HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    assert server.get("/tile/0/000")[0] == 200
    assert _sha(tl.path) == before and server.proc.poll() is None


def test_follows_the_ledger_and_restarts_identical(tl: TileLedger, tmp_path: Path) -> None:
    s = Server(tl.path)
    try:
        old = s.get("/checkpoint")[2]
        old_size = int(old.split(b"\n")[1])
        full = {p: s.get(p)[2] for p in ("/tile/0/000", "/tile/entries/000")}
        part = tiles.tile_for(0, old_size // 256, old_size).path()
        old_part = s.get("/" + part)[2]
        new_size = tl.grow(200, 300)          # a reconcile appends while it serves
        new = s.get("/checkpoint")[2]
        assert int(new.split(b"\n")[1]) == new_size > old_size
        assert s.get("/" + tiles.tile_for(0, new_size // 256, new_size).path())[0] == 200
        assert s.get("/" + part)[2] == old_part     # the old partial tile: same bytes
    finally:
        s.stop()
    s = Server(tl.path)                        # killed and restarted: identical tiles
    try:
        for p, data in full.items():
            assert s.get(p)[2] == data
        assert s.get("/" + part)[2] == old_part
    finally:
        s.proc.kill()
        s.proc.wait()



def test_a_reconcile_beside_the_server_leaves_its_reads_whole(tl: TileLedger,
                                                               tmp_path: Path) -> None:
    """The server's threads (tiles, the fleet view's workers) each open the ledger; a
    reconcile in another process, closing, must still see the server holding the file,
    so it neither checkpoints nor deletes the WAL the server reads through
    (tests/host/test_sqlite_locks.py). Before: it did, and the server answered 503
    (`database disk image is malformed`) to tiles it had not cached yet."""
    s = Server(tl.path)
    try:
        assert s.get("/api/fleet")[0] == 200      # every worker has its connection
        assert s.get("/tile/0/000")[0] == 200
        size = tl.grow(100, 200)                  # opens and closes the ledger here
        assert Path(f"{tl.path}-wal").exists()
        files = _published(tl, tmp_path / "pub")
        assert int(files["checkpoint"].split(b"\n")[1]) == size
        for path, data in files.items():
            assert s.get("/" + path)[:3:2] == (200, data), path
    finally:
        s.stop()


def test_a_killed_server_leaves_no_process_behind(tl: TileLedger) -> None:
    """The fleet view verifies in a process of its own (hashtrail.web.app): killed
    outright, the server cannot stop it, and it ends by itself."""
    s = Server(tl.path)
    try:
        assert s.get("/api/fleet")[0] == 200
        kids = [int(k) for k in Path(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children")
                .read_text().split()]
        assert kids
    finally:
        s.proc.kill()
        s.proc.communicate(timeout=30)       # returns once nothing holds its pipes
    for k in kids:
        for _ in range(100):
            if not Path(f"/proc/{k}").exists() or \
                    Path(f"/proc/{k}/stat").read_text().split(") ")[1][0] == "Z":
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"process {k} outlived the server")

# -- proofs over HTTP ---------------------------------------------------------------------

def _verify(capsys: pytest.CaptureFixture[str], url: str, vkey: str, did: str, seq: int,
            *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["ledger", "verify-proof", "--url", url, "--device", did, "--seq", str(seq),
                 "--verifier-key", vkey, *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_verify_proof_over_http(tl: TileLedger, server: Server,
                                capsys: pytest.CaptureFixture[str]) -> None:
    for dev, seq, kind in ((tl.signed, 0, "entry"), (tl.signed, 123, "entry"),
                           (tl.unsigned, 250, "checkpoint"), (tl.unsigned, 0, "checkpoint")):
        code, out, err = _verify(capsys, server.url, tl.verifier_key, dev.id_hex, seq, "--json")
        assert code == 0, err
        res = json.loads(out)["proof"]
        assert (res["device_id"], res["seq"], res["signature_kind"]) == (dev.id_hex, seq, kind)
        assert res["entry_hash"] == hashlib.sha256(dev.entries[seq][1]).hexdigest()
    # a witness the user requires has not cosigned what the log serves: fails closed
    w = note.Signer.generate("witness.example").verifier().cosigner_string()
    code, _, err = _verify(capsys, server.url, tl.verifier_key, tl.signed.id_hex, 5,
                           "--witness-key", w)
    assert code == 1 and "step 'witnesses'" in err
    # another key: refused at the ledger signature, exit 1
    other = note.Signer.generate("example.com/tiles").verifier().to_string()
    code, _, err = _verify(capsys, server.url, other, tl.signed.id_hex, 5)
    assert code == 1 and "step 'ledger signature'" in err
    # an entry the log does not hold, a dead server, a bad URL, a proof file as well
    code, _, err = _verify(capsys, server.url, tl.verifier_key, tl.signed.id_hex, 10**6)
    assert code == 2 and "HTTP 404" in err and "Traceback" not in err
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    code, _, err = _verify(capsys, f"http://127.0.0.1:{port}/", tl.verifier_key,
                           tl.signed.id_hex, 5)
    assert code == 2 and "Traceback" not in err
    with pytest.raises(SystemExit) as ex:
        main(["ledger", "verify-proof", "--url", "ftp://x/", "--device", tl.signed.id_hex,
              "--seq", "1", "--verifier-key", tl.verifier_key])
    assert ex.value.code == 2
    assert main(["ledger", "verify-proof", "--url", server.url, "--device", tl.signed.id_hex,
                 "--verifier-key", tl.verifier_key]) == 2     # no --seq
    assert "with --device and --seq" in capsys.readouterr().err


class LyingLog:
    """A static copy of the published log, edited, behind `python -m http.server`."""

    def __init__(self, tl: TileLedger, d: Path) -> None:
        assert main(["ledger", "publish", "--ledger", str(tl.path), "--out", str(d),
                     "--words"]) == 0
        self.dir = d
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind",
                                      "127.0.0.1", "--directory", str(d)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.url = f"http://127.0.0.1:{int(line.split(' port ')[1].split()[0])}/"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def test_a_static_copy_verifies_and_a_lying_one_is_refused(
        tl: TileLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = LyingLog(tl, tmp_path / "static")
    try:
        d1, d2 = tl.signed, tl.unsigned
        code, out, err = _verify(capsys, log.url, tl.verifier_key, d1.id_hex, 42)
        assert code == 0 and f"device {d1.id_hex} seq 42" in out, err
        # the word of another device served for d1: refused, pinned id
        w1 = log.dir / tiles.word_path(d1.id_hex, 42)
        good = w1.read_bytes()
        w1.write_bytes((log.dir / tiles.word_path(d2.id_hex, 42)).read_bytes())
        code, _, err = _verify(capsys, log.url, tl.verifier_key, d1.id_hex, 42)
        assert code == 1 and "step 'device key'" in err
        # a forged device signature
        w = json.loads(good)
        w["device_signature"]["sig"] = "00" * 64
        w1.write_text(json.dumps(w))
        code, _, err = _verify(capsys, log.url, tl.verifier_key, d1.id_hex, 42)
        assert code == 1 and "step 'device signature'" in err
        w1.write_bytes(good)
        # one flipped bit in a sibling's hash on the path, then in the proved leaf
        index = json.loads(good)["leaf_index"]
        tile = log.dir / tiles.TileRef(0, index // 256).path()
        bundle = log.dir / tiles.TileRef(None, index // 256).path()
        at, n = 0, 0
        data = bundle.read_bytes()
        while n < index % 256:
            at, n = at + 2 + int.from_bytes(data[at:at + 2], "big"), n + 1
        for p, off in ((tile, ((index % 256) ^ 1) * 32), (bundle, at + 2 + 30)):
            orig = p.read_bytes()
            flip = bytearray(orig)
            flip[off] ^= 1
            p.write_bytes(bytes(flip))
            code, _, err = _verify(capsys, log.url, tl.verifier_key, d1.id_hex, 42)
            assert code == 1 and "step '" in err, err
            p.write_bytes(orig)
        code, _, err = _verify(capsys, log.url, tl.verifier_key, d1.id_hex, 42)
        assert code == 0, err
        # the enrollment's collector signature travels in the word (hashtrail-word/2):
        # checked with the collector key the user brings, an edited label refused
        ckey = COLLECTOR.verifier().to_string()
        code, out, err = _verify(capsys, log.url, tl.verifier_key, d1.id_hex, 42,
                                 "--collector-key", ckey)
        assert code == 0 and "enrollment signed by collector collector-test+" in out, err
        other = note.Signer.generate("collector-other").verifier().to_string()
        code, _, err = _verify(capsys, log.url, tl.verifier_key, d1.id_hex, 42,
                               "--collector-key", other)
        assert code == 1 and "step 'enrollment'" in err, err
        w = json.loads(good)
        assert w["format"] == "hashtrail-word/2"
        w["enrollment"]["label"] = "the operator's room"
        w1.write_text(json.dumps(w))
        code, _, err = _verify(capsys, log.url, tl.verifier_key, d1.id_hex, 42)
        assert code == 1 and "step 'enrollment': the enrollment signature by collector " \
            "collector-test+" in err, err
        # a word from a log published before enrollment signatures: a /2 proof, unsigned
        del w["enrollment"]["signature"]
        w["format"] = "hashtrail-word/1"
        w1.write_text(json.dumps(w))
        code, out, err = _verify(capsys, log.url, tl.verifier_key, d1.id_hex, 42)
        assert code == 0 and "enrollment not signed (the operator's statement): label " \
            "\"the operator's room\"" in out, err
        code, _, err = _verify(capsys, log.url, tl.verifier_key, d1.id_hex, 42,
                               "--collector-key", ckey)
        assert code == 1 and "step 'enrollment': the enrollment is not signed" in err, err
        w1.write_bytes(good)
    finally:
        log.close()
