"""Nats-Msg-Id de-duplication (pure): exact against a plain set, small for the connector's ids."""

from __future__ import annotations

import random

from ingest_daemons.archive.dedupe import MsgIdSet


def _reference_run(ids: list[bytes]) -> None:
    seen: set[bytes] = set()
    ids_set = MsgIdSet()
    for position, msg_id in enumerate(ids):
        assert ids_set.add(msg_id) == (msg_id not in seen), (position, msg_id)
        seen.add(msg_id)


def test_first_sight_only_for_every_id_shape() -> None:
    ids = [b"r.0.1:0", b"r.0.1:1", b"r.0.1:m1", b"r.0.1:1", b"r.0.1:m1", b"r.0.1:01", b"r.0.1:001",
           b"secmaster-7-12", b"secmaster-7-12", b"no-number", b"no-number", b"", b"", b"x:5", b"x5", b"x:5",
           b"9" * 40, b"9" * 40, b"replay:S:2026-03-01:41", b"replay:S:2026-03-01:41"]
    _reference_run(ids)


def test_random_interleavings_retries_and_pages_match_a_set() -> None:
    """Several sockets interleaved, each feeding this stream a subset of its numbers (others went to
    other streams), retries of old numbers, first occurrences below the top, page boundaries."""
    rng = random.Random(20261204)
    for _ in range(200):
        ids: list[bytes] = []
        counters = {p: rng.choice([0, 8180, 1 << 20]) for p in (b"a.0.1:", b"a.0.1:m", b"b.3.2:")}
        for _ in range(rng.randrange(1, 2500)):
            roll = rng.random()
            prefix = rng.choice(list(counters))
            if roll < 0.1 and ids:
                ids.append(rng.choice(ids))  # a retry stored again
            elif roll < 0.15:
                ids.append(prefix + str(max(0, counters[prefix] - rng.randrange(1, 300))).encode())
            else:
                counters[prefix] += rng.choice([1, 1, 1, 2, 5, 9000])
                ids.append(prefix + str(counters[prefix]).encode())
        _reference_run(ids)


def test_in_order_ids_cost_no_bitmap_and_interleaved_ones_one_bit_per_number() -> None:
    dense = MsgIdSet()
    assert all(dense.add(b"run.0.1:%d" % n) for n in range(100_000))
    assert dense.bitmap_bytes == 0
    assert not dense.add(b"run.0.1:99999") and not dense.add(b"run.0.1:0")
    every_third = MsgIdSet()  # a socket feeding three streams: this one sees every third frame
    assert all(every_third.add(b"run.0.1:%d" % n) for n in range(0, 300_000, 3))
    assert every_third.bitmap_bytes <= 300_000 // 8 + 1024
    assert not every_third.add(b"run.0.1:150000") and every_third.add(b"run.0.1:150001")


def test_whole_batches_in_order_are_taken_at_once_and_anything_else_falls_back_exactly() -> None:
    rng = random.Random(7)
    taken = 0
    for _ in range(100):
        ids_set, seen = MsgIdSet(), set()
        n = rng.choice([0, 99, 8190])
        for _ in range(rng.randrange(1, 60)):
            batch: list[bytes | None] = []
            for _ in range(rng.randrange(0, 40)):
                roll = rng.random()
                if roll < 0.05:
                    batch.append(None)  # no Nats-Msg-Id header
                elif roll < 0.1 and seen:
                    batch.append(rng.choice(sorted(seen)))
                elif roll < 0.13:
                    batch.append(b"50%" + b"x.0.1:%d" % n)  # a prefix with a format character
                elif roll < 0.15:  # one id holding the next two, as the run check joins ids with LF
                    batch.append(b"x.0.1:%d\nx.0.1:%d" % (n + 1, n + 2))
                else:
                    n += 1 if roll < 0.95 else 3
                    batch.append(b"x.0.1:%d" % n)
            if ids_set.add_run(batch):
                assert all(i is not None and i not in seen for i in batch) and len(set(batch)) == len(batch)
                seen.update(i for i in batch if i is not None)
                taken += 1
                continue
            for msg_id in batch:
                if msg_id is not None:
                    assert ids_set.add(msg_id) == (msg_id not in seen)
                    seen.add(msg_id)
        assert ids_set.add_run([]) is False
    assert taken > 0
