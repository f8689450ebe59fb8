"""Shared-memory frame ring: one writer, any number of readers, zero-copy numpy views.

The ring is one file in /dev/shm (POSIX shared memory, tmpfs) mapped by every process.
``multiprocessing.shared_memory`` is not used: its resource tracker unlinks a segment
when a mere reader exits (Python 3.11).

Layout (little-endian, all counters int64 on 8-byte boundaries)::

    0     header page:  magic b"VRRING01", layout version, width, height, channels,
                        slots, frame layout (0 mono, 1 side_by_side, 2 top_bottom:
                        index into camera.layout.LAYOUTS), pixel_format (16 B),
                        slot stride, data offset,
                        writer pid + start time, closed flag, generation, latest seq,
                        registry version, nominal fps (float64, 0 = unknown), then 16
                        doorbell entries of 128 B
    4096  slot table:   64 B per slot (own cache line): version, seq, capture_ns, publish_ns,
                        eye_skew_ns (stereo: right minus left capture), pairs_dropped
                        (stereo: the camera's running count of unpaired frames)
    8192  pixels:       slot i at 8192 + i * stride, page aligned (stride = frame rounded
                        up to 4096 B), so a slot can also back a DMA or V4L2 buffer

Each slot is a sequence lock. ``loan()`` sets ``version`` odd before the pixels are
touched; ``publish()`` writes the metadata, sets ``version = 2 * seq + 2``, then
``latest_seq``, then rings the doorbells. A view of frame ``seq`` is valid while
``version == 2 * seq + 2``; ``is_intact()`` re-checks that after the consumer used the
pixels, so a reader lapped by the writer finds out instead of shipping a torn frame.
The writer never blocks and never waits for readers. Memory barriers sit between the
version and pixel stores (see ``_fence``) for weakly ordered CPUs (the Pi's Cortex-A76);
x86 needs none.

Doorbell: a reader binds an AF_UNIX datagram socket in the abstract namespace and
registers its address in a free registry entry (readers serialise that with ``flock``
on the segment; the writer never takes the lock on its live ring). After each publish
the writer sends the 8-byte seq to every entry with MSG_DONTWAIT: a full queue means
that reader is awake already; a refused send means it died, and the writer marks the
entry pruned (it writes only a tombstone word, so it cannot erase a reader that is
registering concurrently). The writer re-reads the registry only when its version
changes. Readers sleep in ``poll()`` on the socket, drain it and take ``latest_seq`` as
truth. The kernel's socket queue also gives the reader a happens-before edge on every
store the writer made before sending. Processes sharing a ring must share the PID and
network namespaces (as nodes on one host do); a reader whose doorbell cannot be
reached falls back to polling every 0.5 ms.

Lifecycle: the writer builds the segment complete in an unnamed O_TMPFILE and links it
into /dev/shm in one step, so nobody ever maps a half-initialised ring and two writers
cannot both create it. A writer that crashed leaves its segment behind: the next writer
of that name finds the recorded process gone (pid plus start time, so a reused pid or a
zombie counts as gone), removes the stale segment and creates a new one
(``recovered_stale``). Readers notice the new inode (or the closed flag) when no frame
came for 100 ms and re-attach by themselves (``reattached``); the new writer counts
from seq 0 again. ``close()`` runs from the context manager, a weakref finalizer and at
interpreter exit; SIGKILL cannot be caught, and SIGINT/SIGTERM must be turned into an
orderly exit by the node (rclpy's signal handling plus ``close()`` in its shutdown).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import mmap
import os
import re
import select
import socket
import struct
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np

from vr_stream_ros.camera.layout import LAYOUTS, eye_size

SHM_DIR = "/dev/shm"
MAGIC = b"VRRING01"
LAYOUT_VERSION = 2
PAGE = 4096
SLOT_TABLE = PAGE           # byte offset of the slot table
DATA_OFFSET = 2 * PAGE      # byte offset of slot 0's pixels
SLOT_ENTRY = 64             # bytes per slot-table entry
MAX_SLOTS = PAGE // SLOT_ENTRY
REGISTRY_ENTRIES = 16
RESTART_CHECK_S = 0.1       # idle time after which a reader looks for a restarted writer
POLL_INTERVAL_S = 0.0005    # sleep step of readers without a doorbell

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_LAYOUT = struct.Struct("<8s6I16s2Q")  # magic, version, w, h, c, slots, layout, fmt, stride, data
_SEQ = struct.Struct("<q")

# Header words (index into the int64 view of the first two pages).
_W_WRITER_PID = 64 // 8
_W_WRITER_START = 72 // 8
_W_CLOSED = 80 // 8
_W_GENERATION = 88 // 8
_W_LATEST = 96 // 8
_W_REGISTRY_VERSION = 104 // 8
_FPS_OFFSET = 112           # float64: the writer's frame rate; 0.0 from writers before it
_REGISTRY = 128             # byte offset of doorbell entry 0
_ENTRY = 128                # bytes per entry: pid, start, token, pruned token, address
_ADDRESS_OFFSET = 32
_ADDRESS_MAX = _ENTRY - _ADDRESS_OFFSET
_HEADER_WORDS = DATA_OFFSET // 8

_FENCE_LOCK = threading.Lock()
_OWNED: set[str] = set()    # ring names with a live writer in this process
_HAVE_PROC = os.path.isdir("/proc/self")


def _fence() -> None:
    """Full memory barrier between the stores/loads before and after it.

    Python has no fence primitive; CPython's lock is built on glibc atomics with
    release (unlock) and acquire (lock) semantics, and a release followed by an
    acquire is ordered on ARMv8 (RCsc), which makes acquire+release twice a full
    barrier. About 0.1-0.3 us; x86 (TSO) would not need it at all.
    """
    _FENCE_LOCK.acquire()
    _FENCE_LOCK.release()
    _FENCE_LOCK.acquire()
    _FENCE_LOCK.release()


class FrameRingError(Exception):
    """Base of the ring's errors; messages name the ring and what was expected."""


