"""The Fast DDS shared-memory files a killed node leaves in /dev/shm, and their removal.

Each Fast DDS participant (rmw_fastrtps, Jazzy's default) creates a segment
``fastrtps_<16 hex>`` with a lock file ``<segment>_el``, and listens on ports
``fastrtps_port<N>`` with ``_el``/``_sl`` lock files and a named semaphore
``sem.fastrtps_port<N>_mutex``. A live owner holds an flock on the lock file; a clean exit
removes its files, SIGKILL leaves them. Fast DDS's own ``fastdds shm clean`` removes every
zombie on the host, other programs' included; here only the files the dead node itself
held open are considered, and only those whose lock nobody holds any more.

    held = dds_files_held(pid)     # while the node runs
    ...                            # the node was killed
    removed = remove_zombies(held) # its zombie segments and ports, nothing else
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re

SHM_DIR = "/dev/shm"
_LOCK_FILE = re.compile(r"^fastrtps_(port\d{1,5}|[0-9a-z]{16})_(el|sl)$")


def dds_files_held(pid: int) -> set[str]:
    """The Fast DDS lock files (``fastrtps_*_el``/``_sl``) ``pid`` holds open; empty when it
    is gone or not ours to read."""
    held = set()
    prefix = SHM_DIR + "/"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return held
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        name = target[len(prefix):] if target.startswith(prefix) else ""
        if _LOCK_FILE.match(name):
            held.add(name)
    return held


def _locked(path: str) -> bool:
    """True when someone holds the flock on ``path`` (the owner is alive)."""
    try:
        with open(path, "ab") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
        return False
    except OSError:
        return True


def family(lock: str) -> list[str]:
    """Every file of the segment or port whose lock file is ``lock``."""
    base = lock[:-3]
    names = [lock, base, f"{base}_el", f"{base}_sl"]
    if base.startswith("fastrtps_port"):
        names.append(f"sem.{base}_mutex")
    return list(dict.fromkeys(names))


def zombies(lock_files: set[str]) -> list[str]:
    """The files behind each of ``lock_files`` that still has its lock file and whose lock
    nobody holds (its owner died): what ``fastdds shm clean`` would remove of them.

    A port whose lock file is gone (its last listener closed it cleanly) keeps its segment
    and semaphore: Fast DDS leaves those for the next participant by design; they are
    not zombies."""
    found = []
    for lock in sorted(lock_files):
        path = os.path.join(SHM_DIR, lock)
        if os.path.exists(path) and not _locked(path):
            found += [n for n in family(lock) if os.path.exists(os.path.join(SHM_DIR, n))]
    return sorted(set(found))


def remove_zombies(lock_files: set[str]) -> list[str]:
    """Remove :func:`zombies` of ``lock_files``; the names removed. A lock still held (a
    live owner) is left alone."""
    removed = []
    for name in zombies(lock_files):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM_DIR, name))
            removed.append(name)
    return removed
