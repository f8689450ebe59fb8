"""`tune`: check and tune a machine for low-latency streaming (the seed's setup script).

    ros2 run vr_stream_ros tune check            # read only, any user
    sudo ros2 run vr_stream_ros tune apply --dry-run
    sudo ros2 run vr_stream_ros tune apply [--live] [--user pi]
    sudo ros2 run vr_stream_ros tune revert

``apply`` writes only drop-in files (sysctl.d, limits.d) and, on a Raspberry Pi 5, the
kernel command line; it first backs up every file it touches, and ``revert`` puts
each back byte for byte (files it created are removed). Both are idempotent. ``--root``
points every path at another tree (tests, or an SD card mounted elsewhere).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

SYSCTL_FILE = "etc/sysctl.d/90-vr-stream-ros.conf"
LIMITS_FILE = "etc/security/limits.d/90-vr-stream-ros.conf"
CMDLINE_FILE = "boot/firmware/cmdline.txt"
BACKUP_DIR = "var/lib/vr_stream_ros/tune-backup"
ISOLATION = ("isolcpus=2,3", "nohz_full=2,3", "rcu_nocbs=2,3")
SYSCTL_CONTENT = """\
# vr_stream_ros: low-latency streaming (written by `tune apply`, removed by `tune revert`)
# Room for bursts of a frame's datagrams without drops at the receiver and sender.
net.core.rmem_max = 8388608
net.core.wmem_max = 8388608
# fq paces TCP flows and lets BBR work; BBR keeps queues (and so latency) short.
net.core.default_qdisc = fq
net.ipv4.tcp_congestion_control = bbr
# Keep the streaming processes' pages in RAM (the seed turned swap off altogether).
vm.swappiness = 0
"""


@dataclass
class Check:
    """One line of `tune check`."""

    status: str  # OK, WARN or INFO
    item: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status:4} {self.item}: {self.detail}" + (f" -> {self.fix}" if self.fix
                                                                 else "")


class Machine:
    """Reads files under a root directory ('/' for this machine)."""

    def __init__(self, root: str = "/") -> None:
        self.root = Path(root)
        self.live = os.path.realpath(root) == "/"

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def read(self, rel: str) -> str | None:
        try:
            return self.path(rel).read_text().strip()
        except OSError:
            return None

    def glob(self, pattern: str) -> list[str]:
        base = str(self.root).rstrip("/")
        return sorted(p[len(base):] for p in glob.glob(base + "/" + pattern.lstrip("/")))

    @property
    def is_pi5(self) -> bool:
        model = (self.read("proc/device-tree/model") or "").rstrip("\x00")
        return "Raspberry Pi 5" in model


# -- checks ------------------------------------------------------------------------------------
def check_isolation(m: Machine) -> Check:
    isolated = m.read("sys/devices/system/cpu/isolated")
    cmdline = (m.read("proc/cmdline") or "").split()
    have = [p for p in ISOLATION if p.split("=")[0] in {c.split("=")[0] for c in cmdline}]
    if isolated is None:
        return Check("INFO", "isolated CPUs", "not available on this machine")
    if isolated:
        return Check("OK", "isolated CPUs", f"{isolated} ({', '.join(have) or 'isolcpus'})")
    fix = ("`tune apply` adds " + " ".join(ISOLATION) + f" to /{CMDLINE_FILE}, then reboot"
           if m.is_pi5 else "add isolcpus=/nohz_full=/rcu_nocbs= to the kernel command line")
    return Check("WARN", "isolated CPUs", "none: the scheduler may run anything on every CPU", fix)


def check_preemption(m: Machine) -> Check:
    if m.read("sys/kernel/realtime") == "1":
        return Check("OK", "kernel preemption", "PREEMPT_RT")
    version = m.read("proc/version") or ""
    if "PREEMPT_RT" in version:
        return Check("OK", "kernel preemption", "PREEMPT_RT")
    model = "PREEMPT (low-latency desktop)" if "PREEMPT" in version else "none/voluntary"
    return Check("WARN", "kernel preemption", model,
                 "a PREEMPT_RT kernel cuts worst-case wake-up latency (Raspberry Pi OS / Ubuntu "
                 "ship realtime kernels)")


def check_limits(m: Machine) -> list[Check]:
    is_root = os.geteuid() == 0
    out = []
    rtprio = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
    memlock = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    fix = f"`tune apply` writes /{LIMITS_FILE} (log in again)"
    if rtprio >= 90 or rtprio == resource.RLIM_INFINITY:
        out.append(Check("OK", "rtprio limit", str(rtprio)))
    else:
        out.append(Check("INFO" if is_root else "WARN", "rtprio limit",
                         f"{rtprio}" + (" (root bypasses it)" if is_root else ""), fix))
    if memlock == resource.RLIM_INFINITY:
        out.append(Check("OK", "memlock limit", "unlimited"))
    else:
        out.append(Check("INFO" if is_root else "WARN", "memlock limit",
                         f"{memlock // 1024} KiB" + (" (root bypasses it)" if is_root else ""),
                         fix))
    return out


def check_swap(m: Machine) -> Check:
    swaps = m.read("proc/swaps")
    if swaps is None:
        return Check("INFO", "swap", "not available on this machine")
    active = swaps.splitlines()[1:]
    if not active:
        return Check("OK", "swap", "off")
    return Check("WARN", "swap", f"{len(active)} swap area(s) active",
                 "sudo swapoff -a (and disable dphys-swapfile on Raspberry Pi OS); "
                 "`tune apply` sets vm.swappiness=0")


def check_governor(m: Machine) -> Check:
    governors = {m.read(p) for p in m.glob("sys/devices/system/cpu/cpu*/cpufreq/scaling_governor")}
    if not governors:
        return Check("INFO", "CPU governor", "not available on this machine (no cpufreq)")
    if governors == {"performance"}:
        return Check("OK", "CPU governor", "performance")
    return Check("WARN", "CPU governor", ", ".join(sorted(g or "?" for g in governors)),
                 "echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/"
                 "scaling_governor")


def check_pi(m: Machine) -> list[Check]:
    out = []
    temps = [int(t) / 1000 for p in m.glob("sys/class/thermal/thermal_zone*/temp")
             if (t := m.read(p)) and t.lstrip("-").isdigit()]
    if temps:
        hot = max(temps)
        out.append(Check("OK" if hot < 75 else "WARN", "temperature", f"{hot:.1f} C",
                         "" if hot < 75 else "add a cooler: the Pi 5 throttles at 85 C"))
    else:
        out.append(Check("INFO", "temperature", "no thermal zone on this machine"))
    if m.is_pi5 and m.live and shutil.which("vcgencmd"):
        text = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True,
                              timeout=5).stdout.strip()
        value = int(text.partition("=")[2] or "0", 16)
        out.append(Check("OK" if value == 0 else "WARN", "throttling", text,
                         "" if value == 0 else "0x1 under-voltage, 0x4 throttled: use the 27 W "
                         "supply and a cooler"))
    else:
        out.append(Check("INFO", "throttling", "vcgencmd only exists on a Raspberry Pi"))
    return out


def check_network(m: Machine) -> list[Check]:
    out = []
    cc = m.read("proc/sys/net/ipv4/tcp_congestion_control")
    if cc is None:
        out.append(Check("INFO", "tcp congestion control", "not available on this machine"))
    else:
        out.append(Check("OK" if cc == "bbr" else "WARN", "tcp congestion control", cc,
                         "" if cc == "bbr" else "`tune apply` sets bbr (transport:=tcp)"))
    qdisc = m.read("proc/sys/net/core/default_qdisc")
    if qdisc is not None:
        out.append(Check("OK" if qdisc == "fq" else "WARN", "default qdisc", qdisc,
                         "" if qdisc == "fq" else "`tune apply` sets fq"))
    for key in ("rmem_max", "wmem_max"):
        value = m.read(f"proc/sys/net/core/{key}")
        if value is not None:
            ok = int(value) >= 8388608
            out.append(Check("OK" if ok else "WARN", f"net.core.{key}", value,
                             "" if ok else "`tune apply` sets 8 MiB"))
    wireless = [p.split("/")[-2] for p in m.glob("sys/class/net/*/wireless")]
    if not wireless:
        out.append(Check("INFO", "WiFi power save", "no WiFi interface on this machine"))
    for iface in wireless:
        if m.live and shutil.which("iw"):
            text = subprocess.run(["iw", "dev", iface, "get", "power_save"], capture_output=True,
                                  text=True, timeout=5).stdout.strip()
            on = text.endswith("on")
            out.append(Check("WARN" if on else "OK", f"WiFi power save ({iface})", text,
                             f"sudo iw dev {iface} set power_save off" if on else ""))
        else:
            out.append(Check("INFO", f"WiFi power save ({iface})", "install iw to read it"))
    out.append(check_irq_affinity(m))
    return out


def check_irq_affinity(m: Machine) -> Check:
    interrupts = m.read("proc/interrupts") or ""
    names = {p.split("/")[-1] for p in m.glob("sys/class/net/*")} - {"lo"}
    isolated = m.read("sys/devices/system/cpu/isolated") or ""
    irqs = []
    for line in interrupts.splitlines():
        irq, _, rest = line.partition(":")
        if irq.strip().isdigit() and any(n and n in rest for n in names):
            cpus = m.read(f"proc/irq/{irq.strip()}/smp_affinity_list") or "?"
            irqs.append((irq.strip(), cpus))
    if not irqs:
        return Check("INFO", "network IRQ affinity", "no IRQ named after a network interface")
    text = ", ".join(f"IRQ {i} -> CPUs {c}" for i, c in irqs)
    if isolated and any(set(c.split(",")) & set(isolated.split(",")) for _, c in irqs):
        return Check("WARN", "network IRQ affinity", text,
                     "echo 0-1 | sudo tee /proc/irq/<n>/smp_affinity_list (off isolated CPUs)")
    return Check("OK", "network IRQ affinity", text)


def run_checks(m: Machine) -> list[Check]:
    """Every check, in the order `tune check` prints them."""
    return [check_isolation(m), check_preemption(m), *check_limits(m), check_swap(m),
            check_governor(m), *check_pi(m), *check_network(m)]


# -- changes -----------------------------------------------------------------------------------
def planned_changes(m: Machine, user: str) -> tuple[dict[str, str], list[str]]:
    """{relative path: new content} that differ from now, and notes on what does not apply."""
    wanted = {SYSCTL_FILE: SYSCTL_CONTENT,
              LIMITS_FILE: f"# vr_stream_ros (tune apply): real-time scheduling and locked "
                           f"memory for {user}\n{user} - rtprio 99\n{user} - memlock unlimited\n"}
    notes = []
    if m.is_pi5:
        cmdline = m.read(CMDLINE_FILE)
        if cmdline is None:
            notes.append(f"/{CMDLINE_FILE} not found: CPU isolation not set")
        else:
            present = {t.split("=")[0] for t in cmdline.split()}
            missing = [t for t in ISOLATION if t.split("=")[0] not in present]
            wanted[CMDLINE_FILE] = " ".join([cmdline, *missing]) + "\n"
        notes.append("config.txt: nothing to change on a Pi 5 (the seed's gpu_mem=256 does not "
                     "apply: the Pi 5 has no fixed GPU memory split)")
    else:
        notes.append("not a Raspberry Pi 5: kernel command line (isolcpus, nohz_full, "
                     "rcu_nocbs) and config.txt left alone; set CPU isolation in your "
                     "bootloader if you want it")
    changes = {}
    for rel, content in wanted.items():
        try:
            current = m.path(rel).read_text()
        except OSError:
            current = None
        if current != content:
            changes[rel] = content
    return changes, notes


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def apply(m: Machine, user: str, dry_run: bool, live: bool) -> int:
    """Write the planned changes after backing up every file touched."""
    changes, notes = planned_changes(m, user)
    for note in notes:
        print(f"INFO {note}")
    if not changes:
        print("nothing to change: already applied")
        return 0
    backup = m.path(BACKUP_DIR)
    manifest_path = backup / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"files": {}}
    for rel, content in changes.items():
        target = m.path(rel)
        old = target.read_text() if target.exists() else None
        verb = "change" if old is not None else "create"
        print(f"{'would ' if dry_run else ''}{verb} /{rel}")
        for line in content.splitlines():
            if old is None or line not in old.splitlines():
                print(f"    + {line}")
        if dry_run:
            continue
        if rel not in manifest["files"]:  # keep the very first original
            entry = {"existed": target.exists()}
            if target.exists():
                saved = backup / "files" / rel
                saved.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(target, saved)
                entry.update(sha256=_sha256(target), mode=target.stat().st_mode & 0o7777)
            manifest["files"][rel] = entry
            backup.mkdir(parents=True, exist_ok=True)
            manifest_path.write_text(json.dumps(manifest, indent=1))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    if dry_run:
        print("dry run: nothing written")
        return 0
    print(f"backups in /{BACKUP_DIR}; `tune revert` restores them")
    if live and m.live and SYSCTL_FILE in changes:
        subprocess.run(["sysctl", "-p", str(m.path(SYSCTL_FILE))], check=False)
    if CMDLINE_FILE in changes:
        print("reboot for the kernel command line to take effect")
    return 0


def revert(m: Machine) -> int:
    """Restore every file `apply` touched, exactly, and remove the backup."""
    backup = m.path(BACKUP_DIR)
    manifest_path = backup / "manifest.json"
    if not manifest_path.exists():
        print("nothing to revert: tune apply has not changed this machine")
        return 0
    manifest = json.loads(manifest_path.read_text())
    for rel, entry in manifest["files"].items():
        target = m.path(rel)
        if entry["existed"]:
            saved = backup / "files" / rel
            shutil.copy2(saved, target)
            os.chmod(target, entry["mode"])
            if _sha256(target) != entry["sha256"]:
                print(f"ERROR /{rel}: restored content does not match the backup", file=sys.stderr)
                return 1
            print(f"restored /{rel}")
        elif target.exists():
            target.unlink()
            print(f"removed /{rel}")
    shutil.rmtree(backup)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: tune check | apply [--dry-run] [--live] [--user U] | revert."""
    parser = argparse.ArgumentParser(prog="tune", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/", help="operate on this tree instead of /")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="report OK/WARN with the fix for each item")
    check.add_argument("--json", action="store_true")
    ap = sub.add_parser("apply", help="write the tuning (backs up what it touches)")
    ap.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    ap.add_argument("--live", action="store_true", help="also load the sysctls now")
    ap.add_argument("--user", default=os.environ.get("SUDO_USER") or "pi",
                    help="user for rtprio/memlock limits (default: SUDO_USER or pi)")
    sub.add_parser("revert", help="restore every file apply changed")
    ns = parser.parse_args(argv)
    machine = Machine(ns.root)
    if ns.command == "check":
        checks = run_checks(machine)
        if ns.json:
            print(json.dumps([asdict(c) for c in checks]))
        else:
            for c in checks:
                print(c.line())
        return 0
    if machine.live and os.geteuid() != 0 and not getattr(ns, "dry_run", False):
        print(f"tune {ns.command}: needs root (try sudo)", file=sys.stderr)
        return 2
    if ns.command == "apply":
        return apply(machine, ns.user, ns.dry_run, ns.live)
    return revert(machine)


if __name__ == "__main__":
    raise SystemExit(main())
