"""edge_app.hub.spool: durable, ordered, bounded, and it remembers what it dropped."""

from __future__ import annotations

import sqlite3

import pytest

from edge_app.hub.spool import Spool, SpoolError


def fill(spool: Spool, n: int, start: int = 0) -> list[int]:
    return [spool.put(f"e{i}", f'{{"n":{i}}}', seq=spool.next_seq()) for i in range(start, start + n)]


def test_events_come_back_in_order_and_leave_on_ack(tmp_path):
    spool = Spool(tmp_path / "s.sqlite3")
    rows = fill(spool, 5)
    assert spool.depth() == 5
    pending = spool.pending()
    assert [p.event_id for p in pending] == [f"e{i}" for i in range(5)]
    assert [p.row_id for p in spool.pending(after_row=rows[2])] == rows[3:]
    assert spool.ack(rows[:2]) == 2
    assert spool.ack(rows[:2]) == 0  # acknowledging twice is harmless
    assert [p.event_id for p in spool.pending()] == ["e2", "e3", "e4"] and spool.depth() == 3
    spool.close()


def test_wal_mode_and_survives_reopen(tmp_path):
    path = tmp_path / "s.sqlite3"
    spool = Spool(path)
    fill(spool, 3)
    spool.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = Spool(path)
    assert again.depth() == 3 and [p.event_id for p in again.pending()] == ["e0", "e1", "e2"]
    again.close()


def test_full_spool_drops_oldest_and_counts_persistently(tmp_path):
    path = tmp_path / "s.sqlite3"
    spool = Spool(path, max_events=3)
    fill(spool, 5)
    assert spool.depth() == 3 and spool.dropped() == 2
    assert [p.event_id for p in spool.pending()] == ["e2", "e3", "e4"]
    spool.drop([spool.pending()[0].row_id], "refused by the broker")
    assert spool.dropped() == 3
    spool.close()
    again = Spool(path, max_events=3)
    assert again.dropped() == 3 and again.depth() == 2
    again.close()


def test_seq_is_monotonic_across_restarts(tmp_path):
    path = tmp_path / "s.sqlite3"
    spool = Spool(path)
    first = [spool.next_seq() for _ in range(3)]
    spool.put("a", "{}", seq=first[-1])
    spool.close()
    spool = Spool(path)
    assert spool.next_seq() > first[-1]
    spool.put("b", "{}", seq=10**13)  # numbered elsewhere: never hand that number out again
    assert spool.next_seq() > 10**13
    spool.close()
    assert Spool(path).next_seq() > 10**13


def test_latest_state_is_kept(tmp_path):
    path = tmp_path / "s.sqlite3"
    spool = Spool(path)
    assert spool.last_state() is None
    spool.put("a", '{"n":1}', state='{"n":1}')
    spool.put("b", '{"n":2}', state='{"n":2}')
    spool.close()
    assert Spool(path).last_state() == '{"n":2}'


def test_corrupt_spool_is_set_aside_not_a_crash_loop(tmp_path, caplog):
    path = tmp_path / "s.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    spool = Spool(path)
    assert spool.depth() == 0
    aside = list(tmp_path.glob("s.sqlite3.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    assert "moved it to" in caplog.text
    spool.close()


def test_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SpoolError, match="cannot create its directory"):
        Spool(blocker / "sub" / "s.sqlite3")


def test_bounds_are_checked(tmp_path):
    with pytest.raises(ValueError):
        Spool(tmp_path / "s.sqlite3", max_events=0)


def test_a_batch_is_one_transaction_and_depth_counts_reserved_events_once(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite3", max_events=100)
    spool.reserve(3)  # queued for this batch: counted before the commit ...
    assert spool.depth() == 3
    rows = spool.put_many([(f"e{i}", f'{{"n": {i}}}', 10 + i) for i in range(3)], state='{"n": 2}')
    assert len(rows) == 3 and spool.depth() == 3  # ... and once after it, not twice
    spool.reserve(0)
    assert spool.depth() == 3
    assert [e.event_id for e in spool.pending()] == ["e0", "e1", "e2"]
    assert spool.last_state() == '{"n": 2}'
    spool.close()
    reopened = Spool(tmp_path / "spool.sqlite3", max_events=100)
    assert reopened.depth() == 3 and reopened.next_seq() > 12  # never goes back after a restart
    reopened.close()


def test_a_batch_over_the_bound_drops_the_oldest(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite3", max_events=4)
    spool.put_many([(f"a{i}", "{}", None) for i in range(3)])
    spool.put_many([(f"b{i}", "{}", None) for i in range(3)])
    assert spool.depth() == 4 and spool.dropped() == 2
    assert [e.event_id for e in spool.pending()] == ["a2", "b0", "b1", "b2"]
    spool.close()
