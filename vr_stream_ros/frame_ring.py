"""Shared-memory frame ring: one writer, any number of readers, zero-copy numpy views.

The segment is a file in /dev/shm (POSIX shared memory) mapped by every process:

    header (4096 B): magic, layout, writer pid, closed flag, latest seq, doorbell registry
    slot i:          slot header (64 B: version, seq, capture_ns, publish_ns) + pixels

Each slot is a sequence lock. The writer sets ``version`` odd before touching the
pixels (``loan``) and to ``2 * seq + 2`` when the frame is complete (``publish``). A
reader's view of frame ``seq`` is valid while ``version == 2 * seq + 2``; checking it
again after use (``is_intact``) tells whether the writer lapped the reader meanwhile.
The writer never blocks and never waits for readers.

Readers sleep on a doorbell: a Unix datagram socket in the abstract namespace that each
reader registers in the header. After each publish the writer sends the new sequence
number to every registered socket without blocking (a full queue just means the reader
is already awake). Besides the wake-up within microseconds, the kernel's socket queue
gives the reader a happens-before edge on the writer's stores, which matters on weakly
ordered CPUs such as the Pi's Cortex-A76. A dead reader's socket refuses the datagram
and the writer drops its registry entry.

A writer that crashes leaves its segment behind: the next writer of that name finds the
recorded pid dead, removes the stale segment and creates a new one; readers notice the
new inode and re-attach by themselves. The node owning a writer must turn SIGINT/SIGTERM
into an orderly exit so ``close()`` (also run by atexit and a finalizer) removes it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import mmap
import os
import re
import select
import socket
import struct
import time
import weakref
from dataclasses import dataclass

import numpy as np

SHM_DIR = "/dev/shm"
MAGIC = b"VRRING01"
HEADER_SIZE = 4096
SLOT_HEADER_SIZE = 64
REGISTRY_ENTRIES = 16
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")

# Header fields (offset, format).
_LAYOUT = struct.Struct("<8sIIIII16sQ")  # magic, width, height, channels, slots, pad, fmt, stride
_WRITER_PID = 64          # i64
_CLOSED = 72              # i64
_LATEST = 80              # i64, -1 = nothing yet
_REGISTRY_VERSION = 88    # u64
_REGISTRY = 128           # REGISTRY_ENTRIES x 64 bytes: i64 pid, 56-byte socket name
_ENTRY = 64
_SLOT = struct.Struct("<QqQQ")  # version, seq, capture_ns, publish_ns


class FrameRingError(Exception):
    """Base of the ring's errors; messages name the ring and what was expected."""


class RingNotFound(FrameRingError):
    """No ring of that name exists (camera_node creates it)."""


class RingShapeMismatch(FrameRingError):
    """The ring holds frames of another shape than the reader expects."""


class RingInUse(FrameRingError):
    """Another live process already writes a ring of that name."""


