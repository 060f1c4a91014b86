"""A camera that is unplugged, not yet ready or crashed is opened again, not given up on.

Each failed open or read surfaces as a ``SourceError`` from ``read``, which the frame loop
turns into a fail-closed ``error`` decision and a backoff; the next ``read`` tries again.
The service stays up, online and fed to the watchdog instead of exiting into a restart loop.
"""

from __future__ import annotations

import logging
from typing import Callable

from edge_app.frames.sources import Frame, FrameSource, SourceError

log = logging.getLogger(__name__)


class ReopeningSource:
    def __init__(self, opener: Callable[[], FrameSource], name: str) -> None:
        self.opener = opener
        self.name = name
        self.source: FrameSource | None = None
        self.opens = 0

    def read(self) -> Frame | None:
        if self.source is None:
            self.source = self.opener()  # a SourceError here is reported like a failed frame
            self.opens += 1
            if self.opens > 1:
                log.info("%s: reopened", self.name)
        try:
            return self.source.read()
        except SourceError:
            self._drop()
            raise

    def _drop(self) -> None:
        source, self.source = self.source, None
        if source is not None:
            try:
                source.close()
            except Exception:  # a dead camera may fail to close too; the next open starts afresh
                log.debug("%s: close after failure failed", self.name, exc_info=True)

    def close(self) -> None:
        self._drop()