class RingNotFound(FrameRingError):
    """No ring of that name exists (camera_node creates it)."""


class RingShapeMismatch(FrameRingError):
    """The ring holds frames of another shape than the reader expects."""


class RingInUse(FrameRingError):
    """Another live writer already owns a ring of that name."""


@dataclass(frozen=True)
class FrameSpec:
    """Shape and pixel format of the frames in a ring (dtype is always uint8)."""

    width: int
    height: int
    channels: int = 3
    pixel_format: str = "rgb8"
    fps: float = 0.0
    """Frames per second the writer produces (the camera's rate); 0.0 = unknown."""
    layout: str = "mono"
    """How a frame holds the eyes: mono, side_by_side or top_bottom (camera.layout)."""

    def __post_init__(self) -> None:
        for name in ("width", "height", "channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"FrameSpec.{name}: got {value!r}, expected a positive int")
        if self.channels not in (1, 3, 4):
            raise ValueError(f"FrameSpec.channels: got {self.channels!r}, expected 1, 3 or 4")
        fmt = self.pixel_format
        if not (isinstance(fmt, str) and 0 < len(fmt) <= 15 and fmt.isascii()
                and fmt.isprintable()):
            raise ValueError(f"FrameSpec.pixel_format: got {fmt!r}, expected 1-15 printable "
                             "ASCII characters (a sensor_msgs encoding such as 'rgb8')")
        if (isinstance(self.fps, bool) or not isinstance(self.fps, int | float)
                or not 0.0 <= self.fps <= 10_000.0):
            raise ValueError(f"FrameSpec.fps: got {self.fps!r}, expected frames per second "
                             "in 0..10000 (0 = unknown)")
        eye_size(self.width, self.height, self.layout)  # ValueError naming what is wrong

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy shape of one frame: (H, W, C), or (H, W) for one channel."""
        if self.channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, self.channels)

    @property
    def nbytes(self) -> int:
        """Bytes of one frame."""
        return self.width * self.height * self.channels

    def describe(self) -> str:
        """e.g. '1280x720x3 rgb8', '1280x1440x3 rgb8 top_bottom'."""
        return (f"{self.width}x{self.height}x{self.channels} {self.pixel_format}"
                + ("" if self.layout == "mono" else f" {self.layout}"))


@dataclass
class FrameLoan:
    """A slot lent to the writer: fill ``array``, then ``publish`` (or ``cancel``) it."""

    array: np.ndarray
    seq: int
    slot: int


@dataclass
class FrameView:
    """A read-only, zero-copy view of one committed frame; check ``is_intact`` after use."""

    array: np.ndarray
    seq: int
    slot: int
    capture_ns: int
    publish_ns: int
    segment: int = field(default=0, repr=False)  # inode of the segment it points into
    eye_skew_ns: int = 0
    """Stereo: right eye's capture minus the left eye's (capture_ns is the left's)."""
    pairs_dropped: int = 0
    """Stereo: the camera's count of frames dropped for want of a partner, so far."""


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"ring name: got {name!r}, expected 1-200 characters from "
                         "[A-Za-z0-9_.-] (a file name in /dev/shm)")
    return name


def _start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live process; None if gone or a zombie."""
    if not _HAVE_PROC:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return 0  # exists, but unreadable: alive as far as we can tell
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _alive(pid: int, start: int) -> bool:
    """True if ``pid`` is a live process and (when recorded) started at ``start``."""
    if pid <= 0:
        return False
    now = _start_time(pid)
    if now is None:
        return False
    return not (start and now and now != start)


class _Segment:
    """An mmap of one ring file, with an int64 view of its header and slot table."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.inode = os.fstat(fd).st_ino
        self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.words = np.frombuffer(self.map, dtype=np.int64, count=_HEADER_WORDS)

    def arrays(self, spec: FrameSpec, slots: int, stride: int, *, writable: bool) -> list:
        base = np.frombuffer(self.map, dtype=np.uint8)
        out = []
        for i in range(slots):
            start = DATA_OFFSET + i * stride
            view = base[start: start + spec.nbytes].reshape(spec.shape)
            view.flags.writeable = writable
            out.append(view)
        return out

    def close(self) -> None:
        self.words = None
        with contextlib.suppress(BufferError, ValueError):
            self.map.close()  # BufferError: a caller still holds a view; GC unmaps it later
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _slot_word(slot: int) -> int:
    return (SLOT_TABLE + slot * SLOT_ENTRY) // 8


def _entry_word(index: int) -> int:
    return (_REGISTRY + index * _ENTRY) // 8


class FrameRingWriter:
    """Creates the ring ``/dev/shm/<name>`` and publishes frames into it; never blocks."""

    def __init__(self, name: str, spec: FrameSpec, slots: int = 4) -> None:
        self.name = _check_name(name)
        if not isinstance(spec, FrameSpec):
            raise ValueError(f"ring '{name}': spec must be a FrameSpec, got {spec!r}")
        if not isinstance(slots, int) or isinstance(slots, bool) or not 2 <= slots <= MAX_SLOTS:
            raise ValueError(f"ring '{name}': slots got {slots!r}, expected an int in "
                             f"2..{MAX_SLOTS}")
        self.spec, self.slots = spec, slots
        self.recovered_stale = False
        self.frames_published = 0
        self._stride = -(-spec.nbytes // PAGE) * PAGE
        self._path = os.path.join(SHM_DIR, name)
        self._closed = True
        if name in _OWNED:
            raise RingInUse(f"ring '{name}': this process ({os.getpid()}) already has a live "
                            "writer for it; close that one first")
        self._seg = self._create()
        _OWNED.add(name)
        self._closed = False
        self._words = self._seg.words
        self._arrays = self._seg.arrays(spec, slots, self._stride, writable=True)
        self._next_seq = 0
        self._payload = bytearray(8)
        self._doorbell = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._registry_version = -1
        self._readers: list[tuple[int, int, bytes]] = []  # (entry, token, address)
        # Also runs at interpreter exit (finalize.atexit); holds no reference to self.
        self._finalizer = weakref.finalize(
            self, _release_writer, self._seg, self._path, name, os.getpid(), self._doorbell)

    # -- creation ----------------------------------------------------------------------
    def _create(self) -> _Segment:
        size = DATA_OFFSET + self.slots * self._stride
        try:
            fd = os.open(SHM_DIR, os.O_TMPFILE | os.O_RDWR, 0o600)
        except OSError as exc:
            raise FrameRingError(f"ring '{self.name}': cannot create a segment in {SHM_DIR} "
                                 f"({exc.strerror}); is /dev/shm a mounted tmpfs?") from None
        try:
            os.posix_fallocate(fd, 0, size)  # ENOSPC now, not SIGBUS on a later frame
        except OSError as exc:
            os.close(fd)
            raise FrameRingError(
                f"ring '{self.name}': cannot reserve {size / 2**20:.1f} MiB in {SHM_DIR} "
                f"({exc.strerror}); enlarge /dev/shm (docker: --shm-size) or use fewer "
                f"slots than {self.slots}") from None
        seg = _Segment(fd, size)
        spec = self.spec
        _LAYOUT.pack_into(seg.map, 0, MAGIC, LAYOUT_VERSION, spec.width, spec.height,
                          spec.channels, self.slots, LAYOUTS.index(spec.layout),
                          spec.pixel_format.encode(),
                          self._stride, DATA_OFFSET)
        struct.pack_into("<d", seg.map, _FPS_OFFSET, float(spec.fps))
        w = seg.words
        w[_W_WRITER_PID] = os.getpid()
        w[_W_WRITER_START] = _start_time(os.getpid()) or 0
        w[_W_LATEST] = -1
        try:
            self._link(seg)
        except BaseException:
            seg.close()
            raise
        return seg

    def _link(self, seg: _Segment) -> None:
        """Give the finished segment its name; replace a stale one, refuse a live one."""
        dir_fd = os.open(SHM_DIR, os.O_DIRECTORY | os.O_RDONLY)
        try:
            for _ in range(10):
                try:
                    os.link(f"/proc/self/fd/{seg.fd}", self.name, dst_dir_fd=dir_fd)
                    return
                except FileExistsError:
                    pass
                generation = self._remove_stale()
                if generation is not None:
                    seg.words[_W_GENERATION] = generation + 1
                    self.recovered_stale = True
        finally:
            os.close(dir_fd)
        raise FrameRingError(f"ring '{self.name}': {self._path} keeps reappearing; "
                             "is another process creating it in a loop?")

    def _remove_stale(self) -> int | None:
        """Unlink the segment at our path if its writer is gone; returns its generation."""
        try:
            fd = os.open(self._path, os.O_RDWR)
        except FileNotFoundError:
            return None  # vanished meanwhile: just retry the link
        try:
            head = os.pread(fd, 128, 0)
            if len(head) < 128 or head[:8] != MAGIC:
                raise FrameRingError(
                    f"ring '{self.name}': {self._path} exists but is not a frame ring "
                    "(expected magic VRRING01); remove it or choose another ring_name")
            pid, start, _closed, generation = struct.unpack_from("<4q", head, 64)
            if struct.unpack_from("<I", head, 8)[0] != LAYOUT_VERSION:
                start = generation = 0  # an older layout: only its pid word is comparable
            if pid != os.getpid() and _alive(pid, start):
                raise RingInUse(f"ring '{self.name}': already written by live process {pid} "
                                "(another camera_node with the same ring_name?)")
            # Serialise with other writers recovering the same stale file at once.
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(self._path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(self._path)
            except FileNotFoundError:
                pass
            return generation
        finally:
            os.close(fd)  # also drops the lock

    # -- publishing --------------------------------------------------------------------
    def loan(self) -> FrameLoan:
        """Lend the next slot, already marked 'being written'; never blocks."""
        if self._closed:
            raise FrameRingError(f"ring '{self.name}': loan() after close()")
        seq = self._next_seq
        slot = seq % self.slots
        self._words[_slot_word(slot)] = 2 * seq + 1
        _fence()  # readers must see the odd version before any pixel changes
        return FrameLoan(self._arrays[slot], seq, slot)

    def publish(self, loan: FrameLoan, capture_ns: int, eye_skew_ns: int = 0,
                pairs_dropped: int = 0) -> int:
        """Commit a loaned slot and wake the readers; returns publish_ns (monotonic).

        ``eye_skew_ns`` and ``pairs_dropped``: a stereo camera's pair metadata (0 mono).
        """
        if loan.seq != self._next_seq or self._closed:
            raise FrameRingError(f"ring '{self.name}': publish of frame {loan.seq}, expected "
                                 f"the current loan {self._next_seq}" +
                                 (" (ring closed)" if self._closed else ""))
        seq, w = loan.seq, self._words
        word = _slot_word(loan.slot)
        publish_ns = time.monotonic_ns()
        w[word + 1] = seq
        w[word + 2] = capture_ns
        w[word + 3] = publish_ns
        w[word + 4] = eye_skew_ns
        w[word + 5] = pairs_dropped
        _fence()  # pixels and metadata before the version that validates them
        w[word] = 2 * seq + 2
        w[_W_LATEST] = seq
        self._next_seq = seq + 1
        self.frames_published += 1
        self._ring_doorbells(seq)
        return publish_ns

    def cancel(self, loan: FrameLoan) -> None:
        """Give a loaned slot back unpublished (the frame it held before is gone)."""
        if loan.seq == self._next_seq and not self._closed:
            self._words[_slot_word(loan.slot)] = 0

    def write(self, frame: np.ndarray, capture_ns: int) -> int:
        """Copy ``frame`` into the next slot and publish it; returns publish_ns."""
        loan = self.loan()
        try:
            np.copyto(loan.array, frame)
        except Exception as exc:
            self.cancel(loan)
            raise ValueError(f"ring '{self.name}': frame of shape {np.shape(frame)} "
                             f"does not fit {self.spec.describe()} ({exc})") from None
        return self.publish(loan, capture_ns)

    @property
    def registered_readers(self) -> int:
        """Readers whose doorbell the writer currently rings."""
        if not self._closed and self._words[_W_REGISTRY_VERSION] != self._registry_version:
            self._reload_registry()
        return len(self._readers)

    def _ring_doorbells(self, seq: int) -> None:
        if self._words[_W_REGISTRY_VERSION] != self._registry_version:
            self._reload_registry()
        if not self._readers:
            return
        payload = self._payload
        _SEQ.pack_into(payload, 0, seq)
        pruned = False
        for index, token, address in self._readers:
            try:
                self._doorbell.sendto(payload, socket.MSG_DONTWAIT, address)
            except BlockingIOError:
                pass  # its queue is full: that reader has wake-ups pending already
            except (ConnectionRefusedError, FileNotFoundError):
                # The reader is gone: a tombstone only, its pid and address stay untouched.
                self._words[_entry_word(index) + 3] = token
                pruned = True
            except OSError:
                pass
        if pruned:
            self._reload_registry()

    def _reload_registry(self) -> None:
        w, m = self._words, self._seg.map
        self._registry_version = int(w[_W_REGISTRY_VERSION])  # read before the entries
        readers = []
        for i in range(REGISTRY_ENTRIES):
            word = _entry_word(i)
            pid, token, pruned = int(w[word]), int(w[word + 2]), int(w[word + 3])
            if pid and token != pruned:
                off = _REGISTRY + i * _ENTRY + _ADDRESS_OFFSET
                address = bytes(m[off: off + _ADDRESS_MAX]).rstrip(b"\0")
                readers.append((i, token, b"\0" + address))
        self._readers = readers

    # -- closing -----------------------------------------------------------------------
    def close(self) -> None:
        """Mark the ring closed and remove the segment; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._arrays = []
        self._words = None
        self._finalizer()

    def __enter__(self) -> FrameRingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _release_writer(seg: _Segment, path: str, name: str, owner: int,
                    doorbell: socket.socket) -> None:
    if os.getpid() != owner:
        return  # a forked child must not remove its parent's ring
    _OWNED.discard(name)
    with contextlib.suppress(Exception):
        seg.words[_W_CLOSED] = 1
    with contextlib.suppress(OSError):
        if os.stat(path).st_ino == seg.inode:
            os.unlink(path)
    doorbell.close()
    seg.close()


class FrameRingReader:
    """Attaches to a ring, hands out read-only views and follows writer restarts."""

    _instances = 0

    def __init__(self, name: str, spec: FrameSpec | None = None, *, wake: bool = True) -> None:
        self.name = _check_name(name)
        if spec is not None and not isinstance(spec, FrameSpec):
            raise ValueError(f"ring '{name}': spec must be a FrameSpec or None, got {spec!r}")
        self.expected = spec
        self.wake = wake
        self.reattached = 0
        self.polling = not wake  # True when no doorbell wakes this reader
        self._path = os.path.join(SHM_DIR, name)
        self._seg: _Segment | None = None
        self._sock: socket.socket | None = None
        self._poller: select.poll | None = None
        self._entry = self._token = -1
        self._closed = False
        self._drain_buf = bytearray(64)
        FrameRingReader._instances += 1
        self._address = (f"vr_ring/{name[:40]}/{os.getpid()}/"
                         f"{FrameRingReader._instances}").encode()
        self._attach()

    @classmethod
    def wait_for(cls, name: str, spec: FrameSpec | None = None, *, timeout: float,
                 wake: bool = True) -> FrameRingReader:
        """Attach as soon as the ring exists; RingNotFound after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return cls(name, spec, wake=wake)
            except RingNotFound:
                if time.monotonic() >= deadline:
                    raise RingNotFound(
                        f"ring '{name}': {SHM_DIR}/{name} not found after waiting {timeout:g} s "
                        "(camera_node creates it; is it running with the same ring_name?)"
                    ) from None
                time.sleep(0.05)

    # -- attaching ---------------------------------------------------------------------
    def _attach(self) -> None:
        try:
            fd = os.open(self._path, os.O_RDWR)
        except FileNotFoundError:
            raise RingNotFound(f"ring '{self.name}': {self._path} does not exist "
                               "(camera_node creates it)") from None
        try:
            size = os.fstat(fd).st_size
            if size < DATA_OFFSET:
                raise FrameRingError(f"ring '{self.name}': {self._path} is too small to be "
                                     "a frame ring")
            seg = _Segment(fd, size)
        except BaseException:
            os.close(fd)
            raise
        try:
            spec, slots, stride = self._read_layout(seg, size)
        except BaseException:
            seg.close()
            raise
        self._seg, self.spec, self.slots, self._stride = seg, spec, slots, stride
        self._arrays = seg.arrays(spec, slots, stride, writable=False)
        self._next_check = time.monotonic() + RESTART_CHECK_S
        if self.wake:
            self._register_doorbell()

    def _read_layout(self, seg: _Segment, size: int) -> tuple[FrameSpec, int, int]:
        magic, version, w, h, c, slots, layout, fmt, stride, data = _LAYOUT.unpack_from(seg.map)
        if magic != MAGIC or version != LAYOUT_VERSION or data != DATA_OFFSET:
            raise FrameRingError(
                f"ring '{self.name}': {self._path} is not a frame ring of layout "
                f"{LAYOUT_VERSION} (magic {magic!r}, layout {version}); is the camera_node "
                "from another version of vr_stream_ros?")
        fps = struct.unpack_from("<d", seg.map, _FPS_OFFSET)[0]
        fps = fps if math.isfinite(fps) and 0.0 <= fps <= 10_000.0 else 0.0
        if layout >= len(LAYOUTS):
            raise FrameRingError(f"ring '{self.name}': frame layout {layout} unknown "
                                 f"(expected 0..{len(LAYOUTS) - 1}: {', '.join(LAYOUTS)})")
        spec = FrameSpec(w, h, c, fmt.rstrip(b"\0").decode("ascii"), fps, LAYOUTS[layout])
        want = self.expected
        if want is not None and (w, h, c) != (want.width, want.height, want.channels):
            raise RingShapeMismatch(
                f"ring '{self.name}' holds {spec.describe()} frames, but this reader expects "
                f"{want.describe()}; make width/height/pixel_format agree with camera_node")
        if size < DATA_OFFSET + slots * stride:
            raise FrameRingError(f"ring '{self.name}': {self._path} is truncated")
        return spec, slots, stride

    def _register_doorbell(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(b"\0" + self._address)
            sock.setblocking(False)
            self._entry, self._token = self._claim_entry()
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        self.polling = False

    def _claim_entry(self) -> tuple[int, int]:
        seg = self._seg
        w = seg.words
        fcntl.flock(seg.fd, fcntl.LOCK_EX)
        try:
            for i in range(REGISTRY_ENTRIES):
                word = _entry_word(i)
                pid, start, token, pruned = (int(x) for x in w[word: word + 4])
                if pid and token != pruned and _alive(pid, start):
                    continue
                token = int(w[_W_REGISTRY_VERSION]) + 1
                off = _REGISTRY + i * _ENTRY + _ADDRESS_OFFSET
                seg.map[off: off + _ADDRESS_MAX] = self._address.ljust(_ADDRESS_MAX, b"\0")
                w[word + 1] = _start_time(os.getpid()) or 0
                w[word + 2] = token
                w[word] = os.getpid()
                _fence()
                w[_W_REGISTRY_VERSION] = token  # the writer re-reads the registry
                return i, token
        finally:
            fcntl.flock(seg.fd, fcntl.LOCK_UN)
        raise FrameRingError(f"ring '{self.name}': all {REGISTRY_ENTRIES} reader places are "
                             "taken (too many readers with wake=True)")

    def _unregister(self) -> None:
        seg, word = self._seg, _entry_word(self._entry)
        with contextlib.suppress(OSError, ValueError, TypeError):
            fcntl.flock(seg.fd, fcntl.LOCK_EX)
            try:
                w = seg.words
                if int(w[word + 2]) == self._token and int(w[word]) == os.getpid():
                    w[word] = 0
                    w[_W_REGISTRY_VERSION] += 1
            finally:
                fcntl.flock(seg.fd, fcntl.LOCK_UN)

    def _detach(self) -> None:
        if self._sock is not None:
            if self._seg is not None:
                self._unregister()
            self._sock.close()
            self._sock = self._poller = None
        self._arrays = []
        if self._seg is not None:
            self._seg.close()
            self._seg = None

    def _writer_replaced(self) -> bool:
        """True if our segment was closed or another one now has its name."""
        try:
            return os.stat(self._path).st_ino != self._seg.inode
        except FileNotFoundError:
            return False  # no new writer yet: keep what we have

    def _reattach(self) -> bool:
        """Map whatever segment now has our name; False if there is none yet."""
        old = self._seg.inode if self._seg is not None else None
        self._detach()
        try:
            self._attach()
        except RingNotFound:
            return False
        if self._seg.inode != old:
            self.reattached += 1
        return True

    def _idle_check(self) -> bool:
        """After ~100 ms without frames: follow a restarted writer; True if re-attached."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + RESTART_CHECK_S
        if self._writer_replaced():
            return self._reattach()
        if self._sock is not None and self._doorbell_pruned():
            # Alive but unreachable (another network namespace?): poll instead.
            self._sock.close()
            self._sock = self._poller = None
            self.polling = True
        return False

    def _doorbell_pruned(self) -> bool:
        word = _entry_word(self._entry)
        return int(self._seg.words[word + 3]) == self._token

    # -- reading -----------------------------------------------------------------------
    @property
    def pixel_format(self) -> str:
        """The ring's pixel format (a sensor_msgs encoding)."""
        return self.spec.pixel_format

    @property
    def generation(self) -> int:
        """How many stale segments of this name were replaced before the current one."""
        return int(self._seg.words[_W_GENERATION]) if self._seg is not None else -1

    @property
    def writer_closed(self) -> bool:
        """True once the writer of the mapped segment closed it."""
        return self._seg is None or bool(self._seg.words[_W_CLOSED])

    def latest_seq(self) -> int:
        """Sequence number of the newest committed frame; -1 if none yet."""
        if self._seg is None:
            return -1
        return int(self._seg.words[_W_LATEST])

    def wait_newer(self, after_seq: int, timeout: float) -> int | None:
        """The newest committed seq > ``after_seq``, waiting up to ``timeout`` s; else None.

        Sleeps on the doorbell (no busy-spinning). If the writer was restarted meanwhile,
        the reader re-attaches and the new writer's frames count from 0: the seq returned
        may then be <= ``after_seq``.
        """
        if self._closed:
            raise FrameRingError(f"ring '{self.name}': wait_newer() after close()")
        deadline = time.monotonic() + timeout
        while True:
            if self._seg is None:
                if self._reattach():
                    after_seq = -1
                elif time.monotonic() >= deadline:
                    return None
                else:
                    time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                    continue
            self._drain()
            latest = int(self._seg.words[_W_LATEST])
            if latest > after_seq:
                return latest
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if self._idle_check():
                    latest = self.latest_seq()
                    return latest if latest >= 0 else None
                return None
            if self._poller is not None:
                if self._poller.poll(math.ceil(min(remaining, RESTART_CHECK_S) * 1000)):
                    continue
            else:
                time.sleep(min(remaining, POLL_INTERVAL_S))
            if self._idle_check():
                after_seq = -1

    def _drain(self) -> None:
        sock = self._sock
        if sock is None:
            return
        buf = self._drain_buf
        while True:
            try:
                sock.recv_into(buf)
            except OSError:  # BlockingIOError: drained
                return

    def read(self, seq: int) -> FrameView | None:
        """A zero-copy view of frame ``seq``; None if its slot no longer holds it."""
        seg = self._seg
        if seq < 0 or seg is None:
            return None
        slot = seq % self.slots
        word = _slot_word(slot)
        w = seg.words
        committed = 2 * seq + 2
        if w[word] != committed:
            return None
        _fence()
        capture_ns, publish_ns = int(w[word + 2]), int(w[word + 3])
        eye_skew_ns, pairs_dropped = int(w[word + 4]), int(w[word + 5])
        _fence()
        if w[word] != committed:
            return None
        return FrameView(self._arrays[slot], seq, slot, capture_ns, publish_ns, seg.inode,
                         eye_skew_ns, pairs_dropped)

    def read_latest(self) -> FrameView | None:
        """A view of the newest frame, or None."""
        return self.read(self.latest_seq())

    def is_intact(self, view: FrameView) -> bool:
        """True if the writer has not started overwriting ``view``'s slot since ``read``."""
        seg = self._seg
        if seg is None or (view.segment and view.segment != seg.inode):
            return False
        _fence()  # the consumer's pixel loads happen before this version load
        return int(seg.words[_slot_word(view.slot)]) == 2 * view.seq + 2

    def close(self) -> None:
        """Unregister the doorbell and unmap; idempotent."""
        self._closed = True
        self._detach()

    def __enter__(self) -> FrameRingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
