"""sd_notify: datagrams on a real AF_UNIX socket, from the notifier, the real frame loop and the
real main job; the watchdog stops when the frame loop stalls."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest

from edge_app.config import Config
from edge_app.pipeline import Pipeline
from edge_app.device.sdnotify import Notifier, Watchdog, watchdog_interval
from edge_app.frames.sources.synthetic import SyntheticSource, sample_head


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket; collects messages with arrival times."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edge-app-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            self.dir = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")  # short: sun_path holds 108 bytes
            path = os.path.join(self.dir, "notify")
            self.sock.bind(path)
            self.env = path
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self.sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def fields(self) -> list[str]:
        return [f for _, m in list(self.messages) for f in m.split("\n")]

    def count(self, field: str, since: float = 0.0, until: float = float("inf")) -> int:
        return sum(field in m.split("\n") for t, m in list(self.messages) if since <= t <= until)

    def wait_for(self, field: str, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if field in self.fields():
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        if hasattr(self, "dir"):
            for name in os.listdir(self.dir):
                os.unlink(os.path.join(self.dir, name))
            os.rmdir(self.dir)


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    yield sock
    sock.close()


def test_without_notify_socket_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert n.ready("up") is False and n.notify("WATCHDOG=1") is False
    assert not Watchdog(n, interval=1.0).enabled


def test_notifier_sends_datagrams_to_a_path_socket(notify_socket, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.env)
    n = Notifier()
    assert n.ready("reading frames") and n.status("3 frames") and n.stopping()
    assert notify_socket.wait_for("STOPPING=1", 5)
    assert [m for _, m in notify_socket.messages] == ["READY=1\nSTATUS=reading frames", "STATUS=3 frames", "STOPPING=1"]
    n.close()


def test_notifier_handles_the_abstract_namespace(monkeypatch):
    sock = NotifySocket(abstract=True)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", sock.env)
        assert Notifier().ready()
        assert sock.wait_for("READY=1", 5)
    finally:
        sock.close()


def test_a_vanished_socket_does_not_break_the_service(tmp_path, caplog):
    n = Notifier(str(tmp_path / "gone"))
    assert n.enabled
    assert n.notify("WATCHDOG=1") is False  # logged once, no exception
    assert n.notify("WATCHDOG=1") is False


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert watchdog_interval() == 0.0
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("", "0", "soon"):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert watchdog_interval() == 0.0


def test_watchdog_pings_at_most_once_per_interval(notify_socket):
    now = [100.0]
    wd = Watchdog(Notifier(notify_socket.env), interval=15.0, status=lambda: "ok", clock=lambda: now[0])
    for t in (100.0, 101.0, 114.9, 115.0, 115.1, 130.0):
        now[0] = t
        wd()
    assert notify_socket.wait_for("WATCHDOG=1", 5)
    time.sleep(0.2)
    assert notify_socket.count("WATCHDOG=1") == 3  # at 100, 115 and 130
    assert "STATUS=ok" in notify_socket.fields()


class StallingSource:
    """Synthetic face frames; while ``stall`` is set, read() blocks like a hung camera."""

    name = "stalling"

    def __init__(self) -> None:
        self.inner = SyntheticSource(face=sample_head(), seed=1)
        self.stall = threading.Event()
        self.stalled = threading.Event()
        self.release = threading.Event()

    def read(self):
        if self.stall.is_set():
            self.stalled.set()
            self.release.wait(30)
            self.stall.clear()
        return self.inner.read()

    def close(self) -> None:
        pass


def test_watchdog_from_the_frame_loop_stops_while_the_camera_blocks(detector, scorer, notify_socket):
    pipeline = Pipeline(Config(), detector, scorer, "test-device")
    pipeline.frame_hooks.append(Watchdog(Notifier(notify_socket.env), interval=0.05))
    source = StallingSource()
    stop = threading.Event()
    loop = threading.Thread(target=pipeline.run, args=(source,), kwargs={"stop": stop}, daemon=True)
    loop.start()
    try:
        assert notify_socket.wait_for("WATCHDOG=1", 30), "the frame loop never fed the watchdog"
        time.sleep(0.5)
        assert notify_socket.count("WATCHDOG=1") >= 3
        source.stall.set()
        assert source.stalled.wait(10)
        time.sleep(0.3)  # a frame in flight when the stall began may still ping
        quiet_from = time.monotonic()
        time.sleep(1.0)
        assert notify_socket.count("WATCHDOG=1", since=quiet_from) == 0, "watchdog fed while read() blocked"
        frames_before = pipeline.stats.frames
        resumed_at = time.monotonic()
        source.release.set()
        deadline = time.monotonic() + 10
        while notify_socket.count("WATCHDOG=1", since=resumed_at) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert notify_socket.count("WATCHDOG=1", since=resumed_at) >= 2, "watchdog not resumed after the stall"
        assert pipeline.stats.frames > frames_before
    finally:
        source.release.set()
        stop.set()
        loop.join(10)


def test_watchdog_keeps_going_while_the_camera_reports_errors(detector, scorer, notify_socket):
    # a camera that raises (unplugged) is handled by the loop with backoff: the service is alive,
    # decisions are "error" (fail closed), and systemd must not restart it for that
    pipeline = Pipeline(Config(), detector, scorer, "test-device")
    # a tiny interval: every loop turn may ping, so the count depends on turns, not on speed
    pipeline.frame_hooks.append(Watchdog(Notifier(notify_socket.env), interval=1e-6))
    source = SyntheticSource(face=sample_head(), frames=8, fail_at=(2, 3, 4, 5))
    pipeline.run(source)
    assert notify_socket.wait_for("WATCHDOG=1", 5)
    time.sleep(0.1)
    assert notify_socket.count("WATCHDOG=1") >= 6


def test_main_job_sends_ready_watchdog_and_stopping(notify_socket, tmp_path):
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket.env, WATCHDOG_USEC="100000",
               JOURNAL_STREAM="8:1234")
    env.pop("WATCHDOG_PID", None)
    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[source]\nkind = "synthetic"\nfps = 20.0\n')
    r = subprocess.run([sys.executable, "-m", "edge_app", "run", "-c", str(config), "--no-mqtt", "--max-frames", "30"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    time.sleep(0.2)
    fields = notify_socket.fields()
    assert "READY=1" in fields and "STOPPING=1" in fields, fields
    ready, stopping = fields.index("READY=1"), fields.index("STOPPING=1")
    watchdogs = [i for i, f in enumerate(fields) if f == "WATCHDOG=1"]
    assert len(watchdogs) >= 3, fields  # 30 frames at 20 fps = 1.5 s, a ping every 50 ms at most
    assert ready < watchdogs[0] and watchdogs[-1] < stopping
    assert any(f.startswith("STATUS=") and "frames" in f for f in fields)
    # journald-friendly logs: one line per record, level first, no timestamp (journald adds it)
    lines = [line for line in r.stderr.splitlines() if line.startswith(("INFO", "WARNING", "ERROR"))]
    assert any(line.startswith("INFO edge_app.run: done: 30 frames") for line in lines), r.stderr
