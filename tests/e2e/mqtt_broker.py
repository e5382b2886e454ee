"""Brokers for the MQTT end-to-end tests: the machine's Mosquitto, or a private one.

Why real brokers: what the tests check (QoS 1 redelivery, a broker going away under a
device and a collector, topics shared with strangers) is the broker's behaviour as
much as ours. The shared broker on 127.0.0.1:1883 serves the plain cases; a test that
stops its broker starts a private `mosquitto -p PORT` so it never disturbs others; the
TLS and password cases give theirs a second listener (make_tls_files).
A missing broker fails under CI (CI=true: .ci/run starts one) and skips elsewhere.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SHARED = ("127.0.0.1", 1883)
LOG_LINES = (150, 450)  # a private broker's log printed when it stops: first, last lines


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(msg: str) -> None:
    if in_ci():
        pytest.fail(msg)
    pytest.skip(msg)


def answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def require_shared() -> str:
    """The shared broker's URL, or fail (CI) / skip with one line."""
    if not answers(*SHARED):
        _missing(f"no MQTT broker on {SHARED[0]}:{SHARED[1]}; start one: mosquitto -d")
    return f"mqtt://{SHARED[0]}:{SHARED[1]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    """A Mosquitto program (mosquitto, mosquitto_passwd): on PATH, else where Debian puts
    it (root's PATH may lack /usr/sbin)."""
    exe = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/bin") / name, Path("/usr/sbin") / name) if p.exists()),
        None)
    if exe is None:
        _missing(f"{name} is not installed (apt-get install mosquitto)")
    return str(exe)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS listener: a CA, and a server certificate for 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A throwaway CA and a server certificate it signs, for IP 127.0.0.1 (P-256 keys,
    `cryptography`), written as PEM files into `directory`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
             signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hashtrail test CA")])
    ca_cert = cert("hashtrail test CA", ca_key, ca_name, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    server = cert("127.0.0.1", key, ca_name, ca_key, False)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


class PrivateBroker:
    """`mosquitto -c CONF` on its own port, in the foreground, as our child: stop() and
    start() again on the same port is a broker restart nobody else sees."""

    def __init__(self, directory: Path, tls: TlsFiles | None = None,
                 users: dict[str, str] | None = None, trace: bool = True) -> None:
        self.exe = _tool("mosquitto")
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        conf = f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        self.tls_port = 0
        if tls is not None:
            # A second listener, TLS and (with users) a password file; the first stays
            # plain and anonymous for the devices (the firmware's TLS is a board's).
            self.tls_port = free_port()
            # `user`: started as root, mosquitto would switch to its own user, which
            # cannot read these files in the test's private temporary folder.
            conf = (f"per_listener_settings true\nuser {getpass.getuser()}\n" + conf + (
                f"listener {self.tls_port} 127.0.0.1\ncafile {tls.ca}\n"
                f"certfile {tls.cert}\nkeyfile {tls.key}\n"))
            if users:
                pw = directory / "mosquitto.passwd"
                pw.write_text("")
                for name, password in users.items():
                    subprocess.run([_tool("mosquitto_passwd"), "-b", str(pw), name,
                                    password], check=True, capture_output=True)
                conf += f"allow_anonymous false\npassword_file {pw}\n"
            else:
                conf += "allow_anonymous true\n"
        # trace: every packet in and out is logged (a few hundred lines a test), and stop()
        # prints the log: when a device or collector stops answering, it says where the
        # messages went (shown with a failed test's captured output, nowhere else).
        # Benchmarks leave it off: it costs the broker a log line a packet.
        self.trace = trace
        self.conf.write_text(conf + "persistence false\nset_tcp_nodelay true\n" + (
            "log_type all\nlog_timestamp_format %H:%M:%S\n" if trace else ""))
        self.log = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> PrivateBroker:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=log,
                                         stderr=subprocess.STDOUT)
        stop = time.monotonic() + 10
        while not (answers("127.0.0.1", self.port)
                   and (not self.tls_port or answers("127.0.0.1", self.tls_port))):
            if self.proc.poll() is not None or time.monotonic() > stop:
                raise RuntimeError(f"private mosquitto did not start: "
                                   f"{self.log.read_text()[-500:]}")
            time.sleep(0.05)
        if self.proc.poll() is not None:  # the port answered, but for another program
            raise RuntimeError(f"private mosquitto exited: {self.log.read_text()[-500:]}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.trace:
                lines = self.log.read_text(errors="replace").splitlines()
                head, tail = LOG_LINES
                if len(lines) > head + tail:
                    lines[head:-tail] = [f"[... {len(lines) - head - tail} lines ...]"]
                print(f"[private mosquitto on port {self.port}: its log]", *lines, sep="\n")
        self.proc = None
