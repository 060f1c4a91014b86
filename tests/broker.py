"""A real Mosquitto broker for tests: started on a free loopback port, stopped at teardown.

Nothing is installed here: the Debian `mosquitto` package provides the broker and
`mosquitto_passwd`; the `openssl` CLI makes the test CA. A missing tool skips the tests that
need it, with the reason.

Fixtures (import them into a test module, or list this module in ``pytest_plugins``):
  * ``mosquitto``  -- factory: ``mosquitto(users=..., tls=..., acl=...)`` returns a started Broker
  * ``broker``     -- one started anonymous broker
  * ``tls_files``  -- a test CA with a server certificate (127.0.0.1) and a client certificate
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

HOST = "127.0.0.1"


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)


def free_ports(n: int) -> list[int]:
    """n distinct free ports: all held open at once while picking, so none repeats."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: cannot make a test CA for the TLS test")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"), "-days", "2",
        "-subj", "/CN=edge_app test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, cn, ext in (
        ("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "door1", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                      "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n" + ext)
        run("req", *ec, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"), "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-out", str(d / f"{name}.crt"), "-days", "2", "-extfile", str(d / f"{name}.ext"))
    return TlsFiles(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")


def make_passwd(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file, made by mosquitto_passwd -b (-c for the first user)."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed (package mosquitto)")
    Path(path).unlink(missing_ok=True)
    for i, (user, password) in enumerate(users.items()):
        subprocess.run([tool, "-b", *(["-c"] if i == 0 else []), str(path), user, password],
                       check=True, capture_output=True, timeout=30)
    return Path(path)


class Broker:
    """One mosquitto process; stop() and start() again keep the port, the config and the data."""

    def __init__(self, workdir: Path, *, port: int | None = None, users: dict[str, str] | None = None,
                 tls: TlsFiles | None = None, require_certificate: bool = False, acl: str | None = None,
                 persistence: bool = True, conf: str | None = None) -> None:
        """``conf``: configuration text to use instead of the generated listener and auth lines;
        ``{port}`` in it becomes this broker's port."""
        binary = mosquitto_binary()
        if binary is None:
            pytest.skip("mosquitto is not installed (apt-get install mosquitto mosquitto-clients)")
        self.binary = binary
        self.host = HOST
        self.port = port or free_port()
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "mosquitto.log"
        self.conf_path = self.dir / "mosquitto.conf"
        self.proc: subprocess.Popen | None = None
        lines = [
            "per_listener_settings false",
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'false' if users else 'true'}",
        ] if conf is None else [conf.replace("{port}", str(self.port))]
        lines += [
            f"log_dest file {self.log_path}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            # when run as root mosquitto drops to user "mosquitto", who cannot read tmp_path
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
        ]
        if persistence:
            lines += ["persistence true", f"persistence_location {self.dir}/", "autosave_interval 1"]
        if users:
            lines.append(f"password_file {make_passwd(self.dir / 'passwd', users)}")
        if acl is not None:
            acl_path = self.dir / "acl"
            acl_path.write_text(acl)
            lines.append(f"acl_file {acl_path}")
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}",
                      f"require_certificate {'true' if require_certificate else 'false'}"]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> "Broker":
        if self.running:
            return self
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf_path)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err}\n{self.log()}")
            if port_open(self.port):
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not accept connections on {HOST}:{self.port} within {timeout} s\n{self.log()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: mosquitto saves its persistence file and closes every connection."""
        if not self.running:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        self._wait_port_closed()

    def kill(self) -> None:
        """SIGKILL: like a power cut of the hub."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._wait_port_closed()

    def restart(self) -> "Broker":
        self.stop()
        return self.start()

    def _wait_port_closed(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class TcpProxy:
    """A loopback TCP forwarder to a broker whose link can be cut (connections reset, new ones
    refused) and restored on the same port: a network cut while broker and hub stay up."""

    def __init__(self, target_port: int, host: str = HOST) -> None:
        self.host = host
        self.target_port = target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.host, self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread, frees the port
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not FIN
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    close = cut


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    properties: object = None

    def json(self):
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A paho client that records what it receives; wait_for() polls with a deadline."""

    broker: Broker
    topics: list[str]
    protocol: str = "3.1.1"
    client_id: str = ""
    clean: bool = True
    tls: TlsFiles | None = None
    client_cert: bool = False  # present the test client certificate (require_certificate brokers)
    username: str | None = None
    password: str | None = None
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        v5 = self.protocol == "5"
        kwargs = {} if v5 else {"clean_session": self.clean}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id or f"test-{os.getpid()}-{id(self)}",
                                  protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, **kwargs)
        self.client.reconnect_delay_set(0.05, 0.2)
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        if self.tls:
            cert = (str(self.tls.client_cert), str(self.tls.client_key)) if self.client_cert else (None, None)
            self.client.tls_set(ca_certs=str(self.tls.ca), certfile=cert[0], keyfile=cert[1])
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.received.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain),
                                          getattr(msg, "properties", None)))

    def start(self, timeout: float = 5.0) -> "Subscriber":
        if self.protocol == "5":
            self.client.connect_async(self.broker.host, self.broker.port, 30, clean_start=self.clean)
        else:
            self.client.connect_async(self.broker.host, self.broker.port, 30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"test subscriber could not subscribe to {self.topics}\n{self.broker.log()}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def messages(self, topic: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self.received if topic is None or m.topic == topic]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 5.0,
                 what: str = "messages") -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if predicate(msgs):
                return msgs
            if time.monotonic() > deadline:
                got = [(m.topic, m.payload[:80]) for m in msgs[-10:]]
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; last received: {got}")
            time.sleep(0.02)

    def publish(self, topic: str, payload, **kwargs):
        return self.client.publish(topic, payload, **kwargs)


@pytest.fixture
def mosquitto(tmp_path) -> Callable[..., Broker]:
    """Factory: start brokers (each in its own folder); all are killed at teardown."""
    started: list[Broker] = []

    def make(**kwargs) -> Broker:
        broker = Broker(tmp_path / f"broker{len(started)}", **kwargs)
        started.append(broker)
        return broker.start()

    yield make
    for broker in started:
        broker.kill()


@pytest.fixture
def broker(mosquitto) -> Broker:
    return mosquitto()


@pytest.fixture
def tls_files(tmp_path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")
