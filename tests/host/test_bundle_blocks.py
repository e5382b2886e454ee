"""The bundle reader's block and run paths give the verdicts of its line-by-line path.

Why: a bundle file is read a block at a time, and each pass takes a run of one
device's canonical entry lines with one pattern, checking the base64 lengths and seqs
over the whole run (collector.bundle._Parser); the second pass and parse_bundle take the
run's entries with one findall. A bundle that path accepts must give the same counts,
highest seqs, digest check and entries as reading it line by line, and one it refuses
the same error, naming the same line; a block boundary anywhere in a line must change
nothing. Each mutation below sits in the middle of a device's run."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hashtrail.collector import bundle as bm
from hashtrail.errors import HashtrailError
from ledgerkit import COLLECTOR, Device
from ledgerkit import bundle as make_bundle


def _lines(signed: bool) -> list[bytes]:
    devs = [Device(900 + i, per_entry_sig=bool(i % 2)) for i in range(3)]
    for d in devs:
        d.readings(40)
    b = make_bundle(devs, cps=[(d, d.checkpoint(seq=k)) for d in devs for k in (9, 40)],
                    signer=None)
    # the collector's nonces (as it sent them), none and of every base64 padding
    for c, n in zip(b.checkpoints, [None, 1, 16, 32, 23, None], strict=True):
        c.nonce = None if n is None else bytes(range(n))
    buf = io.StringIO()
    bm.write_bundle(b, buf, COLLECTOR if signed else None)
    return [ln.encode("ascii") + b"\n" for ln in buf.getvalue().splitlines()]


def _entry(lines: list[bytes], k: int) -> int:
    """The index of the k-th entry line."""
    return [i for i, ln in enumerate(lines) if b'"type":"entry"' in ln][k]


def _set(line: bytes, key: str, value: Any) -> bytes:
    obj = json.loads(line)
    obj[key] = value
    return (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")


def _mutations() -> list[tuple[str, Any]]:
    big = base64.b64encode(bytes(bm.MAX_ENTRY + 3)).decode("ascii")
    return [
        ("none", None),
        ("body length not a multiple of 4", lambda ln: _set(ln, "body",
                                                            json.loads(ln)["body"][:-1])),
        ("body one char past a quad", lambda ln: _set(ln, "body",
                                                      json.loads(ln)["body"] + "A")),
        ("body too long", lambda ln: _set(ln, "body", big)),
        ("seq 2**63", lambda ln: _set(ln, "seq", 1 << 63)),
        ("seq 2**63 - 1", lambda ln: _set(ln, "seq", (1 << 63) - 1)),
        ("seq 10**19", lambda ln: _set(ln, "seq", 10 ** 19)),
        ("seq with a leading zero", lambda ln: ln.replace(b'"seq":', b'"seq":0')),
        ("short signature", lambda ln: _set(ln, "sig", base64.b64encode(bytes(63))
                                            .decode("ascii"))),
        ("upper-case device", lambda ln: _set(ln, "device", json.loads(ln)["device"]
                                              .upper())),
        ("a space", lambda ln: ln.replace(b'","device"', b'", "device"')),
        ("another device's line", "swap"),
        ("a garbage line", lambda ln: b"garbage\n"),
        ("a line too long", lambda ln: b"x" * (bm.MAX_LINE + 5) + b"\n"),
        ("no newline at the end", "cut"),
        ("an entry after the signature", "after"),
    ]


def _variant(lines: list[bytes], how: Any) -> bytes:
    lines = list(lines)
    k = _entry(lines, 50)                  # the second device's run, in its middle
    if how == "swap":
        lines[k], lines[_entry(lines, 5)] = lines[_entry(lines, 5)], lines[k]
    elif how == "cut":
        lines[-1] = lines[-1][:-1]
    elif how == "after":
        lines.append(lines[k])
    elif how is not None:
        lines[k] = how(lines[k])
    return b"".join(lines)


def _read(path: Path) -> tuple[Any, ...]:
    """Everything both passes say about the file: the scan's bundle or its error, the
    streamed entries or their error (as entries, and as runs: the same entries), and
    parse_bundle's."""
    bf = bm.BundleFile(path)
    try:
        b = bf.scan()
        scan: Any = (b.counts, b.max_seq, b.signer is not None, len(b.enrollments),
                     len(b.checkpoints), b.collector_id)
    except HashtrailError as e:
        scan = (type(e).__name__, str(e))
    out: list[Any] = []
    try:
        out.extend(bf.entries())
    except HashtrailError as e:
        out.append((type(e).__name__, str(e)))
    runs: list[Any] = []
    try:
        for did, run in bf.runs():
            assert run
            runs.extend((did, r) for r in run)
    except HashtrailError as e:
        runs.append((type(e).__name__, str(e)))
    assert runs == out
    try:
        with open(path, "rb") as f:
            b = bm.parse_bundle(f)
        kept: Any = (b.entries, b.counts, b.max_seq, b.signer is not None,
                     b.enrollments, b.checkpoints)
    except HashtrailError as e:
        kept = (type(e).__name__, str(e))
    return scan, out, kept


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize(("name", "how"), _mutations(), ids=[m[0] for m in _mutations()])
def test_runs_and_blocks_read_as_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       signed: bool, name: str, how: Any) -> None:
    path = tmp_path / "b.jsonl"
    path.write_bytes(_variant(_lines(signed), how))
    got = _read(path)
    monkeypatch.setattr(bm, "_RUN", bm.re.compile(rb"(?!)"))    # line by line only
    monkeypatch.setattr(bm, "_CHECKPOINT_LINE", bm.re.compile(rb"(?!)"))
    want = _read(path)
    assert got == want
    for block in (1, 7, 200, 4096):
        monkeypatch.setattr(bm, "_BLOCK", block)
        assert _read(path) == want, block
    if name == "none":
        assert isinstance(want[0][0], dict) and len(want[1]) == 123
    else:
        # each mutation is refused somewhere, or (seq 2**63 - 1, a swapped line, an
        # unsigned bundle's edited body) read as what it now says
        assert name in ("seq 2**63 - 1", "another device's line") or not signed \
            or isinstance(want[0][0], str)


