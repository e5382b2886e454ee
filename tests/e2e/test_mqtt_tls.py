"""collect --mqtt over TLS with a broker password: the options reach the broker, and a
wrong password, an untrusted certificate or a plain connection to the TLS port is one
clear error that changes nothing.

A private Mosquitto with two listeners: a plain anonymous one for the virtual device
(the firmware's own TLS, umqtt's `ssl`, is a board's and is not tested here), and a
TLS one with a password file for the collector. The CA and the server certificate are
made for the test (`mqtt_broker.make_tls_files`, P-256); the collector trusts the CA
only through --mqtt-ca.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hashtrail.cli import main as cli
from hashtrail.collector.store import Store
from hashtrail.device.mqtt_link import CONNECT_TIMEOUT_S
from mqtt_broker import PrivateBroker, TlsFiles, make_tls_files
from test_mqtt_collect import collect_json, enroll, mqtt_device, store_is_clean, wait_entries

pytestmark = pytest.mark.e2e

USER, PASSWORD = "collector-a", "s3cret pass"


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[PrivateBroker, TlsFiles]]:
    d = tmp_path / "broker"
    d.mkdir()
    files = make_tls_files(d)
    b = PrivateBroker(d, tls=files, users={USER: PASSWORD}).start()
    yield b, files
    b.stop()


def _one_error(err: str, *words: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("hashtrail: error:")]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_collect_over_tls_with_a_password_and_every_wrong_option_refused(
        tmp_path: Path, tls_broker: tuple[PrivateBroker, TlsFiles],
        capsys: pytest.CaptureFixture[str]) -> None:
    broker, files = tls_broker
    dev = mqtt_device(tmp_path, "t1", broker.port)
    try:
        store = tmp_path / "c.db"
        did = enroll(dev, store)
        wait_entries(dev, 5)
        tls_url = f"mqtts://127.0.0.1:{broker.tls_port}"
        # Each wrong option: exit 1, one error line naming the cause, at once (not after
        # the 10 s connect timeout: the broker answered), nothing stored.
        wrong = [
            (["--mqtt", tls_url, "--mqtt-ca", str(files.ca), "--mqtt-user", USER,
              "--mqtt-password", "not it"], ("refused: Not authorized",)),
            (["--mqtt", tls_url, "--mqtt-ca", str(files.ca)], ("refused: Not authorized",)),
            (["--mqtt", tls_url, "--mqtt-user", USER, "--mqtt-password", PASSWORD],
             ("cannot reach", "CERTIFICATE_VERIFY_FAILED")),
            (["--mqtt", f"mqtt://127.0.0.1:{broker.tls_port}", "--mqtt-user", USER,
              "--mqtt-password", PASSWORD], ("closed the connection before answering",)),
        ]
        for argv, words in wrong:
            capsys.readouterr()
            t0 = time.monotonic()
            code = cli(["collect", *argv, "--device", did, "--store", str(store)])
            took = time.monotonic() - t0
            _one_error(capsys.readouterr().err, *words)
            assert code == 1, argv
            assert took < CONNECT_TIMEOUT_S / 2, (argv, took)
            with Store.open(store, create=False) as st:
                assert st.anchor(did) is None, argv
        code, outs = collect_json(capsys, "--mqtt", tls_url, "--mqtt-ca", str(files.ca),
                                  "--mqtt-user", USER, "--mqtt-password", PASSWORD,
                                  "--device", did, "--store", str(store))
        assert code == 0, outs
        (o,) = outs
        assert o["ok"] and o["device_id"] == did, o
        r = o["result"]
        assert r["from_seq"] == 0 and r["acked"] and r["new_entries"] >= 5, r
        assert store_is_clean(store, did) == r["new_entries"]
    finally:
        dev.stop()
