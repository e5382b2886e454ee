"""Host pieces of collection over MQTT that need no broker: the URL and its options, and
the store rule that keeps a forged record in quarantine from blocking the true one."""

from __future__ import annotations

from pathlib import Path

import pytest
from hashtrail.collector.store import RawEntry, Store, device_id_of
from hashtrail.device.mqtt_link import parse_url, topic
from hashtrail.errors import InputError, VerificationError

PUB = bytes.fromhex("046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
                    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
DEV = device_id_of(PUB)


def test_url_forms_and_options() -> None:
    o = parse_url("mqtt://127.0.0.1")
    assert (o.host, o.port, o.tls, o.username) == ("127.0.0.1", 1883, False, None)
    o = parse_url("mqtts://broker.example:9883")
    assert (o.host, o.port, o.tls) == ("broker.example", 9883, True)
    assert parse_url("mqtts://b").port == 8883
    o = parse_url("mqtt://ann:p%40ss@b:1884")
    assert (o.username, o.password, o.port) == ("ann", "p@ss", 1884)
    # options given apart win over the URL's; a CA file means TLS
    o = parse_url("mqtt://ann:x@b", username="bob", password="y", ca_certs="/ca.pem")
    assert (o.username, o.password, o.tls, o.ca_certs) == ("bob", "y", True, "/ca.pem")
    assert o.url == "mqtts://b:1883"
    assert topic(DEV, "ack") == f"hashtrail/{DEV}/ack"


@pytest.mark.parametrize("url", ["http://b", "mqtt://", "b:1883", "mqtt://b:99999",
                                 "mqtt://b/topic", "mqtt://b?x=1"])
def test_bad_urls_are_input_errors(url: str) -> None:
    with pytest.raises(InputError):
        parse_url(url)


def test_accept_takes_the_verified_candidate_of_a_seq(tmp_path: Path) -> None:
    """A stranger's altered copy of seq 1, refused by an earlier run and kept in
    quarantine as evidence, must not block accepting the device's own seq 1 later."""
    true = [RawEntry(i, b"entry-%d" % i) for i in range(3)]
    forged = RawEntry(1, b"entry-1 altered")
    with Store.open(tmp_path / "c.db") as st:
        st.enroll(DEV, PUB)
        st.quarantine(DEV, [true[0], forged])
        st.quarantine(DEV, true)
        with pytest.raises(VerificationError):  # without the verified set: ambiguous
            st.accept(DEV, 2, true[2].entry_hash)
        ok = {r.entry_hash for r in true}
        assert st.accept(DEV, 2, true[2].entry_hash, hashes=ok) == 3
        assert st.accepted_records(DEV) == true
        assert st.quarantined(DEV) == [forged]  # the evidence stays, not accepted
        with pytest.raises(VerificationError):  # the verified set must cover the range
            st.quarantine(DEV, [RawEntry(3, b"entry-3"), RawEntry(4, b"entry-4")])
            st.accept(DEV, 4, RawEntry(4, b"entry-4").entry_hash,
                      hashes={RawEntry(4, b"entry-4").entry_hash})


def _chunk(*recs: bytes) -> bytes:
    from hashtrail.device.link import REP_CHUNK, encode_frame

    return encode_frame(REP_CHUNK, 0, b"\x00\x00" + b"".join(recs))


def test_pushes_are_kept_once_by_seq_whatever_the_order_and_repeats() -> None:
    """What a device pushes (hashtrail/D/log) reaches `take` as one run from the store's
    head: batches out of order, repeated (QoS 1), mixed with garbage, END frames and
    replies of other ids; an entry seq pushed as two different records (a forgery beside
    the true one) ends the run there, so the collection pulls it from the device."""
    from hashtrail.device.link import REP_CHUNK, REP_END, encode_frame
    from hashtrail.device.mqtt_link import Pushes
    from hashtrail.formats.records import MAGIC_CHECKPOINT, MAGIC_ENTRY, format_record

    e = [format_record(MAGIC_ENTRY, s, b"entry %d" % s, None) for s in range(8)]
    cp3 = format_record(MAGIC_CHECKPOINT, 3, b"checkpoint over 3", None)
    p = Pushes()
    t = len(f"hashtrail/{DEV}/log")
    for payload in (_chunk(e[4], e[5]), _chunk(e[0], e[1]), b"\xa5\x5agarbage",
                    _chunk(e[0], e[1]), _chunk(e[2], e[3], cp3),
                    encode_frame(REP_END, 0, bytes(8)),
                    encode_frame(REP_CHUNK, 7, b"\x00\x00" + e[6]),  # a reply, not a push
                    _chunk(e[4], e[5]), _chunk(e[7])):
        p.deliver(payload, t)
    assert p.event.is_set() and p.messages == 9
    assert p.take(0) == [*e[:4], cp3, *e[4:6]]  # 6 is missing: the run stops at 5
    assert p.take(2) == [e[2], e[3], cp3, e[4], e[5]]
    assert p.take(6) == [] and not p.pending(6) and p.pending(7)
    p.done(3)  # accepted up to 3
    assert p.take(0) == [] and p.take(4) == [e[4], e[5]]
    forged = format_record(MAGIC_ENTRY, 4, b"entry 4, altered", None)
    p.deliver(_chunk(forged), t)
    assert p.take(4) == []  # two records for seq 4: the device is asked for it
    p.done(None)
    assert p.take(4) == [] and not p.pending(7)


def test_push_gap_reaches_the_follow_loop_and_needs_follow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`collect --mqtt --follow --push-gap S` hands S to collect_mqtt (the default
    otherwise); without --follow, or without --mqtt, it is a usage error."""
    import hashtrail.cli.collect as cli_collect
    from hashtrail.cli import main as cli
    from hashtrail.collector.mqtt import PUSH_GAP_S

    store = tmp_path / "c.db"
    Store.open(store).close()
    seen: list[float] = []

    def fake(opts: object, st: object, devices: object, **kw: float) -> list[object]:
        seen.append(kw["push_gap"])
        return []

    monkeypatch.setattr(cli_collect, "collect_mqtt", fake)
    base = ["collect", "--mqtt", "mqtt://127.0.0.1:1883", "--store", str(store)]
    assert cli([*base, "--follow", "--push-gap", "2.5"]) == 0
    assert cli([*base, "--follow"]) == 0
    assert seen == [2.5, PUSH_GAP_S]
    capsys.readouterr()
    assert cli([*base, "--push-gap", "2"]) == 2
    assert "--push-gap is for --follow" in capsys.readouterr().err
    assert cli(["collect", "--port", "/dev/null", "--store", str(store), "--push-gap",
                "2"]) == 2
    assert "--push-gap is for collection over MQTT" in capsys.readouterr().err
    assert seen == [2.5, PUSH_GAP_S]