def test_the_second_pass_takes_runs_whole(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above compares something: the second pass gives a device's canonical
    lines as one list (the run path), the line-by-line path one entry at a time, and
    both the same entries."""
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"".join(_lines(True)))
    runs = list(bm.BundleFile(path).runs())
    assert [len(r) for _, r in runs] == [41, 41, 41]
    monkeypatch.setattr(bm, "_RUN", bm.re.compile(rb"(?!)"))
    lines = list(bm.BundleFile(path).runs())
    assert [len(r) for _, r in lines] == [1] * 123
    assert [(d, r) for d, rs in runs for r in rs] == [(d, r) for d, rs in lines for r in rs]


def _checkpoint(lines: list[bytes], k: int) -> int:
    """The index of the k-th checkpoint line."""
    return [i for i, ln in enumerate(lines) if b'"type":"checkpoint"' in ln][k]


def _checkpoint_mutations() -> list[tuple[str, Any]]:
    def b64(n: int) -> str:
        return base64.b64encode(bytes(n)).decode("ascii")
    return [
        ("cose length not a multiple of 4", lambda ln: _set(ln, "cose",
                                                            json.loads(ln)["cose"][:-1])),
        ("cose too long", lambda ln: _set(ln, "cose", b64(bm.MAX_COSE + 1))),
        ("cose at the limit", lambda ln: _set(ln, "cose", b64(bm.MAX_COSE))),
        ("empty cose", lambda ln: _set(ln, "cose", "")),
        ("nonce of 32", lambda ln: _set(ln, "nonce", b64(32))),
        ("nonce of 33", lambda ln: _set(ln, "nonce", b64(33))),
        ("empty nonce", lambda ln: _set(ln, "nonce", "")),
        ("nonce length not a multiple of 4", lambda ln: _set(ln, "nonce", "AAAAA")),
        ("nonce not a string", lambda ln: _set(ln, "nonce", 5)),
        ("upper-case device", lambda ln: _set(ln, "device", json.loads(ln)["device"]
                                              .upper())),
        ("a space", lambda ln: ln.replace(b'","device"', b'", "device"')),
        ("another field", lambda ln: _set(ln, "seq", 1)),
        ("no newline at the end", "cut"),
        ("a checkpoint after the signature", "after"),
    ]


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize(("name", "how"), _checkpoint_mutations(),
                         ids=[m[0] for m in _checkpoint_mutations()])
def test_checkpoint_lines_read_as_by_the_json_path(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   signed: bool, name: str, how: Any) -> None:
    """A canonical checkpoint line is read without the JSON parser
    (collector.bundle._CHECKPOINT_LINE): the same checkpoints, or the same error naming
    the same line, as the JSON path gives, in both passes and parse_bundle."""
    lines = _lines(signed)
    k = _checkpoint(lines, 3)
    if how == "cut":
        lines[-1] = lines[-1][:-1]
        if signed:
            lines[k] = lines[-1] + b"\n"
    elif how == "after":
        lines.append(lines[k])
    else:
        lines[k] = how(lines[k])
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"".join(lines))
    got = _read(path)
    monkeypatch.setattr(bm, "_CHECKPOINT_LINE", bm.re.compile(rb"(?!)"))
    want = _read(path)
    assert got == want
    for block in (1, 7, 200):
        monkeypatch.setattr(bm, "_BLOCK", block)
        assert _read(path) == want, block


def test_checkpoint_lines_take_the_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above compares something: the JSON path is not asked for checkpoint
    lines of the canonical shape (with and without a nonce)."""
    data = b"".join(_lines(True))
    seen: list[bytes] = []
    json_path = bm._Parser._json
    monkeypatch.setattr(bm._Parser, "_json", staticmethod(
        lambda raw, n: seen.append(raw) or json_path(raw, n)))
    b = bm.parse_bundle(io.BytesIO(data))
    assert len(b.checkpoints) == 6 and sum(c.nonce is not None for c in b.checkpoints) == 4
    assert not [ln for ln in seen if b'"checkpoint"' in ln]
