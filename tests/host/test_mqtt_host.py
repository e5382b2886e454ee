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
