"""The shared-memory frame ring, with writers and readers in separate processes."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from vr_stream_ros.ring.frame_ring import (
    FrameRingError,
    FrameRingReader,
    FrameRingWriter,
    FrameSpec,
    RingInUse,
    RingNotFound,
    RingShapeMismatch,
)

SPEC = FrameSpec(320, 240, 3)
CTX = mp.get_context("spawn")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def name():
    """A unique ring name; fails the test if anything of it is left in /dev/shm."""
    ring = f"vrtest_ring_{uuid.uuid4().hex[:8]}"
    yield ring
    leftovers = [f for f in os.listdir("/dev/shm") if ring in f]
    for f in leftovers:
        os.unlink(os.path.join("/dev/shm", f))
    assert not leftovers, f"/dev/shm not clean: {leftovers}"


@pytest.fixture
def procs():
    """Processes started by a test; killed and reaped whatever happens."""
    started: list = []
    yield started
    for p in started:
        if isinstance(p, subprocess.Popen):
            if p.poll() is None:
                p.kill()
            p.wait(5)
        else:
            if p.is_alive():
                p.kill()
            p.join(5)


def _fill(array: np.ndarray, seq: int) -> None:
    """A pattern from which the reader can tell which frame it holds."""
    array[...] = seq % 251
    array[0, 0, :] = (seq >> 16) & 0xFF, (seq >> 8) & 0xFF, seq & 0xFF


def _seq_of(array: np.ndarray) -> int:
    head = array[0, 0, :]
    return int(head[0]) << 16 | int(head[1]) << 8 | int(head[2])


def _python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- workers (module level: the 'spawn' context imports them) -------------------------------
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


def _endless_writer(name: str, fps: float, report, spec: FrameSpec = SPEC) -> None:
    ring = FrameRingWriter(name, spec, slots=4)
    report.put(ring.recovered_stale)
    while True:
        loan = ring.loan()
        if spec == SPEC:
            _fill(loan.array, loan.seq)
        ring.publish(loan, time.monotonic_ns())
        time.sleep(1 / fps)


def _reader(name: str, want: int, results, hold_s: float = 0.0) -> None:
    reader = FrameRingReader.wait_for(name, SPEC, timeout=10)
    results.put("attached")
    last, seen, bad, intact, torn = -1, [], 0, 0, 0
    while len(seen) < want:
        seq = reader.wait_newer(last, timeout=3)
        if seq is None:
            break
        view = reader.read(seq)
        if view is None:
            continue
        if _seq_of(view.array) != seq or view.array[5, 5, 0] != seq % 251:
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


# -- data path ------------------------------------------------------------------------------
def test_one_writer_two_readers_in_other_processes(name, procs) -> None:
    ready, start, results = CTX.Event(), CTX.Event(), CTX.Queue()
    writer = CTX.Process(target=_writer, args=(name, 120, 60.0, ready, start))
    writer.start()
    procs.append(writer)
    assert ready.wait(10)
    readers = [CTX.Process(target=_reader, args=(name, 100, results)) for _ in range(2)]
    for r in readers:
        r.start()
        procs.append(r)
    assert [results.get(timeout=20) for _ in readers] == ["attached"] * 2
    start.set()
    outcomes = [results.get(timeout=30) for _ in readers]
    for r in [*readers, writer]:
        r.join(10)
    for out in outcomes:
        assert len(out["seen"]) == 100, "every wait_newer must be woken by a new frame"
        assert out["seen"] == sorted(set(out["seen"])), "sequence numbers must only grow"
        assert out["bad"] == 0, "pixels must be the frame the seq names"
        assert out["torn"] == 0, "a reader keeping up must find its views intact"
    assert writer.exitcode == 0


def test_slow_reader_finds_its_views_overwritten(name, procs) -> None:
    ready, start, results = CTX.Event(), CTX.Event(), CTX.Queue()
    writer = CTX.Process(target=_writer, args=(name, 200, 100.0, ready, start))
    writer.start()
    procs.append(writer)
    assert ready.wait(10)
    slow = CTX.Process(target=_reader, args=(name, 3, results, 0.2))  # 0.2 s > 4 slots x 10 ms
    slow.start()
    procs.append(slow)
    assert results.get(timeout=20) == "attached"
    start.set()
    out = results.get(timeout=30)
    writer.join(20)
    assert writer.exitcode == 0
    assert out["torn"] == len(out["seen"]) == 3, out
    assert out["bad"] == 0, "the view was valid when read"


def test_seqlock_marks_a_slot_from_loan_to_publish(name) -> None:
    with FrameRingWriter(name, SPEC, slots=2) as writer:
        reader = FrameRingReader(name, SPEC, wake=False)
        assert reader.latest_seq() == -1 and reader.read_latest() is None
        writer.write(np.full(SPEC.shape, 1, np.uint8), 10)
        first = reader.read(0)
        assert first is not None and reader.is_intact(first)
        writer.write(np.full(SPEC.shape, 2, np.uint8), 20)  # slot 1: frame 0 untouched
        assert reader.is_intact(first)
        loan = writer.loan()  # frame 2 goes to slot 0: frame 0 is being overwritten
        assert loan.slot == first.slot and loan.seq == 2
        assert not reader.is_intact(first)
        assert reader.read(0) is None and reader.read(2) is None
        writer.cancel(loan)
        assert reader.read(0) is None, "a cancelled slot holds no frame"
        writer.write(np.full(SPEC.shape, 3, np.uint8), 30)
        view = reader.read_latest()
        assert (view.seq, view.capture_ns, int(view.array[0, 0, 0])) == (2, 30, 3)
        assert view.publish_ns >= view.capture_ns
        assert reader.read(1).capture_ns == 20
        reader.close()


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
        assert view.array.shape == SPEC.shape and view.array.dtype == np.uint8
        assert int(view.array[1, 1, 1]) == 7
        assert reader.pixel_format == "rgb8" and reader.slots == 4
        reader.close()


def test_wait_newer_sleeps_and_is_woken_by_a_publish_in_another_process(name, procs) -> None:
    with FrameRingWriter(name, SPEC) as writer:
        reader = FrameRingReader(name, SPEC)
        cpu, wall = time.process_time(), time.monotonic()
        assert reader.wait_newer(-1, timeout=0.5) is None
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        assert cpu < wall / 4, f"waiting {wall:.2f} s burnt {cpu:.2f} s of CPU: busy-spinning?"
        writer.close()
        reader.close()
    ready, start = CTX.Event(), CTX.Event()
    writer_proc = CTX.Process(target=_writer, args=(name, 1, 1.0, ready, start))
    writer_proc.start()
    procs.append(writer_proc)
    assert ready.wait(10)
    with FrameRingReader(name, SPEC) as reader:
        start.set()
        seq = reader.wait_newer(-1, timeout=20)
        woke_ns = time.monotonic_ns()
        assert seq == 0
        view = reader.read(seq)
        # Relative bound: woken by the doorbell, long before the 20 s timeout.
        assert woke_ns - view.publish_ns < 5e9
    writer_proc.join(10)


# -- failures and restarts ------------------------------------------------------------------
def test_reader_killed_mid_read_does_not_disturb_writer(name, procs) -> None:
    writer = FrameRingWriter(name, SPEC, slots=4)
    results = CTX.Queue()
    victim = CTX.Process(target=_reader, args=(name, 10_000, results, 0.5))
    victim.start()
    procs.append(victim)
    assert results.get(timeout=20) == "attached"
    assert writer.registered_readers == 1
    writer.write(np.zeros(SPEC.shape, np.uint8), time.monotonic_ns())
    time.sleep(0.2)  # it now holds a view of frame 0
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(5)
    for _ in range(100):
        writer.write(np.ones(SPEC.shape, np.uint8), time.monotonic_ns())
    assert writer.frames_published == 101
    assert writer.registered_readers == 0, "the dead reader's doorbell entry must be pruned"
    with FrameRingReader(name, SPEC) as newcomer:  # its registry place is free again
        assert writer.registered_readers == 1
        assert newcomer.read_latest().seq == 100
    writer.close()


def test_writer_restart_after_crash_is_followed_by_reader(name, procs) -> None:
    # One queue per process: a process SIGKILLed while its queue's feeder thread holds the
    # queue's shared lock would wedge a queue the two shared.
    report, report2 = CTX.Queue(), CTX.Queue()
    first = CTX.Process(target=_endless_writer, args=(name, 50.0, report))
    first.start()
    procs.append(first)
    assert report.get(timeout=20) is False, "a fresh ring is not a recovered one"
    reader = FrameRingReader.wait_for(name, SPEC, timeout=10)
    assert reader.wait_newer(-1, timeout=5) is not None
    os.kill(first.pid, signal.SIGKILL)  # no cleanup: a stale segment remains
    first.join(5)
    assert os.path.exists(f"/dev/shm/{name}")
    second = CTX.Process(target=_endless_writer, args=(name, 50.0, report2))
    second.start()
    procs.append(second)
    try:
        assert report2.get(timeout=20) is True, "the second writer must recover the stale ring"
        got: list[int] = []
        deadline = time.monotonic() + 10
        last = reader.latest_seq()
        while len(got) < 20 and time.monotonic() < deadline:
            seq = reader.wait_newer(last, timeout=0.5)
            if seq is not None:
                view = reader.read(seq)
                if view is not None and _seq_of(view.array) == seq:
                    got.append(seq)
                last = seq
        assert reader.reattached == 1
        assert reader.generation == 1
        assert len(got) == 20, f"reader got {got} after the restart"
        assert got[0] < 50, "the new writer counts from 0 again"
    finally:
        reader.close()
        os.kill(second.pid, signal.SIGKILL)
        second.join(5)
        os.unlink(f"/dev/shm/{name}")


def test_zombie_writer_counts_as_dead(name, procs) -> None:
    crashed = _python("""
        import sys, time
        from vr_stream_ros.ring.frame_ring import FrameRingWriter, FrameSpec
        w = FrameRingWriter(sys.argv[1], FrameSpec(8, 8, 3))
        print("ready", flush=True)
        time.sleep(60)
    """, name)
    procs.append(crashed)
    assert crashed.stdout.readline().strip() == "ready"
    os.kill(crashed.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10  # killed but not reaped: a zombie keeps its pid
    while Path(f"/proc/{crashed.pid}/stat").read_text().split(") ")[1][0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with FrameRingWriter(name, FrameSpec(8, 8, 3)) as writer:
        assert writer.recovered_stale


def test_writer_restart_with_another_shape(name) -> None:
    first = FrameRingWriter(name, SPEC)
    strict = FrameRingReader(name, SPEC)
    loose = FrameRingReader(name)
    first.write(np.zeros(SPEC.shape, np.uint8), 1)
    first.close()
    bigger = FrameSpec(640, 480, 1, "mono8")
    with FrameRingWriter(name, bigger) as second:
        assert not second.recovered_stale, "a cleanly closed ring leaves nothing stale"
        second.write(np.zeros(bigger.shape, np.uint8), 2)
        assert loose.wait_newer(0, timeout=5) == 0
        assert loose.reattached == 1 and loose.spec == bigger
        assert loose.read(0).array.shape == (480, 640)
        with pytest.raises(RingShapeMismatch, match=r"640x480x1.*320x240x3"):
            strict.wait_newer(0, timeout=5)
    strict.close()
    loose.close()
    with pytest.raises(FrameRingError, match="after close"):
        loose.wait_newer(0, timeout=0.1)


def test_second_live_writer_is_refused(name, procs) -> None:
    with FrameRingWriter(name, SPEC) as first:
        assert not first.recovered_stale
        with pytest.raises(RingInUse, match=str(os.getpid())):
            FrameRingWriter(name, SPEC)  # same process
        other = _python("""
            import sys
            from vr_stream_ros.ring.frame_ring import FrameRingWriter, FrameSpec, RingInUse
            try:
                FrameRingWriter(sys.argv[1], FrameSpec(320, 240, 3))
            except RingInUse as exc:
                print(exc)
                sys.exit(0)
            sys.exit(1)
        """, name)
        procs.append(other)
        out, err = other.communicate(timeout=30)
        assert other.returncode == 0, err
        assert name in out and f"live process {os.getpid()}" in out
        first.write(np.zeros(SPEC.shape, np.uint8), 1)  # the refused writer broke nothing
        with FrameRingReader(name, SPEC, wake=False) as reader:
            assert reader.latest_seq() == 0


def test_reader_errors_name_ring_and_shapes(name) -> None:
    with pytest.raises(RingNotFound, match=name):
        FrameRingReader(name)
    with FrameRingWriter(name, SPEC):
        with pytest.raises(RingShapeMismatch) as err:
            FrameRingReader(name, FrameSpec(640, 480, 3))
        assert "320x240x3" in str(err.value) and "640x480x3" in str(err.value)
        assert name in str(err.value)
    with pytest.raises(RingNotFound, match=r"after waiting 0\.2 s.*camera_node"):
        FrameRingReader.wait_for(name, timeout=0.2)


def test_foreign_file_is_not_taken_over(name) -> None:
    path = Path("/dev/shm", name)
    path.write_bytes(b"not a ring" * 1000)
    try:
        with pytest.raises(FrameRingError, match="not a frame ring"):
            FrameRingWriter(name, SPEC)
        with pytest.raises(FrameRingError, match="not a frame ring"):
            FrameRingReader(name)
        assert path.read_bytes().startswith(b"not a ring")
    finally:
        path.unlink()


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"name": "bad/name"}, "ring name"),
    ({"name": ""}, "ring name"),
    ({"name": "x" * 201}, "ring name"),
    ({"slots": 1}, "slots"),
    ({"slots": 65}, "slots"),
    ({"spec": (320, 240)}, "spec"),
])
def test_bad_writer_arguments_name_the_field(kwargs, named) -> None:
    args = {"name": "vrtest_ok", "spec": SPEC, "slots": 4, **kwargs}
    with pytest.raises(ValueError, match=named):
        FrameRingWriter(**args)
    assert not os.path.exists("/dev/shm/vrtest_ok")


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"width": 0}, "width"), ({"height": -1}, "height"), ({"width": 8.0}, "width"),
    ({"channels": 2}, "channels"), ({"channels": True}, "channels"),
    ({"pixel_format": "x" * 16}, "pixel_format"), ({"pixel_format": "rgb\0"}, "pixel_format"),
])
def test_bad_spec_names_the_field(kwargs, named) -> None:
    with pytest.raises(ValueError, match=named):
        FrameSpec(**{"width": 8, "height": 8, **kwargs})


def test_spec_shapes() -> None:
    assert FrameSpec(4, 2, 1).shape == (2, 4) and FrameSpec(4, 2, 1).nbytes == 8
    assert FrameSpec(4, 2, 4, "rgba8").shape == (2, 4, 4)


# -- never blocking, always cleaning up -----------------------------------------------------
def test_writer_never_blocks_on_a_reader_that_never_reads(name) -> None:
    with FrameRingWriter(name, SPEC) as writer:
        sleeper = FrameRingReader(name)  # registered, never drains its doorbell
        frame = np.zeros(SPEC.shape, np.uint8)
        for _ in range(1000):
            writer.write(frame, time.monotonic_ns())
        assert writer.frames_published == 1000
        assert writer.registered_readers == 1, "a full queue is not a dead reader"
        assert sleeper.wait_newer(998, timeout=1) == 999
        sleeper.close()
        assert writer.registered_readers == 0


def test_unreachable_doorbell_falls_back_to_polling(name, procs) -> None:
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare --net (root) for a reader in another network namespace")
    with FrameRingWriter(name, SPEC) as writer:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        reader = subprocess.Popen(["unshare", "--net", sys.executable, "-c", textwrap.dedent("""
            import sys
            from vr_stream_ros.ring.frame_ring import FrameRingReader
            r = FrameRingReader(sys.argv[1])
            print("attached", flush=True)
            last = -1
            while last < 150:
                seq = r.wait_newer(last, timeout=5)
                if seq is None:
                    sys.exit("no frame in 5 s")
                last = seq
            print("polling" if r.polling else "doorbell", flush=True)
        """), name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(reader)
        assert reader.stdout.readline().strip() == "attached"
        for _ in range(400):
            if reader.poll() is not None:
                break
            writer.write(np.zeros(SPEC.shape, np.uint8), time.monotonic_ns())
            time.sleep(0.005)
        out, err = reader.communicate(timeout=20)
        assert reader.returncode == 0, err
        assert out.strip() == "polling"
        assert writer.registered_readers == 0


def test_registry_full_is_a_clear_error(name) -> None:
    with FrameRingWriter(name, SPEC) as writer:
        readers = [FrameRingReader(name) for _ in range(16)]
        with pytest.raises(FrameRingError, match="reader places"):
            FrameRingReader(name)
        assert writer.registered_readers == 16
        with FrameRingReader(name, wake=False) as poller:  # needs no place
            assert poller.polling
        for r in readers:
            r.close()


def test_dropped_writer_is_removed_by_its_finalizer(name) -> None:
    writer = FrameRingWriter(name, SPEC)
    assert os.path.exists(f"/dev/shm/{name}")
    del writer
    gc.collect()
    assert not os.path.exists(f"/dev/shm/{name}")


def test_writer_removed_at_interpreter_exit(name, procs) -> None:
    child = _python("""
        import sys
        from vr_stream_ros.ring.frame_ring import FrameRingWriter, FrameSpec
        keep = FrameRingWriter(sys.argv[1], FrameSpec(8, 8, 3))  # never closed
        print(keep.name)
    """, name)
    procs.append(child)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert out.strip() == name
    assert not os.path.exists(f"/dev/shm/{name}"), "atexit must remove the segment"