@dataclass(frozen=True)
class FrameSpec:
    """Shape and pixel format of the frames in a ring (always uint8)."""

    width: int
    height: int
    channels: int = 3
    pixel_format: str = "rgb8"

    def __post_init__(self) -> None:
        for field in ("width", "height"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"FrameSpec.{field}: got {value!r}, expected a positive integer")
        if self.channels not in (1, 3, 4):
            raise ValueError(f"FrameSpec.channels: got {self.channels!r}, expected 1, 3 or 4")
        if not self.pixel_format.isascii() or not 0 < len(self.pixel_format) <= 15:
            raise ValueError(f"FrameSpec.pixel_format: got {self.pixel_format!r}, "
                             "expected 1-15 ASCII characters")

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy shape of one frame."""
        if self.channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, self.channels)

    @property
    def nbytes(self) -> int:
        """Bytes of one frame."""
        return self.width * self.height * self.channels

    def describe(self) -> str:
        """e.g. '1280x720x3 rgb8'."""
        return f"{self.width}x{self.height}x{self.channels} {self.pixel_format}"


@dataclass
class FrameLoan:
    """A slot lent to the writer: fill ``array``, then ``publish`` (or ``cancel``)."""

    array: np.ndarray
    seq: int
    slot: int


@dataclass
class FrameView:
    """A read-only, zero-copy view of one committed frame."""

    array: np.ndarray
    seq: int
    slot: int
    capture_ns: int
    publish_ns: int


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"ring name: got {name!r}, expected 1-200 characters from [A-Za-z0-9_.-]")


def _slot_stride(spec: FrameSpec) -> int:
    return SLOT_HEADER_SIZE + (spec.nbytes + 4095) // 4096 * 4096


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Segment:
    """An mmap of /dev/shm/<name> with typed accessors."""

    def __init__(self, name: str, fd: int, size: int) -> None:
        self.name = name
        self.fd = fd
        self.inode = os.fstat(fd).st_ino
        self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.i64 = np.frombuffer(self.map, dtype=np.int64, count=HEADER_SIZE // 8)

    @property
    def path(self) -> str:
        return os.path.join(SHM_DIR, self.name)

    def read_spec(self) -> tuple[FrameSpec, int, int]:
        magic, w, h, c, slots, _pad, fmt, stride = _LAYOUT.unpack_from(self.map, 0)
        if magic == bytes(8):
            raise RingNotFound(f"ring '{self.name}': /dev/shm/{self.name} is still being created")
        if magic != MAGIC:
            raise FrameRingError(f"ring '{self.name}': /dev/shm/{self.name} is not a frame ring")
        return FrameSpec(w, h, c, fmt.rstrip(b"\0").decode()), slots, stride

    def close(self) -> None:
        self.i64 = None
        with contextlib.suppress(BufferError):
            self.map.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


class FrameRingWriter:
    """Creates the ring and publishes frames into it; never blocks."""

    def __init__(self, name: str, spec: FrameSpec, slots: int = 4) -> None:
        _check_name(name)
        if not isinstance(slots, int) or not 2 <= slots <= 64:
            raise ValueError(f"ring slots: got {slots!r}, expected 2..64")
        self.name, self.spec, self.slots = name, spec, slots
        self.recovered_stale = False
        self.frames_published = 0
        self._stride = _slot_stride(spec)
        size = HEADER_SIZE + slots * self._stride
        path = os.path.join(SHM_DIR, name)
        fd = self._create(path)
        try:
            os.ftruncate(fd, size)
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
        self._seg = _Segment(name, fd, size)
        _LAYOUT.pack_into(self._seg.map, 0, MAGIC, spec.width, spec.height, spec.channels,
                          slots, 0, spec.pixel_format.encode(), self._stride)
        i64 = self._seg.i64
        i64[_WRITER_PID // 8] = os.getpid()
        i64[_CLOSED // 8] = 0
        i64[_LATEST // 8] = -1
        base = np.frombuffer(self._seg.map, dtype=np.uint8)
        starts = [HEADER_SIZE + i * self._stride + SLOT_HEADER_SIZE for i in range(slots)]
        self._arrays = [base[s: s + spec.nbytes].reshape(spec.shape) for s in starts]
        self._next_seq = 0
        self._doorbell = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._registry_version = -1
        self._readers: list[tuple[int, bytes]] = []
        self._closed = False
        self._finalizer = weakref.finalize(self, FrameRingWriter._cleanup, self._seg, path,
                                           os.getpid())
        atexit.register(self.close)

    def _create(self, path: str) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
        try:
            return os.open(path, flags, 0o600)
        except FileExistsError:
            pass
        pid = self._recorded_writer(path)
        if pid != os.getpid() and _pid_alive(pid):
            raise RingInUse(f"ring '{self.name}': already written by live process {pid} "
                            "(another camera_node with the same ring_name?)")
        os.unlink(path)
        self.recovered_stale = True
        return os.open(path, flags, 0o600)

    @staticmethod
    def _recorded_writer(path: str) -> int:
        try:
            with open(path, "rb") as f:
                head = f.read(_WRITER_PID + 8)
        except OSError:
            return 0
        if len(head) < _WRITER_PID + 8 or head[:8] != MAGIC:
            return 0
        return struct.unpack_from("<q", head, _WRITER_PID)[0]

    def loan(self) -> FrameLoan:
        """Lend the next slot; it is marked 'being written' before this returns."""
        seq = self._next_seq
        slot = seq % self.slots
        off = HEADER_SIZE + slot * self._stride
        struct.pack_into("<Q", self._seg.map, off, 2 * seq + 1)
        return FrameLoan(self._arrays[slot], seq, slot)

    def publish(self, loan: FrameLoan, capture_ns: int) -> int:
        """Commit a loaned slot, wake the readers; returns the publish time (monotonic ns)."""
        if loan.seq != self._next_seq:
            raise FrameRingError(f"ring '{self.name}': loan of frame {loan.seq} published out "
                                 f"of order (expected {self._next_seq})")
        publish_ns = time.monotonic_ns()
        off = HEADER_SIZE + loan.slot * self._stride
        m = self._seg.map
        struct.pack_into("<qQQ", m, off + 8, loan.seq, capture_ns, publish_ns)
        struct.pack_into("<Q", m, off, 2 * loan.seq + 2)
        self._seg.i64[_LATEST // 8] = loan.seq
        self._next_seq += 1
        self.frames_published += 1
        self._ring_doorbells(loan.seq)
        return publish_ns

    def cancel(self, loan: FrameLoan) -> None:
        """Give a loaned slot back unpublished (its old frame is gone)."""
        off = HEADER_SIZE + loan.slot * self._stride
        struct.pack_into("<Q", self._seg.map, off, 0)

    def write(self, frame: np.ndarray, capture_ns: int) -> int:
        """Copy ``frame`` into the next slot and publish it."""
        loan = self.loan()
        np.copyto(loan.array, frame)
        return self.publish(loan, capture_ns)

    def _ring_doorbells(self, seq: int) -> None:
        i64 = self._seg.i64
        if i64[_REGISTRY_VERSION // 8] != self._registry_version:
            self._reload_registry()
        if not self._readers:
            return
        payload = struct.pack("<q", seq)
        for index, address in self._readers:
            try:
                self._doorbell.sendto(payload, socket.MSG_DONTWAIT, address)
            except BlockingIOError:
                pass  # its queue is full: that reader is awake already
            except (ConnectionRefusedError, FileNotFoundError):
                self._prune(index)
            except OSError:
                pass

    def _reload_registry(self) -> None:
        m = self._seg.map
        self._registry_version = int(self._seg.i64[_REGISTRY_VERSION // 8])
        readers = []
        for i in range(REGISTRY_ENTRIES):
            off = _REGISTRY + i * _ENTRY
            pid = struct.unpack_from("<q", m, off)[0]
            if pid:
                raw = bytes(m[off + 8: off + _ENTRY]).rstrip(b"\0")
                readers.append((i, b"\0" + raw))
        self._readers = readers

    def _prune(self, index: int) -> None:
        off = _REGISTRY + index * _ENTRY
        self._seg.map[off: off + _ENTRY] = bytes(_ENTRY)
        self._seg.i64[_REGISTRY_VERSION // 8] += 1

    def close(self) -> None:
        """Mark the ring closed and remove the segment (idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._doorbell.close()
        self._arrays = []
        self._finalizer()

    @staticmethod
    def _cleanup(seg: _Segment, path: str, owner: int) -> None:
        if os.getpid() != owner:
            return  # a forked child must not remove its parent's ring
        with contextlib.suppress(Exception):
            seg.i64[_CLOSED // 8] = 1
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == seg.inode:
                os.unlink(path)
        seg.close()

    def __enter__(self) -> FrameRingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameRingReader:
    """Attaches to a ring and reads frames as read-only views; follows writer restarts."""

    def __init__(self, name: str, spec: FrameSpec | None = None, *, wake: bool = True) -> None:
        _check_name(name)
        self.name = name
        self.expected = spec
        self.wake = wake
        self.reattached = 0
        self._seg: _Segment | None = None
        self._sock: socket.socket | None = None
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
                        f"ring '{name}': not found in {SHM_DIR} after waiting {timeout:g} s "
                        "(camera_node creates it; is it running with the same ring_name?)"
                    ) from None
                time.sleep(0.05)

    # -- attaching ---------------------------------------------------------------
    def _attach(self) -> None:
        path = os.path.join(SHM_DIR, self.name)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise RingNotFound(f"ring '{self.name}': {path} does not exist "
                               "(camera_node creates it)") from None
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE:
                raise RingNotFound(f"ring '{self.name}': {path} is still being created")
            seg = _Segment(self.name, fd, size)
        except Exception:
            os.close(fd)
            raise
        try:
            spec, slots, stride = seg.read_spec()
            if self.expected is not None and (spec.width, spec.height, spec.channels) != (
                    self.expected.width, self.expected.height, self.expected.channels):
                raise RingShapeMismatch(
                    f"ring '{self.name}' holds {spec.describe()} frames, this reader expects "
                    f"{self.expected.describe()}")
            if size < HEADER_SIZE + slots * stride:
                raise RingNotFound(f"ring '{self.name}': {path} is still being created")
        except Exception:
            seg.close()
            raise
        self._seg, self.spec, self.slots, self._stride = seg, spec, slots, stride
        base = np.frombuffer(seg.map, dtype=np.uint8)
        self._arrays = []
        for i in range(slots):
            start = HEADER_SIZE + i * stride + SLOT_HEADER_SIZE
            view = base[start: start + spec.nbytes].reshape(spec.shape)
            view.flags.writeable = False
            self._arrays.append(view)
        if self.wake:
            self._register_doorbell()

    def _register_doorbell(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        address = f"vr_ring/{self.name[:24]}/{os.getpid()}/{id(self):x}".encode()[:55]
        sock.bind(b"\0" + address)
        sock.setblocking(False)
        seg = self._seg
        fcntl.flock(seg.fd, fcntl.LOCK_EX)
        try:
            for i in range(REGISTRY_ENTRIES):
                off = _REGISTRY + i * _ENTRY
                pid = struct.unpack_from("<q", seg.map, off)[0]
                if pid == 0 or not _pid_alive(pid):
                    seg.map[off: off + _ENTRY] = bytes(_ENTRY)
                    seg.map[off + 8: off + 8 + len(address)] = address
                    struct.pack_into("<q", seg.map, off, os.getpid())
                    seg.i64[_REGISTRY_VERSION // 8] += 1
                    self._entry = i
                    break
            else:
                sock.close()
                raise FrameRingError(f"ring '{self.name}': all {REGISTRY_ENTRIES} reader "
                                     "places are taken (too many readers)")
        finally:
            fcntl.flock(seg.fd, fcntl.LOCK_UN)
        self._sock = sock

    def _detach(self) -> None:
        if self._sock is not None:
            self._unregister()
            self._sock.close()
            self._sock = None
        self._arrays = []
        if self._seg is not None:
            self._seg.close()
            self._seg = None

    def _unregister(self) -> None:
        seg = self._seg
        with contextlib.suppress(Exception):
            off = _REGISTRY + self._entry * _ENTRY
            if struct.unpack_from("<q", seg.map, off)[0] == os.getpid():
                seg.map[off: off + _ENTRY] = bytes(_ENTRY)
                seg.i64[_REGISTRY_VERSION // 8] += 1

    def _writer_replaced(self) -> bool:
        """True if the segment we map is closed or no longer the one at the path."""
        try:
            inode = os.stat(os.path.join(SHM_DIR, self.name)).st_ino
        except FileNotFoundError:
            return False  # nothing new yet; keep waiting on what we have
        return inode != self._seg.inode

    def _reattach(self) -> bool:
        """Map the segment now at the path; False (and nothing mapped) if there is none yet."""
        old = self._seg.inode if self._seg is not None else None
        self._detach()
        try:
            self._attach()
        except RingNotFound:
            return False
        if self._seg.inode != old:
            self.reattached += 1
        return True

    # -- reading -----------------------------------------------------------------
    def latest_seq(self) -> int:
        """Sequence number of the newest committed frame, -1 if none yet."""
        if self._seg is None:
            return -1
        return int(self._seg.i64[_LATEST // 8])

    def wait_newer(self, after_seq: int, timeout: float) -> int | None:
        """Newest committed seq greater than ``after_seq``, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            if self._seg is None and not self._reattach():
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                if time.monotonic() >= deadline:
                    return None
                continue
            self._drain()
            latest = self.latest_seq()
            if latest > after_seq:
                return latest
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if self._writer_replaced() and self._reattach():
                    latest = self.latest_seq()
                    return latest if latest >= 0 else None
                return None
            if self._sock is not None:
                select.select([self._sock], [], [], min(remaining, 0.5))
            else:
                time.sleep(min(remaining, 0.001))
            if self._writer_replaced():
                self._reattach()
                after_seq = -1  # a new writer counts from 0 again

    def _drain(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                sock.recv(64)
            except (BlockingIOError, OSError):
                return

    def read(self, seq: int) -> FrameView | None:
        """A view of frame ``seq``, or None if its slot no longer holds it."""
        if seq < 0 or self._seg is None:
            return None
        slot = seq % self.slots
        off = HEADER_SIZE + slot * self._stride
        version, got_seq, capture_ns, publish_ns = _SLOT.unpack_from(self._seg.map, off)
        if version != 2 * seq + 2 or got_seq != seq:
            return None
        view = FrameView(self._arrays[slot], seq, slot, capture_ns, publish_ns)
        # Metadata read after the version: re-check that nothing started overwriting.
        return view if self.is_intact(view) else None

    def read_latest(self) -> FrameView | None:
        """A view of the newest frame, or None."""
        return self.read(self.latest_seq())

    def is_intact(self, view: FrameView) -> bool:
        """True if the writer has not touched ``view``'s slot since it was read."""
        if self._seg is None:
            return False
        off = HEADER_SIZE + view.slot * self._stride
        return struct.unpack_from("<Q", self._seg.map, off)[0] == 2 * view.seq + 2

    @property
    def pixel_format(self) -> str:
        """The ring's pixel format (sensor_msgs encoding)."""
        return self.spec.pixel_format

    def close(self) -> None:
        """Unregister and unmap (idempotent)."""
        self._detach()

    def __enter__(self) -> FrameRingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
