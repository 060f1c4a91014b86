"""Durable event spool: SQLite in WAL mode, written before anything goes to the broker.

An event enters the spool (one committed transaction) before the publisher hands it to paho,
and leaves only when the broker acknowledges it (PUBACK). A power cut, a broker restart or a
week without network loses nothing, up to ``max_events``; beyond that the oldest events are
dropped first and a persistent counter says how many were ever dropped, so a gap is visible.

The event sequence number lives here too: it must survive process restarts, and the spool is
the one file that already does.

One connection guarded by a lock: the camera thread writes, the MQTT sender thread reads and
deletes. SQLite serialises writers anyway; the lock keeps the Python-side counters consistent.
"""

from __future__ import annotations

import logging
import os
import stat
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- delivery order; AUTOINCREMENT never reuses ids
    event_id TEXT NOT NULL,
    seq INTEGER,
    payload TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value
);
"""


class RateLimitedLog:
    """One log line per ``interval_s`` for a repeating problem, then a count of the ones held back:
    a full disk for an hour is a handful of lines, not one per event."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0) -> None:
        self.logger, self.interval_s = logger, interval_s
        self._last = -float("inf")
        self._held = 0

    def __call__(self, level: int, msg: str, *args) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self._held += 1
            return
        if self._held:
            msg += f" ({self._held} more like this in the last {now - self._last:.0f} s not logged)"
        self._last, self._held = now, 0
        self.logger.log(level, msg, *args)


class SpoolError(RuntimeError):
    """The spool file cannot be opened or written; the message names the file."""


@dataclass(frozen=True)
class SpooledEvent:
    row_id: int  # spool order; ack() takes this
    event_id: str
    seq: int | None
    payload: str


