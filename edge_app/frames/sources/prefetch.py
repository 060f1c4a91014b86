"""Read frames on a thread so capture overlaps inference.

A live source (a camera, or a paced source) keeps only the newest frames: when the
pipeline falls behind, older frames are dropped rather than queued, because a decision
on a frame from a second ago is worth less than one on the frame in front of the lens.
An unpaced file source is read ahead without dropping, so every file is still scored.
"""

from __future__ import annotations

import collections
import logging
import threading

from edge_app.frames.sources import Frame, FrameSource, SourceError

log = logging.getLogger(__name__)

_END = object()


class Prefetcher:
    """Wraps a FrameSource; ``read`` returns the next kept frame, raises its errors in order."""

    def __init__(self, source: FrameSource, depth: int = 2, drop_stale: bool = True) -> None:
        self.source = source
        self.name = source.name
        self.depth = depth
        self.drop_stale = drop_stale
        self.dropped = 0
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    def _put(self, item) -> None:
        with self._cond:
            if self.drop_stale:
                while len(self._items) >= self.depth and isinstance(self._items[0], Frame):
                    self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self.depth and not self._stop:
                    self._cond.wait(0.1)
            self._items.append(item)
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop:
            try:
                frame = self.source.read()
            except Exception as exc:  # handed to the reader, raised there in order
                self._put(exc)
                if not isinstance(exc, SourceError):
                    return  # an unexpected failure ends reading, as it would without prefetch
                # no reading ahead past a failure: the frame loop's backoff paces the retries
                # (a camera that will not open is not hammered in a tight loop)
                with self._cond:
                    while self._items and not self._stop:
                        self._cond.wait(0.1)
                continue
            if frame is None:
                self._put(_END)
                return
            self._put(frame)

    def read(self) -> Frame | None:
        with self._cond:
            while not self._items:
                self._cond.wait()
            item = self._items.popleft()
            self._cond.notify_all()
        if item is _END:
            with self._cond:
                self._items.appendleft(_END)  # stay ended
            return None
        if isinstance(item, Exception):
            if not isinstance(item, SourceError):
                with self._cond:
                    self._items.appendleft(_END)  # nothing follows an unexpected failure
            raise item
        return item

    def stop(self) -> None:
        """Stop reading ahead; the wrapped source stays open (its owner closes it)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)

    def close(self) -> None:
        self.stop()
        self.source.close()
