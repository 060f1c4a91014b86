"""For the demo and development: use the MQTT broker on this machine, or start one.

A real device talks to the hub's broker from its config; this exists so the first run
on a laptop shows events going over MQTT without setting a broker up by hand.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalBroker:
    host: str
    port: int
    process: subprocess.Popen | None = None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def find_or_start(host: str = "127.0.0.1", port: int = 1883) -> LocalBroker | None:
    """The broker at host:port if one answers; else a private mosquitto on a free loopback port."""
    if reachable(host, port):
        log.info("using the MQTT broker at %s:%d", host, port)
        return LocalBroker(host, port)
    exe = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)
    if not exe:
        log.warning("no MQTT broker at %s:%d and mosquitto is not installed; events stay in the spool", host, port)
        return None
    port = free_port()
    conf = Path(tempfile.mkdtemp(prefix="edge-app-broker-")) / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5  # a plain poll: it waits for a port, there is nothing to retry
    while time.monotonic() < deadline:
        if reachable("127.0.0.1", port, 0.2):
            log.info("started a local mosquitto on 127.0.0.1:%d for this run", port)
            return LocalBroker("127.0.0.1", port, proc)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    log.warning("could not start mosquitto (%s); events stay in the spool", exe)
    return None
