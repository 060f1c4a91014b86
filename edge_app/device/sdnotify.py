"""systemd's notify protocol in a few lines: READY=1, WATCHDOG=1, STOPPING=1, STATUS=...

A datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` is the
abstract namespace). Outside systemd the variable is unset and every call is a no-op, so
the same code runs on a laptop, in tests and under the unit.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable

log = logging.getLogger(__name__)


# The protocol by hand, not python3-systemd or the sdnotify package: one datagram, and no
# dependency (python3-systemd builds against libsystemd) for what the standard library does.
class Notifier:
    """Sends notify datagrams to ``$NOTIFY_SOCKET`` (read once, at construction)."""

    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "") if address is None else address
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        elif address and not address.startswith("/"):
            log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket; not notifying", address)
            address = ""
        self.address = address
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (e.g. "READY=1", "STATUS=up") as one datagram; False when not sent."""
        if not self.address:
            return False
        message = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
            return True
        except OSError as exc:
            # systemd gone or the socket not ours: the service keeps working without notifications
            if not self._warned:
                log.warning("sd_notify to %s failed: %s", self.address.replace("\0", "@"), exc)
                self._warned = True
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float:
    """Seconds between WATCHDOG=1 pings: half of ``$WATCHDOG_USEC``; 0 when no watchdog is asked
    for (unset, malformed, or meant for another process per ``$WATCHDOG_PID``)."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return 0.0
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return 0.0
    return usec / 2e6 if usec > 0 else 0.0


class Watchdog:
    """A frame hook: sends WATCHDOG=1 at most every ``interval`` seconds.

    Called after every frame attempt of the loop, so a camera whose read() blocks or an
    interpreter that hangs stops the pings and systemd restarts the service.
    ``status`` (optional) adds a STATUS= line to each ping.
    """

    def __init__(self, notifier: Notifier, interval: float | None = None,
                 status: Callable[[], str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.interval = watchdog_interval() if interval is None else interval
        self.status = status
        self.clock = clock
        self._next = float("-inf")

    @property
    def enabled(self) -> bool:
        return self.notifier.enabled and self.interval > 0

    def __call__(self) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.interval
        fields = ["WATCHDOG=1"]
        if self.status is not None:
            try:
                fields.append(f"STATUS={self.status()}")
            except Exception:  # a status line is never worth a missed ping
                log.debug("watchdog status failed", exc_info=True)
        self.notifier.notify(*fields)
