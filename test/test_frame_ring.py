"""The shared-memory frame ring, exercised by writers and readers in separate processes."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import uuid

import numpy as np
import pytest

from vr_stream_ros.frame_ring import (
    FrameRingReader,
    FrameRingWriter,
    FrameSpec,
    RingInUse,
    RingNotFound,
    RingShapeMismatch,
)

SPEC = FrameSpec(320, 240, 3)
CTX = mp.get_context("spawn")


@pytest.fixture
def name():
    ring = f"vrtest_ring_{uuid.uuid4().hex[:8]}"
    yield ring
    leftovers = [f for f in os.listdir("/dev/shm") if ring in f]
    for f in leftovers:
        os.unlink(os.path.join("/dev/shm", f))
    assert not leftovers, f"/dev/shm not clean: {leftovers}"


def _fill(loan_array: np.ndarray, seq: int) -> None:
    loan_array[...] = seq % 251
    loan_array[0, 0, :] = (seq >> 16) & 0xFF, (seq >> 8) & 0xFF, seq & 0xFF


def _writer(name: str, frames: int, fps: float, ready, start) -> None:
    with FrameRingWriter(name, SPEC, slots=4) as ring:
        ready.set()
        start.wait(10)
        for _ in range(frames):
            loan = ring.loan()
            _fill(loan.array, loan.seq)
            ring.publish(loan, time.monotonic_ns())
            time.sleep(1 / fps)
        time.sleep(0.3)


def _endless_writer(name: str, fps: float) -> None:
    ring = FrameRingWriter(name, SPEC, slots=4)
    print("stale" if ring.recovered_stale else "fresh", flush=True)
    while True:
        loan = ring.loan()
        _fill(loan.array, loan.seq)
        ring.publish(loan, time.monotonic_ns())
        time.sleep(1 / fps)


def _reader(name: str, want: int, results, hold_s: float = 0.0) -> None:
    reader = FrameRingReader.wait_for(name, SPEC, timeout=10)
    last, seen, bad, intact, torn = -1, [], 0, 0, 0
    while len(seen) < want:
        seq = reader.wait_newer(last, timeout=3)
        if seq is None:
            break
        view = reader.read(seq)
        if view is None:
            continue
        head = view.array[0, 0, :]
        if int(head[0]) << 16 | int(head[1]) << 8 | int(head[2]) != seq or \
                view.array[5, 5, 0] != seq % 251:
            bad += 1
        if hold_s:
            time.sleep(hold_s)  # a deliberately slow consumer
        if reader.is_intact(view):
            intact += 1
        else:
            torn += 1
        seen.append(seq)
        last = seq
    reader.close()
    results.put({"seen": seen, "bad": bad, "intact": intact, "torn": torn})


def test_one_writer_two_readers_in_other_processes(name) -> None:
    ready, start, results = CTX.Event(), CTX.Event(), CTX.Queue()
    writer = CTX.Process(target=_writer, args=(name, 120, 60.0, ready, start))
    writer.start()
    assert ready.wait(10)
    readers = [CTX.Process(target=_reader, args=(name, 100, results)) for _ in range(2)]
    for r in readers:
        r.start()
    time.sleep(1.0)  # both attached and registered their doorbells
    start.set()
    outcomes = [results.get(timeout=30) for _ in readers]
    for r in [*readers, writer]:
        r.join(10)
    for out in outcomes:
        assert len(out["seen"]) == 100
        assert out["seen"] == sorted(out["seen"]), "sequence numbers must only grow"
        assert out["bad"] == 0, "pixels must be the frame the seq names"
        assert out["torn"] == 0
    assert writer.exitcode == 0


def test_slow_reader_sees_overwrite_fast_reader_does_not(name) -> None:
    ready, start, results = CTX.Event(), CTX.Event(), CTX.Queue()
    writer = CTX.Process(target=_writer, args=(name, 200, 100.0, ready, start))
    writer.start()
    assert ready.wait(10)
    slow = CTX.Process(target=_reader, args=(name, 3, results, 0.2))  # 0.2 s > 4 slots x 10 ms
    slow.start()
    time.sleep(1.0)
    start.set()
    out = results.get(timeout=30)
    slow.join(10)
    writer.join(20)
    assert out["torn"] == len(out["seen"]) == 3, out
    assert out["bad"] == 0


def test_reader_killed_mid_read_does_not_disturb_writer(name) -> None:
    writer = FrameRingWriter(name, SPEC, slots=4)
    results = CTX.Queue()
    victim = CTX.Process(target=_reader, args=(name, 10_000, results, 0.5))
    victim.start()
    deadline = time.monotonic() + 10
    while not writer._readers and time.monotonic() < deadline:  # wait for its doorbell
        writer.write(np.zeros(SPEC.shape, np.uint8), time.monotonic_ns())
        time.sleep(0.02)
    assert writer._readers, "reader never registered"
    time.sleep(0.2)  # it is now holding a view
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(5)
    for _ in range(100):
        writer.write(np.ones(SPEC.shape, np.uint8), time.monotonic_ns())
    assert writer.frames_published >= 100
    assert writer._readers == [], "the dead reader's doorbell entry must be pruned"
    writer.close()


def test_writer_restart_after_crash_is_followed_by_reader(name) -> None:
    first = CTX.Process(target=_endless_writer, args=(name, 50.0))
    first.start()
    reader = FrameRingReader.wait_for(name, SPEC, timeout=10)
    assert reader.wait_newer(-1, timeout=5) is not None
    os.kill(first.pid, signal.SIGKILL)  # no cleanup: a stale segment remains
    first.join(5)
    assert os.path.exists(f"/dev/shm/{name}")
    second = CTX.Process(target=_endless_writer, args=(name, 50.0))
    second.start()
    try:
        got = []
        deadline = time.monotonic() + 10
        last = reader.latest_seq()
        while len(got) < 20 and time.monotonic() < deadline:
            seq = reader.wait_newer(last, timeout=0.5)
            if seq is not None:
                view = reader.read(seq)
                if view is not None:
                    got.append(seq)
                last = seq
        assert reader.reattached >= 1
        assert len(got) == 20, f"reader got {got} after the restart"
    finally:
        reader.close()
        os.kill(second.pid, signal.SIGKILL)
        second.join(5)
        os.unlink(f"/dev/shm/{name}")


def test_second_live_writer_is_refused_and_stale_one_recovered(name) -> None:
    with FrameRingWriter(name, SPEC) as first:
        assert not first.recovered_stale
        holder = CTX.Process(target=_expect_in_use, args=(name,))
        holder.start()
        holder.join(20)
        assert holder.exitcode == 0


def _expect_in_use(name: str) -> None:
    try:
        FrameRingWriter(name, SPEC)
    except RingInUse as exc:
        assert name in str(exc) and "live process" in str(exc)
        return
    raise SystemExit(1)


def test_reader_errors_name_ring_and_shapes(name) -> None:
    with pytest.raises(RingNotFound, match=name):
        FrameRingReader(name)
    with FrameRingWriter(name, SPEC):
        with pytest.raises(RingShapeMismatch) as err:
            FrameRingReader(name, FrameSpec(640, 480, 3))
        assert "320x240x3" in str(err.value) and "640x480x3" in str(err.value)
    with pytest.raises(RingNotFound, match=r"after waiting 0\.2 s"):
        FrameRingReader.wait_for(name, timeout=0.2)


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"name": "bad/name"}, "ring name"),
    ({"slots": 1}, "slots"),
    ({"slots": 65}, "slots"),
])
def test_bad_writer_arguments_name_the_field(kwargs, named) -> None:
    args = {"name": "vrtest_ok", "spec": SPEC, "slots": 4, **kwargs}
    with pytest.raises(ValueError, match=named):
        FrameRingWriter(**args)


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"width": 0}, "width"), ({"height": -1}, "height"), ({"channels": 2}, "channels"),
    ({"pixel_format": "x" * 16}, "pixel_format"),
])
def test_bad_spec_names_the_field(kwargs, named) -> None:
    with pytest.raises(ValueError, match=named):
        FrameSpec(**{"width": 8, "height": 8, **kwargs})


def test_writer_never_blocks_on_a_reader_that_never_reads(name) -> None:
    with FrameRingWriter(name, SPEC) as writer:
        sleeper = FrameRingReader(name)  # registered, never drains its doorbell
        frame = np.zeros(SPEC.shape, np.uint8)
        for _ in range(1000):
            writer.write(frame, time.monotonic_ns())
        assert writer.frames_published == 1000
        assert sleeper.latest_seq() == 999
        sleeper.close()


def test_views_are_read_only_and_zero_copy(name) -> None:
    with FrameRingWriter(name, SPEC) as writer:
        reader = FrameRingReader(name, SPEC, wake=False)
        loan = writer.loan()
        loan.array[...] = 7
        writer.publish(loan, 123)
        view = reader.read_latest()
        assert view.capture_ns == 123 and view.seq == 0
        assert not view.array.flags.writeable
        assert not view.array.flags.owndata  # a view into shared memory, not a copy
        assert int(view.array[1, 1, 1]) == 7
        reader.close()
