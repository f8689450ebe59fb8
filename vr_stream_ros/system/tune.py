"""`tune`: check and tune a machine for low-latency streaming (the seed's setup script).

    ros2 run vr_stream_ros tune check [--json]      # read only, any user
    ros2 run vr_stream_ros tune apply --dry-run     # every change it would make
    sudo ros2 run vr_stream_ros tune apply [--user U] [--live]
    sudo ros2 run vr_stream_ros tune revert [--force]

``apply`` writes drop-in files (sysctl.d, limits.d, NetworkManager's conf.d when present)
and, on a Raspberry Pi 5 only, the kernel command line. It first copies every file it
touches into a backup with a manifest (existed?, sha256, mode, owner), and ``revert`` puts
each back byte for byte and removes what it created. Both are idempotent. ``--root``
points every path at another tree (tests, or a Pi's SD card mounted elsewhere); only
``--live`` with the real root ('/') changes the running kernel.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import glob
import gzip
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vr_stream_ros.graph.param_spec import parse_cpu_list
from vr_stream_ros.system.realtime import format_cpu_ranges
from vr_stream_ros.system.thermal import read_temperature, read_throttled, throttle_flags

SYSCTL_FILE = "etc/sysctl.d/90-vr-stream-ros.conf"
LIMITS_FILE = "etc/security/limits.d/90-vr-stream-ros.conf"
NM_FILE = "etc/NetworkManager/conf.d/90-vr-stream-ros.conf"
CMDLINE_FILE = "boot/firmware/cmdline.txt"
CONFIG_TXT_FILE = "boot/firmware/config.txt"
BACKUP_DIR = "var/lib/vr_stream_ros/tune-backup"
ISOLATED_CPUS = "2,3"  # a Pi 5's CPUs 0-1 keep the OS; 2-3 run the camera and detector
ISOLATION = (f"isolcpus={ISOLATED_CPUS}", f"nohz_full={ISOLATED_CPUS}",
             f"rcu_nocbs={ISOLATED_CPUS}")
SOCKET_BUFFER_MAX = 8 << 20
SYSCTLS = {
    "net.core.rmem_max": str(SOCKET_BUFFER_MAX),
    "net.core.wmem_max": str(SOCKET_BUFFER_MAX),
    "net.core.default_qdisc": "fq",
    "net.ipv4.tcp_congestion_control": "bbr",
    "vm.swappiness": "0",
}
SYSCTL_WHY = {
    "net.core.rmem_max": "Upper bounds only: each socket still asks for its own size. 8 MiB lets "
                         "the\n# receiver (and DDS image topics across hosts) hold a burst of "
                         "several key frames\n# (a 720p frame is ~50 datagrams) instead of "
                         "dropping datagrams; the default ~208 KiB\n# also caps the bridge's "
                         "256 KiB SO_SNDBUF.",
    "net.core.default_qdisc": "fq: per-flow queues with pacing, so the video flow never waits "
                              "behind a bulk\n# transfer (a bag upload) in one FIFO; BBR "
                              "paces best on it.",
    "net.ipv4.tcp_congestion_control": "BBR keeps the bottleneck queue short (loss-based cubic "
                                       "fills it first): lower\n# delay for transport:=tcp and "
                                       "for TCP sharing the link (SSH, WebRTC signalling).",
    "vm.swappiness": "0: the kernel swaps anonymous memory only under real pressure, so no "
                     "process on the\n# video path waits for a page from swap (the seed "
                     "turned swap off altogether).",
}
MODELS_PI5 = ("Raspberry Pi 5", "Raspberry Pi Compute Module 5")
_TEMP_WARN_C = 75.0


class TuneError(Exception):
    """A refusal with a message for the user (exit code 2)."""


# -- the machine -------------------------------------------------------------------------------
class Machine:
    """Reads files under a root directory ('/' for this machine); never writes."""

    def __init__(self, root: str = "/") -> None:
        if not os.path.isdir(root):
            raise TuneError(f"--root {root!r}: not a directory")
        self.root = Path(os.path.abspath(root))
        self.live = os.path.realpath(root) == "/"

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def read(self, rel: str) -> str | None:
        """Stripped text of a file, or None when it is missing or unreadable."""
        try:
            return self.path(rel).read_text(errors="replace").strip().rstrip("\x00")
        except OSError:
            return None

    def glob(self, pattern: str) -> list[str]:
        """Relative paths (with a leading '/') of files matching ``pattern`` under the root."""
        base = str(self.root).rstrip("/")
        return sorted(p[len(base):] for p in glob.glob(base + "/" + pattern.lstrip("/")))

    def which(self, tool: str) -> str | None:
        """A command to run, only for the live machine (a tree's tools describe nothing)."""
        return shutil.which(tool) if self.live else None

    @property
    def model(self) -> str:
        return self.read("proc/device-tree/model") or ""

    @property
    def is_pi5(self) -> bool:
        compatible = self.read("proc/device-tree/compatible") or ""
        return self.model.startswith(MODELS_PI5) or "brcm,bcm2712" in compatible

    def kernel_version(self) -> str:
        """What `uname -v` prints (e.g. '#1 SMP PREEMPT_RT ...')."""
        version = self.read("proc/sys/kernel/version")
        if version is None and self.live:
            version = os.uname().version
        return version or ""

    def cmdline(self) -> dict[str, str]:
        """The running kernel's command line (/proc/cmdline) as {key: value}."""
        return dict(tok.partition("=")[::2] for tok in (self.read("proc/cmdline") or "").split())

    def kernel_config(self) -> dict[str, str]:
        """CONFIG_* of the running kernel (/proc/config.gz or /boot/config-<release>)."""
        text = ""
        try:
            text = gzip.decompress(self.path("proc/config.gz").read_bytes()).decode()
        except (OSError, EOFError, gzip.BadGzipFile):
            text = self.read(f"boot/config-{self.read('proc/sys/kernel/osrelease')}") or ""
        config = {}
        for line in text.splitlines():
            if line.startswith("CONFIG_"):
                key, _, value = line.partition("=")
                config[key] = value
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                config[line[2:-11]] = "n"
        return config


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


def _na(item: str, what: str = "") -> Check:
    return Check("INFO", item, f"not available on this machine{f' ({what})' if what else ''}")


# -- checks: one function per item -------------------------------------------------------------
def check_platform(m: Machine) -> Check:
    if m.is_pi5:
        return Check("INFO", "machine", f"{m.model}: the boot files can be tuned")
    model = m.model or f"{os.uname().machine if m.live else 'unknown'}, no device-tree model"
    return Check("INFO", "machine", f"{model}: not a Raspberry Pi 5, boot files are left alone")


def check_isolation(m: Machine) -> Check:
    item = "isolated CPUs"
    isolated = m.read("sys/devices/system/cpu/isolated")
    if isolated is None:
        return _na(item, "/sys/devices/system/cpu/isolated")
    cmdline = m.cmdline()
    parts = [f"{k}={cmdline[k]}" for k in ("isolcpus", "nohz_full", "rcu_nocbs") if k in cmdline]
    config = m.kernel_config()
    if "nohz_full" in cmdline and config.get("CONFIG_NO_HZ_FULL") == "n":
        parts.append("nohz_full ignored: kernel built without CONFIG_NO_HZ_FULL")
    if "rcu_nocbs" in cmdline and config.get("CONFIG_RCU_NOCB_CPU") == "n":
        parts.append("rcu_nocbs ignored: kernel built without CONFIG_RCU_NOCB_CPU")
    detail = "; ".join(parts)
    if isolated:
        return Check("OK", item, f"{isolated}" + (f" ({detail})" if detail else ""))
    if m.is_pi5:
        fix = f"`sudo tune apply` adds {' '.join(ISOLATION)} to /{CMDLINE_FILE}, then reboot"
    else:
        fix = ("add isolcpus=<cpus> nohz_full=<cpus> rcu_nocbs=<cpus> to the kernel command "
               "line (e.g. GRUB_CMDLINE_LINUX), keeping CPU 0 for the OS; then pin nodes there")
    return Check("WARN", item, "none: every CPU also runs other tasks"
                 + (f" ({detail})" if detail else ""), fix)


def check_preemption(m: Machine) -> Check:
    item = "kernel preemption"
    version = m.kernel_version()
    if m.read("sys/kernel/realtime") == "1" or "PREEMPT_RT" in version:
        return Check("OK", item, f"PREEMPT_RT ({version})")
    if not version:
        return _na(item, "no kernel version")
    mode, source = _preempt_mode(m, version)
    detail = f"{mode or 'unknown'} ({source}; uname -v: {version})"
    if mode == "full":
        return Check("OK", item, detail + "; PREEMPT_RT would cut the worst case further")
    fix = ("boot with preempt=full (this PREEMPT_DYNAMIC kernel supports it) or use a "
           "PREEMPT_RT kernel" if "PREEMPT_DYNAMIC" in version else "use a PREEMPT or "
           "PREEMPT_RT kernel (Raspberry Pi OS and Ubuntu ship both)")
    return Check("WARN", item, detail, fix)


def _preempt_mode(m: Machine, version: str) -> tuple[str, str]:
    """('full' | 'voluntary' | 'none' | 'lazy' | '', where that was read)."""
    if "PREEMPT_DYNAMIC" not in version:
        if re.search(r"\bPREEMPT\b", version):
            return "full", "PREEMPT kernel"
        return "", "no PREEMPT in uname -v"
    debug = m.read("sys/kernel/debug/sched/preempt")  # e.g. "none voluntary (full) lazy"
    if debug and (found := re.search(r"\((\w+)\)", debug)):
        return found.group(1), "PREEMPT_DYNAMIC, /sys/kernel/debug/sched/preempt"
    if "preempt" in m.cmdline():
        return m.cmdline()["preempt"], "PREEMPT_DYNAMIC, preempt= on the command line"
    config = m.kernel_config()
    for name in ("NONE", "VOLUNTARY", "LAZY"):
        if config.get(f"CONFIG_PREEMPT_{name}") == "y":
            return name.lower(), f"PREEMPT_DYNAMIC booted with its default CONFIG_PREEMPT_{name}"
    if config.get("CONFIG_PREEMPT") == "y":
        return "full", "PREEMPT_DYNAMIC booted with its default CONFIG_PREEMPT"
    return "", "PREEMPT_DYNAMIC, mode not readable (mount debugfs)"


def _configured_limit(m: Machine, user: str, item: str) -> tuple[str, str] | None:
    """(value, file) of the last limits.conf/limits.d line for ``user`` or '*'."""
    found = None
    for rel in ["etc/security/limits.conf", *m.glob("etc/security/limits.d/*.conf")]:
        for line in (m.read(rel) or "").splitlines():
            fields = line.split("#")[0].split()
            if len(fields) == 4 and fields[0] in (user, "*") and fields[2] == item:
                found = (fields[3], "/" + rel.lstrip("/"))
    return found


def _show_limit(value: int, unit: str = "") -> str:
    if value == resource.RLIM_INFINITY:
        return "unlimited"
    return f"{value >> 10} KiB" if unit == "KiB" else str(value)


def _limit_check(m: Machine, item: str, limit: int, ok: bool, user: str, entry: str,
                 unit: str = "") -> Check:
    show = _show_limit(limit, unit)
    if ok:
        return Check("OK", item, show)
    configured = _configured_limit(m, user, item.split()[0])
    detail = show + (f" for this process; {user}: {configured[0]} in {configured[1]} "
                            "(applies at next login)" if configured else "")
    fix = f"`sudo tune apply --user {user}` writes '{user} - {entry}' to /{LIMITS_FILE}; log " \
          "in again"
    if os.geteuid() == 0:
        return Check("INFO", item, detail + " (root bypasses it)", fix)
    return Check("WARN", item, detail, fix)


def check_limits(m: Machine) -> list[Check]:
    user = _default_user()
    rtprio = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
    memlock = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    infinity = resource.RLIM_INFINITY
    return [
        _limit_check(m, "rtprio limit", rtprio, rtprio == infinity or rtprio >= 99, user,
                     "rtprio 99"),
        _limit_check(m, "memlock limit", memlock, memlock == infinity, user,
                     "memlock unlimited", "KiB"),
    ]


def check_swap(m: Machine) -> Check:
    swaps = m.read("proc/swaps")
    if swaps is None:
        return _na("swap", "/proc/swaps")
    active = swaps.splitlines()[1:]
    swappiness = m.read("proc/sys/vm/swappiness")
    tail = f", vm.swappiness={swappiness}" if swappiness is not None else ""
    if not active:
        return Check("OK", "swap", "off" + tail)
    if swappiness == "0":
        return Check("OK", "swap", f"{len(active)} area(s), used only under pressure" + tail)
    return Check("WARN", "swap", f"{len(active)} area(s) active" + tail,
                 "`sudo tune apply` sets vm.swappiness=0; or sudo swapoff -a (Raspberry Pi OS: "
                 "sudo systemctl disable --now dphys-swapfile)")


def check_governor(m: Machine) -> Check:
    files = m.glob("sys/devices/system/cpu/cpu*/cpufreq/scaling_governor")
    if not files:
        return _na("CPU governor", "no cpufreq")
    governors = sorted({m.read(p) or "?" for p in files})
    if governors == ["performance"]:
        return Check("OK", "CPU governor", "performance")
    return Check("WARN", "CPU governor", ", ".join(governors),
                 "echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/"
                 "scaling_governor (at boot: cpufreq.default_governor=performance on the "
                 "kernel command line); clock ramps add jitter")


def check_temperature(m: Machine) -> Check:
    hottest, where = read_temperature(str(m.root))
    if hottest is None:
        return _na("temperature", "no thermal zone")
    if hottest < _TEMP_WARN_C:
        return Check("OK", "temperature", f"{hottest:.1f} C ({where})")
    return Check("WARN", "temperature", f"{hottest:.1f} C ({where})",
                 "add a cooler (Active Cooler on a Pi 5): the clock is cut at 80-85 C")


def check_throttling(m: Machine) -> Check:
    value, source = read_throttled(str(m.root))
    if value is None:
        if m.is_pi5:
            return Check("INFO", "throttling", f"cannot read: {source}",
                         "install Raspberry Pi OS's vcgencmd" if m.live else "")
        return _na("throttling", "vcgencmd get_throttled exists on a Raspberry Pi only")
    text = f"throttled=0x{value:x} ({source})"
    if value == 0:
        return Check("OK", "throttling", text)
    return Check("WARN", "throttling", f"{text}: {', '.join(throttle_flags(value))}",
                 "use the official 27 W (5 V 5 A) supply and a cooler")


def check_tcp(m: Machine) -> list[Check]:
    out = []
    cc = m.read("proc/sys/net/ipv4/tcp_congestion_control")
    if cc is None:
        out.append(_na("tcp congestion control"))
    else:
        out.append(Check("OK" if cc == "bbr" else "WARN", "tcp congestion control", cc,
                         "" if cc == "bbr" else "`sudo tune apply` sets bbr"))
    qdisc = m.read("proc/sys/net/core/default_qdisc")
    if qdisc is None:
        out.append(_na("default qdisc"))
    else:
        out.append(Check("OK" if qdisc == "fq" else "WARN", "default qdisc", qdisc,
                         "" if qdisc == "fq" else "`sudo tune apply` sets fq"))
    for key in ("rmem_max", "wmem_max"):
        value = m.read(f"proc/sys/net/core/{key}")
        if value is None or not value.isdigit():
            out.append(_na(f"net.core.{key}"))
            continue
        ok = int(value) >= SOCKET_BUFFER_MAX
        out.append(Check("OK" if ok else "WARN", f"net.core.{key}", value,
                         "" if ok else f"`sudo tune apply` sets {SOCKET_BUFFER_MAX}"))
    return out


def _interfaces(m: Machine) -> list[str]:
    """Network interfaces backed by a device (not lo, veth, bridges, ifb ...)."""
    return [p.rsplit("/", 2)[-2] for p in m.glob("sys/class/net/*/device")]


def check_wifi_power_save(m: Machine) -> list[Check]:
    wireless = [p.rsplit("/", 2)[-2] for p in m.glob("sys/class/net/*/wireless")]
    if not wireless:
        return [_na("WiFi power save", "no WiFi interface")]
    out = []
    iw = m.which("iw")
    for iface in wireless:
        item = f"WiFi power save ({iface})"
        if not iw:
            out.append(Check("INFO", item, "cannot read it without iw" if m.live else
                             "read on the machine itself", "sudo apt install iw" if m.live
                             else ""))
            continue
        text = ""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            text = subprocess.run([iw, "dev", iface, "get", "power_save"], capture_output=True,
                                  text=True, timeout=5).stdout.strip()
        if text.endswith("off"):
            out.append(Check("OK", item, "off"))
        elif text.endswith("on"):
            out.append(Check("WARN", item, "on: the radio sleeps between beacons (latency "
                                           "spikes of tens of ms)",
                             f"sudo iw dev {iface} set power_save off; `sudo tune apply` makes "
                             "it permanent with NetworkManager"))
        else:
            out.append(Check("INFO", item, f"iw could not tell: {text or 'no output'}"))
    return out


def _irq_names(m: Machine, iface: str) -> set[str]:
    """Names an interface's IRQs may carry in /proc/interrupts (itself, its device, bus)."""
    parts = os.path.realpath(m.path(f"sys/class/net/{iface}/device")).split("/")
    names = {iface, parts[-1]}
    names.update(p for p in parts if re.fullmatch(r"mmc\d+", p))  # SDIO WiFi (Pi 5: mmc1)
    return names


def check_irq_affinity(m: Machine) -> list[Check]:
    interrupts = m.read("proc/interrupts")
    if interrupts is None:
        return [_na("network IRQ affinity", "/proc/interrupts")]
    isolated = set(parse_cpu_list(m.read("sys/devices/system/cpu/isolated") or ""))
    out = []
    for iface in _interfaces(m):
        names = _irq_names(m, iface)
        irqs = []
        for line in interrupts.splitlines():
            irq, _, rest = line.partition(":")
            tokens = re.split(r"[\s,]+", rest)
            if irq.strip().isdigit() and any(
                    t == n or t.startswith((n + "-", n + "@")) or t.endswith("-" + n)
                    for t in tokens for n in names):
                cpus = m.read(f"proc/irq/{irq.strip()}/smp_affinity_list") or "?"
                irqs.append((irq.strip(), cpus))
        item = f"network IRQ affinity ({iface})"
        if not irqs:
            out.append(Check("INFO", item, "no IRQ of this interface found in /proc/interrupts"))
            continue
        text = ", ".join(f"IRQ {i} -> CPUs {c}" for i, c in irqs)
        on_isolated = [i for i, c in irqs if c != "?" and set(parse_cpu_list(c)) & isolated]
        if on_isolated:
            keep = format_cpu_ranges(set(parse_cpu_list(
                m.read("sys/devices/system/cpu/online") or "0")) - isolated) or "0"
            out.append(Check("WARN", item, text + " (reaches isolated CPUs)",
                             f"echo {keep} | sudo tee " + " ".join(
                                 f"/proc/irq/{i}/smp_affinity_list" for i in on_isolated)
                             + " (and stop irqbalance from moving them back)"))
        else:
            out.append(Check("OK", item, text))
    return out or [Check("INFO", "network IRQ affinity", "no network interface with a device")]


CHECKS: list[Callable[[Machine], Check | list[Check]]] = [
    check_platform, check_isolation, check_preemption, check_limits, check_swap,
    check_governor, check_temperature, check_throttling, check_tcp, check_wifi_power_save,
    check_irq_affinity,
]


def run_checks(m: Machine) -> list[Check]:
    """Every check, in the order `tune check` prints them; a failing check is reported."""
    out: list[Check] = []
    for check in CHECKS:
        try:
            result = check(m)
        except Exception as exc:  # a check must never take the others down
            result = Check("INFO", check.__name__.removeprefix("check_"),
                           f"could not be read: {type(exc).__name__}: {exc}")
        out.extend(result if isinstance(result, list) else [result])
    return out


# -- changes -----------------------------------------------------------------------------------
@dataclass
class FileChange:
    """One file ``apply`` wants to hold ``new`` (relative path under the root)."""

    rel: str
    new: bytes


@dataclass
class Plan:
    """What ``apply`` would write, and notes on what does not apply and why."""

    changes: list[FileChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, other: Plan) -> None:
        self.changes += other.changes
        self.notes += other.notes


def sysctl_content(m: Machine) -> tuple[str, list[str]]:
    """The sysctl drop-in, each value with its reason; bbr left out where it cannot load."""
    notes, lines = [], ["# vr_stream_ros: low-latency streaming. Written by `tune apply`, "
                        "removed by `tune revert`.", ""]
    for key, value in SYSCTLS.items():
        if key == "net.ipv4.tcp_congestion_control" and not _bbr_available(m):
            notes.append("net.ipv4.tcp_congestion_control=bbr left out: this kernel has no "
                         "tcp_bbr (not built in, no module)")
            continue
        if key in SYSCTL_WHY:
            lines.append(f"# {SYSCTL_WHY[key]}")
        lines.append(f"{key} = {value}")
        if key != "net.core.rmem_max":
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n", notes


def _bbr_available(m: Machine) -> bool:
    available = m.read("proc/sys/net/ipv4/tcp_available_congestion_control")
    if available is None or "bbr" in available.split():
        return True  # unknown (a mounted SD card) or loaded
    if m.kernel_config().get("CONFIG_TCP_CONG_BBR") in ("y", "m"):
        return True
    release = m.read("proc/sys/kernel/osrelease") or ""
    return bool(m.glob(f"lib/modules/{release}/kernel/net/ipv4/tcp_bbr.ko*"))


def plan_sysctl(m: Machine, user: str) -> Plan:
    content, notes = sysctl_content(m)
    return Plan([FileChange(SYSCTL_FILE, content.encode())], notes)


def plan_limits(m: Machine, user: str) -> Plan:
    content = (f"# vr_stream_ros (`tune apply`): real-time scheduling and locked memory for "
               f"{user}.\n# Takes effect at the next login; removed by `tune revert`.\n"
               f"{user} - rtprio 99\n{user} - memlock unlimited\n")
    notes = []
    passwd = m.read("etc/passwd")
    if passwd is not None and not user.startswith("@") and not any(
            line.split(":")[0] == user for line in passwd.splitlines()):
        notes.append(f"WARN user {user!r} is not in /etc/passwd: the limits will match nobody "
                     "(pass --user)")
    return Plan([FileChange(LIMITS_FILE, content.encode())], notes)


def plan_network_manager(m: Machine, user: str) -> Plan:
    if not m.path("etc/NetworkManager").is_dir():
        return Plan(notes=["WiFi power save: no NetworkManager here; turn it off at boot with "
                           "`iw dev <wlan> set power_save off`"])
    content = ("# vr_stream_ros (`tune apply`): WiFi power save off (2 = disable). A sleeping "
               "radio\n# holds frames until the next beacon: tens of ms of jitter.\n"
               "[connection]\nwifi.powersave = 2\n")
    return Plan([FileChange(NM_FILE, content.encode())],
                ["WiFi power save: takes effect when NetworkManager reconnects"])


def plan_cmdline(m: Machine, user: str) -> Plan:
    if not m.is_pi5:
        return Plan(notes=[f"not a Raspberry Pi 5 ({m.model or 'no device-tree model'}): "
                           f"/{CMDLINE_FILE} and /{CONFIG_TXT_FILE} left alone; for CPU "
                           "isolation add isolcpus=/nohz_full=/rcu_nocbs= to your "
                           "bootloader's kernel command line"])
    path = m.path(CMDLINE_FILE)
    if path.is_symlink():
        return Plan(notes=[f"/{CMDLINE_FILE} is a symlink: edit its target by hand"])
    try:
        old = path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError:
        return Plan(notes=[f"/{CMDLINE_FILE} not found: CPU isolation not set"])
    first, newline, rest = old.partition("\n")  # the firmware reads the first line only
    present = {tok.partition("=")[0]: tok for tok in first.split()}
    notes, missing = [], []
    for want in ISOLATION:
        key = want.partition("=")[0]
        if key not in present:
            missing.append(want)
        elif present[key] != want:
            notes.append(f"kept {present[key]} in /{CMDLINE_FILE} (not replaced by {want})")
    config = m.kernel_config()
    for key, option in (("nohz_full", "CONFIG_NO_HZ_FULL"), ("rcu_nocbs", "CONFIG_RCU_NOCB_CPU")):
        if config.get(option) == "n":
            notes.append(f"{key}= has no effect on this kernel ({option} is not set); "
                         "isolcpus= still isolates")
    if not missing:
        return Plan(notes=notes)
    notes.append("reboot for the kernel command line to take effect")
    body = first.rstrip("\r")
    line = " ".join([body.rstrip(), *missing]) + first[len(body):]  # keep a CR line end
    new = (line + newline + rest).encode("utf-8", "surrogateescape")
    return Plan([FileChange(CMDLINE_FILE, new)], notes)


def plan_config_txt(m: Machine, user: str) -> Plan:
    if not m.is_pi5:
        return Plan()
    note = (f"/{CONFIG_TXT_FILE}: nothing to change. The seed's gpu_mem=256 does not apply: a "
            "Raspberry Pi 5 allocates no GPU memory on behalf of the OS (gpu_mem has no "
            "effect), and libcamera takes its buffers from Linux CMA")
    if re.search(r"^\s*gpu_mem\w*\s*=", m.read(CONFIG_TXT_FILE) or "", re.MULTILINE):
        note += "; its existing gpu_mem line is ignored on this board"
    return Plan(notes=[note])


PLANNERS: list[Callable[[Machine, str], Plan]] = [
    plan_sysctl, plan_limits, plan_network_manager, plan_cmdline, plan_config_txt,
]


def build_plan(m: Machine, user: str) -> Plan:
    """Every file change ``apply`` wants, whether or not it is already in place."""
    plan = Plan()
    for planner in PLANNERS:
        plan.add(planner(m, user))
    return plan


def pending_changes(m: Machine, plan: Plan) -> list[FileChange]:
    """The changes whose file does not hold the wanted bytes yet."""
    out = []
    for change in plan.changes:
        try:
            current = m.path(change.rel).read_bytes()
        except OSError:
            current = None
        if current != change.new:
            out.append(change)
    return out


def _diff(old: bytes | None, new: bytes) -> list[str]:
    new_lines = new.decode("utf-8", "replace").splitlines()
    if old is None:
        return [f"+ {line}".rstrip() for line in new_lines]
    lines = difflib.unified_diff(old.decode("utf-8", "replace").splitlines(), new_lines,
                                 lineterm="", n=0)
    return [f"{d[0]} {d[1:]}".rstrip() for d in lines if not d.startswith(("---", "+++", "@@"))]


# -- backup and writes -------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Backup:
    """The manifest and original copies of every file ``apply`` touched."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.dir = m.path(BACKUP_DIR)
        self.manifest_path = self.dir / "manifest.json"
        self.manifest: dict = {"version": 1, "files": {}, "dirs": [], "live_sysctls": {}}
        if self.manifest_path.exists():
            self.manifest = json.loads(self.manifest_path.read_text())

    @property
    def exists(self) -> bool:
        return self.manifest_path.exists()

    def _ensure_dir(self) -> None:
        if not self.dir.is_dir():
            self.record_dirs(_makedirs(self.dir))
            os.chmod(self.dir, 0o700)  # copies of system files

    def record_dirs(self, created: list[Path]) -> None:
        """Remember directories ``apply`` created, for ``revert`` to remove."""
        self.manifest["dirs"] += [str(p.relative_to(self.m.root)) for p in created]

    def save(self) -> None:
        self._ensure_dir()
        _atomic_write(self.manifest_path, json.dumps(self.manifest, indent=1).encode() + b"\n")

    def keep_original(self, rel: str) -> None:
        """Copy ``rel`` into the backup the first time it is touched (never again)."""
        if rel in self.manifest["files"]:
            return
        self._ensure_dir()
        target = self.m.path(rel)
        entry: dict = {"existed": target.exists()}
        if entry["existed"]:
            data = target.read_bytes()
            st = target.stat()
            copy = self.dir / "files" / rel
            _makedirs(copy.parent)
            copy.write_bytes(data)
            entry.update(sha256=_sha256(data), mode=st.st_mode & 0o7777, uid=st.st_uid,
                         gid=st.st_gid, mtime_ns=st.st_mtime_ns, atime_ns=st.st_atime_ns)
        self.manifest["files"][rel] = entry
        self.save()

    def original(self, rel: str) -> bytes:
        return (self.dir / "files" / rel).read_bytes()


def _makedirs(path: Path) -> list[Path]:
    """mkdir -p; returns the directories it created, outermost first."""
    created = []
    for parent in [*reversed(path.parents), path]:
        if not parent.exists():
            parent.mkdir()
            created.append(parent)
    return created


def _atomic_write(path: Path, data: bytes, mode: int = 0o644,
                  owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``data`` in one rename (never a half-written file)."""
    tmp = path.with_name(f".{path.name}.vr-stream-ros.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    if owner and os.geteuid() == 0:
        with contextlib.suppress(OSError):  # vfat (/boot/firmware) has no owners
            os.chown(tmp, *owner)
    os.replace(tmp, path)


def _live_sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def apply(m: Machine, user: str, *, dry_run: bool = False, live: bool = False) -> int:
    """Print and (unless ``dry_run``) make every pending change, backing up each file first."""
    plan = build_plan(m, user)
    for note in plan.notes:
        print(note if note.startswith(("WARN", "INFO")) else f"INFO {note}")
    pending = pending_changes(m, plan)
    live_changes = _pending_live_sysctls(m) if live and m.live else []
    if live and not m.live:
        print(f"INFO --live ignored: --root {m.root} is not this machine")
    if not pending and not live_changes:
        print("nothing to change: already applied")
        return 0
    prefix = "would " if dry_run else ""
    for change in pending:
        path = m.path(change.rel)
        old = path.read_bytes() if path.exists() else None
        verb = ("change" if old is not None else "create") + ("" if dry_run else "d")
        print(f"{prefix}{verb} /{change.rel}")
        for line in _diff(old, change.new):
            print(f"    {line}")
    for key, old_value, new_value in live_changes:
        print(f"{prefix}set {key} in the running kernel: {old_value} -> {new_value}")
    if dry_run:
        print("dry run: nothing written")
        return 0
    backup = Backup(m)
    for change in pending:
        backup.keep_original(change.rel)
        path = m.path(change.rel)
        st = path.stat() if path.exists() else None
        backup.record_dirs(_makedirs(path.parent))
        _atomic_write(path, change.new, *((st.st_mode & 0o7777, (st.st_uid, st.st_gid))
                                          if st else ()))
        backup.manifest["files"][change.rel]["applied_sha256"] = _sha256(change.new)
        backup.save()
    for key, old_value, new_value in live_changes:
        backup.manifest["live_sysctls"].setdefault(key, old_value)
        backup.save()
        try:
            _live_sysctl_path(key).write_text(new_value)
        except OSError as exc:
            print(f"WARN {key}={new_value} not set now: {exc}; it applies at the next boot")
    print(f"backups of the originals in /{BACKUP_DIR}; `sudo tune revert` restores them")
    return 0


def _pending_live_sysctls(m: Machine) -> list[tuple[str, str, str]]:
    content, _ = sysctl_content(m)
    out = []
    for line in content.splitlines():
        if line and not line.startswith("#"):
            key, _, value = (s.strip() for s in line.partition("="))
            with contextlib.suppress(OSError):
                old = " ".join(_live_sysctl_path(key).read_text().split())
                if old != value:
                    out.append((key, old, value))
    return out


def revert(m: Machine, *, force: bool = False) -> int:
    """Restore every file ``apply`` touched byte for byte, remove what it created."""
    backup = Backup(m)
    if not backup.exists:
        print("nothing to revert: `tune apply` has not changed this tree")
        return 0
    files = backup.manifest["files"]
    edited = []
    for rel, entry in files.items():
        path = m.path(rel)
        now = _sha256(path.read_bytes()) if path.exists() else None
        if "applied_sha256" in entry and now != entry["applied_sha256"]:
            edited.append(f"/{rel}")
    if edited and not force:
        print("tune revert: changed since `tune apply`: " + ", ".join(edited)
              + "; nothing restored (revert --force restores the originals anyway)",
              file=sys.stderr)
        return 1
    for rel, entry in files.items():
        path = m.path(rel)
        if entry["existed"]:
            data = backup.original(rel)
            if _sha256(data) != entry["sha256"]:
                print(f"tune revert: the backup of /{rel} is damaged; nothing more restored",
                      file=sys.stderr)
                return 1
            _atomic_write(path, data, entry["mode"], (entry["uid"], entry["gid"]))
            with contextlib.suppress(OSError, KeyError):
                os.utime(path, ns=(entry["atime_ns"], entry["mtime_ns"]))
            print(f"restored /{rel}")
        elif path.exists() or path.is_symlink():
            path.unlink()
            print(f"removed /{rel}")
    for key, value in backup.manifest.get("live_sysctls", {}).items():
        if m.live:
            try:
                _live_sysctl_path(key).write_text(value)
                print(f"restored {key}={value} (running kernel)")
            except OSError as exc:
                print(f"WARN {key}={value} not restored now: {exc}")
    shutil.rmtree(backup.dir)
    for rel in reversed(backup.manifest["dirs"]):
        with contextlib.suppress(OSError):
            m.path(rel).rmdir()
    print("reverted: every file is as before `tune apply`")
    return 0


# -- command line ------------------------------------------------------------------------------
def _default_user() -> str:
    sudo_user = os.environ.get("SUDO_USER")
    return sudo_user if sudo_user and sudo_user != "root" else "pi"


_USER_RE = re.compile(r"@?[a-z_][a-z0-9_.-]*\$?", re.IGNORECASE)


def main(argv: list[str] | None = None) -> int:
    """tune check [--json] | apply [--dry-run] [--live] [--user U] | revert [--force]."""
    parser = argparse.ArgumentParser(prog="tune", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/",
                        help="operate on this directory tree instead of / (tests, SD cards)")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="report OK/WARN/INFO with the fix for each item")
    check.add_argument("--json", action="store_true", help="one JSON list instead of lines")
    ap = sub.add_parser("apply", help="write the tuning (backs up each file it touches)")
    ap.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    ap.add_argument("--live", action="store_true",
                    help="also set the sysctls in the running kernel (only with --root /)")
    ap.add_argument("--user", default=_default_user(),
                    help="user (or @group) for the rtprio/memlock limits (default: SUDO_USER "
                         "or pi)")
    rv = sub.add_parser("revert", help="restore every file apply changed, exactly")
    rv.add_argument("--force", action="store_true",
                    help="restore even files edited by hand since apply")
    ns = parser.parse_args(argv)
    try:
        machine = Machine(ns.root)
        if ns.command == "check":
            checks = run_checks(machine)
            if ns.json:
                print(json.dumps([asdict(c) for c in checks], indent=1))
            else:
                for c in checks:
                    print(c.line())
            return 0
        writes = not (ns.command == "apply" and ns.dry_run)
        if writes and machine.live and os.geteuid() != 0:
            raise TuneError(f"tune {ns.command}: needs root (try sudo)")
        if ns.command == "apply":
            if not _USER_RE.fullmatch(ns.user):
                raise TuneError(f"tune apply: --user {ns.user!r} is not a user or @group name")
            return apply(machine, ns.user, dry_run=ns.dry_run, live=ns.live)
        return revert(machine, force=ns.force)
    except TuneError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