class Spool:
    def __init__(self, path: str | Path, max_events: int = 100_000, *, synchronous: str = "FULL") -> None:
        # synchronous=FULL: in WAL mode every commit is fsynced, so an event the camera loop was
        # told is spooled survives a power cut (NORMAL only survives a process crash).
        if max_events < 1:
            raise ValueError(f"spool max_events must be at least 1, got {max_events}")
        self.path = Path(path)
        self.max_events = max_events
        self._lock = threading.Lock()
        self._full_log = RateLimitedLog(log)
        self._ack_log = RateLimitedLog(log)
        self._db = self._open(synchronous)
        with self._lock:
            self._depth = self._db.execute("SELECT count(*) FROM events").fetchone()[0]
            # (stored, reserved) swapped as one tuple, so depth() never counts a batch twice or not at all
            self._count = (self._depth, 0)
            self._dropped = int(self._meta("dropped", 0))
            persisted = self._meta("seq", None)
            if persisted is None:
                # A fresh spool starts from the wall clock (as events.SequenceCounter does), so a
                # device whose state dir was wiped still counts upwards from its old numbers.
                self._seq = int(time.time() * 1000)
            else:
                self._seq = int(persisted) + 1
        if self._depth:
            log.info("spool %s holds %d undelivered events", self.path, self._depth)

    # -- opening ------------------------------------------------------------------------------

    def _open(self, synchronous: str) -> sqlite3.Connection:
        try:
            # events name decisions and people's comings and goings: owner-only, whoever starts us
            # (systemd's StateDirectoryMode does this for the service; a hand start must too)
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"spool {self.path}: cannot create its directory ({exc})") from None
        try:
            return self._connect(synchronous)
        except sqlite3.DatabaseError as exc:
            # A corrupt spool must not become a crash loop: keep the file for a post-mortem and
            # start a new one. Its events are not lost, only set aside.
            if isinstance(exc, sqlite3.OperationalError) or not self.path.exists():
                # permissions, a full disk, a lock held elsewhere: moving the file would not help
                raise SpoolError(f"spool {self.path}: cannot open ({exc})") from None
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error("spool %s is not a usable SQLite database (%s); moved it to %s and started a new spool",
                      self.path, exc, aside)
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            try:
                return self._connect(synchronous)
            except sqlite3.DatabaseError as exc2:
                raise SpoolError(f"spool {self.path}: cannot open ({exc2})") from None

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite's -wal/-shm copy its mode
            if stat.S_IMODE(os.stat(self.path).st_mode) & 0o077:
                os.chmod(self.path, 0o600)
        except OSError as exc:  # not ours to change, or unreadable: sqlite3 says which below
            log.warning("spool %s: cannot make it owner-only (%s)", self.path, exc.strerror or exc)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                log.warning("spool %s: SQLite refused WAL mode (got %s)", self.path, mode)
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.executescript(_SCHEMA)
            db.execute("SELECT count(*) FROM events").fetchone()  # touches the pages: corruption shows here
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _meta(self, key: str, default):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def _set_meta(self, key: str, value) -> None:
        self._db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (key, value))

    # -- the camera side ----------------------------------------------------------------------

    def next_seq(self) -> int:
        """The next event sequence number, monotonic across restarts.

        Only the in-memory counter moves here; ``put`` persists the highest seq it stores in the
        same transaction as the event (one fsync per event, not two). A number handed out but
        never spooled may be handed out again after a restart: no subscriber ever saw it.
        """
        with self._lock:
            seq = self._seq
            self._seq += 1
            return seq

    def put(self, event_id: str, payload: str, seq: int | None = None, state: str | None = None) -> int:
        """Store one event durably; returns its row id. Drops the oldest events when full.

        ``state`` (the retained state payload) is stored in the same transaction so a restarted
        device can re-publish its latest decision.
        """
        return self.put_many([(event_id, payload, seq)], state)[-1]

    def put_many(self, events: list[tuple[str, str, int | None]], state: str | None = None) -> list[int]:
        """Store (event_id, payload, seq) events in one transaction: one fsync for the batch."""
        with self._lock:
            rows = []
            try:
                self._db.execute("BEGIN IMMEDIATE")
                dropped = max(0, self._depth + len(events) - self.max_events)
                if dropped:
                    self._db.execute("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?)",
                                     (dropped,))
                    self._set_meta("dropped", self._dropped + dropped)
                top = None
                for event_id, payload, seq in events:
                    cur = self._db.execute("INSERT INTO events(event_id, seq, payload, created) VALUES(?, ?, ?, ?)",
                                           (event_id, seq, payload, time.time()))
                    rows.append(cur.lastrowid)
                    if isinstance(seq, int):
                        top = seq if top is None else max(top, seq)
                if top is not None:
                    self._set_meta("seq", max(top, self._seq - 1))
                if state is not None:
                    self._set_meta("state", state)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                ids = ", ".join(e[0] for e in events[:3]) + (" ..." if len(events) > 3 else "")
                raise SpoolError(f"spool {self.path}: cannot store event(s) {ids} ({exc})") from None
            if top is not None and top >= self._seq:  # events numbered elsewhere: never reuse their numbers
                self._seq = top + 1
            # rows dropped from this very batch were never stored: count them, return live ids only
            self._depth = min(self.max_events, self._depth + len(events))
            self._count = (self._depth, 0)
            if dropped:
                self._dropped += dropped
                self._full_log(logging.WARNING, "spool %s full (%d events): dropped the %d oldest, %d dropped in total",
                               self.path, self.max_events, dropped, self._dropped)
            return rows

    # -- the sender side ----------------------------------------------------------------------

    def pending(self, after_row: int = 0, limit: int = 100) -> list[SpooledEvent]:
        """Undelivered events after ``after_row``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, event_id, seq, payload FROM events WHERE id > ? ORDER BY id LIMIT ?",
                (after_row, limit)).fetchall()
        return [SpooledEvent(*row) for row in rows]

    def ack(self, row_ids: list[int]) -> int:
        """Delete delivered events; returns how many were still there."""
        if not row_ids:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                removed = 0
                for start in range(0, len(row_ids), 500):
                    chunk = row_ids[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    removed += self._db.execute(f"DELETE FROM events WHERE id IN ({marks})", chunk).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                # Not fatal: the events stay and are sent again (subscribers de-duplicate by event_id).
                self._ack_log(logging.ERROR, "spool %s: cannot remove %d delivered events (%s)",
                              self.path, len(row_ids), exc)
                return 0
            self._depth -= removed
            self._count = (self._depth, self._count[1])
            return removed

    def drop(self, row_ids: list[int], why: str) -> None:
        """Remove events that will never be delivered (the broker refused them) and count them."""
        removed = self.ack(row_ids)
        if removed:
            with self._lock:
                try:
                    self._dropped += removed
                    self._set_meta("dropped", self._dropped)
                except sqlite3.Error as exc:
                    log.error("spool %s: cannot update the dropped counter (%s)", self.path, exc)
            log.error("spool %s: dropped %d events: %s", self.path, removed, why)

    def reserve(self, n: int) -> None:
        """Count ``n`` events about to be stored by ``put_many`` (the caller's own thread)."""
        self._count = (self._count[0], n)

    def depth(self) -> int:
        """Stored undelivered events plus those reserved; lock-free for the camera thread."""
        stored, reserved = self._count
        return stored + reserved

    def dropped(self) -> int:
        return self._dropped

    def last_state(self) -> str | None:
        with self._lock:
            return self._meta("state", None)

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
