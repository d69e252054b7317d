import threading
import time

import pytest

from edgevision.runtime.channels import Channel, Closed, Discard, Newest


def test_newest_keeps_only_the_last_item_and_counts_drops():
    ch = Newest()
    for i in range(5):
        ch.put(i)
    assert ch.get(timeout=0) == 4
    assert ch.dropped == 4
    assert ch.get(timeout=0.01) is None  # a timeout is None, not an error


def test_channel_blocks_when_full_until_consumed():
    ch = Channel(capacity=2)
    ch.put(1)
    ch.put(2)
    done = threading.Event()

    def producer():
        ch.put(3)
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.05)  # full: the producer waits (backpressure, no drop)
    assert ch.get() == 1
    assert done.wait(1.0)
    t.join()
    assert [ch.get(), ch.get()] == [2, 3]


def test_close_drains_then_raises_closed():
    ch = Channel(capacity=3)
    ch.put("a")
    ch.put("b")
    ch.close()
    assert ch.get() == "a" and ch.get() == "b"
    with pytest.raises(Closed):
        ch.get()
    with pytest.raises(Closed):
        ch.put("c")


def test_abort_wakes_a_blocked_producer_and_drops_items():
    ch = Channel(capacity=1)
    ch.put(1)
    errors = []

    def producer():
        try:
            ch.put(2)
        except Closed:
            errors.append("closed")

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.02)
    ch.abort()
    t.join(1.0)
    assert errors == ["closed"]
    with pytest.raises(Closed):
        ch.get()


def test_discard_drops_puts_and_reports_the_close():
    ch = Discard()
    for i in range(10):
        ch.put(i)  # never blocks, keeps nothing
    assert len(ch) == 0 and ch.get(timeout=0.01) is None
    ch.close()
    with pytest.raises(Closed):
        ch.get()
    with pytest.raises(Closed):
        ch.put(1)
