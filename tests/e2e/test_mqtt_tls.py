"""MQTT over TLS, both ends.

The collector: collect --mqtt over TLS with a broker password: the options reach the
broker, and a wrong password, an untrusted certificate or a plain connection to the TLS
port is one clear error that changes nothing. A private Mosquitto with two listeners: a
plain anonymous one for the virtual device, and a TLS one with a password file for the
collector.

The device: the real firmware (board.json "mqtt": {"ssl": true, "ca": "/ca.der"})
connects to a private Mosquitto's TLS listener through a relay that records every byte
the device sends, verifying the broker's certificate against the CA its flash holds;
the collector collects through the same listener. A device holding another CA refuses
the broker (its console says why), and the relay saw nothing but TLS: no MQTT CONNECT,
no topic, in the clear.

The CA and the server certificates are made for the test (`mqtt_broker.make_tls_files`,
P-256); the collector trusts the CA only through --mqtt-ca.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hashtrail.cli import main as cli
from hashtrail.collector.store import Store
from hashtrail.device.mqtt_link import CONNECT_TIMEOUT_S
from hashtrail.sim import VirtualDevice, provision
from mqtt_broker import PrivateBroker, TlsFiles, make_tls_files
from test_mqtt_collect import (
    BOARD,
    collect_json,
    enroll,
    mqtt_device,
    store_is_clean,
    wait_entries,
)

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


# -- the device's own TLS ------------------------------------------------------------------


def _der(pem: Path) -> bytes:
    """The certificate in DER: MicroPython's mbedtls build parses no PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(
        serialization.Encoding.DER)


class _Relay:
    """A TCP relay to `port` that keeps every byte its clients sent (what a listener on
    the device's network would see going to the broker)."""

    def __init__(self, port: int) -> None:
        self.to = port
        self.sent = bytearray()
        self.connections = 0
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = int(self.lsock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.connections += 1
            b = socket.create_connection(("127.0.0.1", self.to))
            threading.Thread(target=self._pump, args=(c, b, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(b, c, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while data := src.recv(4096):
                if record:
                    self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def close(self) -> None:
        self.lsock.close()


def _tls_device(tmp: Path, name: str, port: int, ca: bytes) -> VirtualDevice:
    cfg = {"sample_interval_s": 0.5,
           "log": {"prune_on_ack": True, "seg_records": 8, "checkpoint_every": 20,
                   "checkpoint_s": 0},
           "mqtt": {"host": "127.0.0.1", "port": port, "ssl": True, "ca": "/ca.der",
                    "retry_s": 1}}
    dev = VirtualDevice(tmp, name, board=BOARD, config=cfg, files={"/ca.der": ca}).start()
    provision.wait_ready(dev, timeout=20.0)
    return dev


def _wait(cond: object, what: str, timeout: float = 20.0) -> None:
    stop = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < stop, what
        time.sleep(0.2)


def test_device_connects_over_tls_verifying_the_broker_and_refuses_another_ca(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "broker"
    d.mkdir()
    files = make_tls_files(d)
    (tmp_path / "other").mkdir()
    other = make_tls_files(tmp_path / "other")  # a CA that did not sign the broker's
    broker = PrivateBroker(d, tls=files).start()  # the TLS listener is anonymous
    good_relay, bad_relay = _Relay(broker.tls_port), _Relay(broker.tls_port)
    good = bad = None
    try:
        bad = _tls_device(tmp_path, "wrongca", bad_relay.port, _der(other.ca))
        good = _tls_device(tmp_path, "tls", good_relay.port, _der(files.ca))
        store = tmp_path / "c.db"
        did = enroll(good, store)
        bad_id = enroll(bad, tmp_path / "bad.db")
        wait_entries(good, 5)
        # The device holding the broker's CA: connected over TLS, collected through it.
        _wait(lambda: f"as hashtrail-{did}" in broker.log.read_text(),
              "the TLS device never connected to the broker")
        code, outs = collect_json(capsys, "--mqtt", f"mqtts://127.0.0.1:{broker.tls_port}",
                                  "--mqtt-ca", str(files.ca), "--device", did,
                                  "--store", str(store))
        assert code == 0, outs
        (o,) = outs
        r = o["result"]
        assert o["ok"] and r["from_seq"] == 0 and r["acked"] and r["new_entries"] >= 5, o
        assert store_is_clean(store, did) == r["new_entries"]
        # Its bytes were TLS records (a handshake first), never MQTT in the clear.
        assert good_relay.sent[:1] == b"\x16", bytes(good_relay.sent[:8])
        for clear in (b"MQTT", b"hashtrail", did.encode()):
            assert clear not in good_relay.sent, clear
        # The other one tried (more than once: it retries) and refused the broker: a
        # console line saying why, no client of its id at the broker, nothing but a
        # TLS ClientHello on the wire.
        _wait(lambda: bad_relay.connections >= 2, "the wrong-CA device did not retry")
        assert "not correctly signed by the trusted CA" in bad.console(4000), \
            bad.console(4000)
        assert f"hashtrail-{bad_id}" not in broker.log.read_text()
        assert bad_relay.sent[:1] == b"\x16", bytes(bad_relay.sent[:8])
        for clear in (b"MQTT", b"hashtrail", bad_id.encode()):
            assert clear not in bad_relay.sent, clear
    finally:
        for dev in (good, bad):
            if dev is not None:
                dev.stop()
        good_relay.close()
        bad_relay.close()
        broker.stop()
