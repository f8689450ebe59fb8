"""Two hosts on one machine: network namespaces joined by a veth pair (root; no rclpy).

    with TwoHosts() as hosts:                         # removed again on exit, even on error
        camera_host, other = hosts.a, hosts.b
        group.start("detector", other.argv(node_argv(...), env={...}))

Each namespace has its own loopback and one end of the veth pair with a private address
chosen here (10.<x>.<y>.1 and .2/24, set only inside the namespaces: nothing in the
machine's own namespace routes to them, so all traffic between the two stays on the
veth). ``private_shm`` gives a host its own /dev/shm (a mount namespace with a fresh
tmpfs), so the frame ring, like on a real second machine, is simply not there.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class NetnsError(Exception):
    """A namespace or link could not be set up (needs root and iproute2)."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if result.returncode:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _operstate(host: Host) -> str:
    """The kernel's operstate of ``host``'s veth end (``up`` once it has a carrier)."""
    return subprocess.run(["ip", "netns", "exec", host.netns, "cat",
                           f"/sys/class/net/{host.link}/operstate"], capture_output=True,
                          text=True, timeout=10).stdout.strip()


@dataclass(frozen=True)
class Host:
    """One namespace: its name, the veth end in it and that end's address."""

    netns: str
    link: str
    address: str
    private_shm: bool = False

    def argv(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        """``argv`` run inside this host (``ip netns exec``), with ``env`` added."""
        inner = ["env", *(f"{k}={v}" for k, v in (env or {}).items()), *argv]
        if self.private_shm:
            inner = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                     'mount -t tmpfs -o size=256m,mode=1777 vrshm /dev/shm && exec "$@"',
                     "sh", *inner]
        return ["ip", "netns", "exec", self.netns, *inner]


class TwoHosts:
    """Namespaces ``a`` and ``b`` joined by a veth pair; ``close`` removes both."""

    def __init__(self, b_private_shm: bool = True) -> None:
        tag = uuid.uuid4().hex[:6]
        x, y = int(tag[:2], 16) % 250 + 1, int(tag[2:4], 16)
        self.a = Host(f"vra_{tag}", f"va_{tag}", f"10.{x}.{y}.1")
        self.b = Host(f"vrb_{tag}", f"vb_{tag}", f"10.{x}.{y}.2", private_shm=b_private_shm)
        self._made: list[str] = []
        atexit.register(self.close)  # a test killed by pytest's timeout still cleans up
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        if os.geteuid() != 0:
            raise NetnsError("network namespaces need root (CI runs as root)")
        for host in (self.a, self.b):
            _ip("netns", "add", host.netns)
            self._made.append(host.netns)
        _ip("link", "add", self.a.link, "netns", self.a.netns, "type", "veth", "peer", "name",
            self.b.link, "netns", self.b.netns)
        for host in (self.a, self.b):
            n = host.netns
            _ip("-n", n, "addr", "add", f"{host.address}/24", "dev", host.link)
            _ip("-n", n, "link", "set", host.link, "up")
            _ip("-n", n, "link", "set", "lo", "up")
        self._wait_for_carrier()

    def _wait_for_carrier(self, timeout_s: float = 10.0) -> None:
        """Return once both veth ends are up. The carrier can come seconds after `link set
        up` on a loaded host, and a DDS participant started before that leaves the
        interface out for good (it enumerates interfaces once, at start)."""
        deadline = time.monotonic() + timeout_s
        while True:
            down = [h.link for h in (self.a, self.b) if _operstate(h) != "up"]
            if not down:
                return
            if time.monotonic() > deadline:
                raise NetnsError(f"veth {', '.join(down)} not up after {timeout_s:g} s")
            time.sleep(0.05)

    def close(self) -> None:
        """Delete both namespaces (the veth pair goes with them); safe to call twice."""
        while self._made:
            netns = self._made.pop()
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10)

    def exists(self) -> bool:
        """True while either namespace is still there."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                timeout=10).stdout
        return any(h.netns in listed for h in (self.a, self.b))

    def __enter__(self) -> TwoHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
