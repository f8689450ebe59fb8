"""`tune` against temporary root trees (nothing on the host changes), and `check` on '/'.

Every tree test snapshots the whole tree (files with content hash, mode and mtime,
directories, symlinks) so "changes nothing" and "restores byte for byte" are checked on
everything, not on the files the tool is expected to touch.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vr_stream_ros.system.monitor import SystemMonitor
from vr_stream_ros.system.tune import (
    BACKUP_DIR,
    CMDLINE_FILE,
    LIMITS_FILE,
    NM_FILE,
    SYSCTL_FILE,
    main,
)

REPO = Path(__file__).resolve().parents[1]
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 " \
          "fsck.repair=yes rootwait quiet splash\n"
ISOLATION = "isolcpus=2,3 nohz_full=2,3 rcu_nocbs=2,3"
RELEASE = "6.6.51+rpt-rpi-2712"
KERNEL_CONFIG = "CONFIG_PREEMPT=y\n# CONFIG_NO_HZ_FULL is not set\nCONFIG_RCU_NOCB_CPU=y\n" \
                "CONFIG_TCP_CONG_BBR=m\n"
MMC1 = "devices/platform/axi/1000120000.pcie/1f00300000.mmc/mmc_host/mmc1/mmc1:0001/mmc1:0001:1"
ETH = "devices/platform/axi/1000120000.pcie/1f00100000.ethernet"


def make_tree(root: Path, *, pi5: bool = True, isolated: str = "", cmdline: str = CMDLINE,
              network_manager: bool = True) -> Path:
    """A Raspberry Pi 5 (or not) as tune sees it: /proc, /sys, /etc and /boot/firmware."""
    files = {
        "proc/cmdline": "coherent_pool=1M 8250.nr_uarts=1 " + cmdline.strip()
        + (f" isolcpus={isolated} nohz_full={isolated}" if isolated else "") + "\n",
        "proc/swaps": "Filename\tType\tSize\tUsed\tPriority\n/var/swap file 524272 0 -2\n",
        "proc/sys/kernel/version": "#1 SMP PREEMPT Debian 1:6.6.51-1+rpt3 (2024-10-08)\n",
        "proc/sys/kernel/osrelease": RELEASE + "\n",
        "proc/sys/vm/swappiness": "60\n",
        "proc/sys/net/ipv4/tcp_congestion_control": "cubic\n",
        "proc/sys/net/ipv4/tcp_available_congestion_control": "reno cubic\n",
        "proc/sys/net/core/default_qdisc": "pfifo_fast\n",
        "proc/sys/net/core/rmem_max": "212992\n", "proc/sys/net/core/wmem_max": "212992\n",
        "proc/interrupts": "           CPU0       CPU1       CPU2       CPU3\n"
                           " 60:     9000          0          0          0  GICv2 305 Level "
                           "    mmc0\n"
                           " 61:     4200          0          0          0  GICv2 306 Level "
                           "    mmc1\n"
                           "107:    81000          0          0          0  rp1_irq_chip   6 "
                           "Level     eth0\n",
        "proc/irq/60/smp_affinity_list": "0-3\n", "proc/irq/61/smp_affinity_list": "0-3\n",
        "proc/irq/107/smp_affinity_list": "0-3\n",
        "sys/devices/system/cpu/online": "0-3\n",
        "sys/devices/system/cpu/isolated": (isolated or "") + "\n",
        "sys/class/thermal/thermal_zone0/temp": "52500\n",
        f"lib/modules/{RELEASE}/kernel/net/ipv4/tcp_bbr.ko.xz": "module",
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
        "etc/sysctl.conf": "#net.ipv4.ip_forward=1\n",
        "etc/security/limits.conf": "# /etc/security/limits.conf\n#*  soft  core  0\n",
        "boot/firmware/cmdline.txt": cmdline,
        "boot/firmware/config.txt": "dtparam=audio=on\ncamera_auto_detect=1\ngpu_mem=128\n",
    }
    for cpu in range(4):
        files[f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"] = "ondemand\n"
    if pi5:
        files["proc/device-tree/model"] = "Raspberry Pi 5 Model B Rev 1.0\x00"
        files["proc/device-tree/compatible"] = "raspberrypi,5-model-b\x00brcm,bcm2712\x00"
    if network_manager:
        files["etc/NetworkManager/NetworkManager.conf"] = "[main]\nplugins=ifupdown,keyfile\n"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "proc/config.gz").write_bytes(gzip.compress(KERNEL_CONFIG.encode(), mtime=0))
    for rel in ("sys/class/net/wlan0/wireless", "sys/class/net/lo", MMC1, ETH,
                "etc/sysctl.d", "etc/security/limits.d"):
        (root / rel).mkdir(parents=True, exist_ok=True)
    (root / "sys/class/net/eth0").mkdir()
    (root / "sys/class/net/wlan0/device").symlink_to(f"../../../{MMC1}")
    (root / "sys/class/net/eth0/device").symlink_to(f"../../../{ETH}")
    (root / "etc/sysctl.d/99-sysctl.conf").symlink_to("../sysctl.conf")
    os.chmod(root / CMDLINE_FILE, 0o755)  # vfat shows every file as 755
    os.utime(root / CMDLINE_FILE, ns=(1_700_000_000_000_000_000,) * 2)
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root: files (sha256, mode, mtime), directories (mode), links."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", st.st_mode)
            else:
                out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mode,
                            st.st_mtime_ns)
    return out


def tune(root: Path, *args: str) -> int:
    return main(["--root", str(root), *args])


def test_check_reports_each_item_on_a_pi5_and_writes_nothing(tmp_path, capsys) -> None:
    root = make_tree(tmp_path)
    before = snapshot(root)
    assert tune(root, "check") == 0
    out = capsys.readouterr().out
    print(out)
    for expected in (
        "INFO machine: Raspberry Pi 5 Model B Rev 1.0: the boot files can be tuned",
        "WARN isolated CPUs: none: every CPU also runs other tasks -> `sudo tune apply` adds "
        f"{ISOLATION} to /boot/firmware/cmdline.txt, then reboot",
        "OK   kernel preemption: full (PREEMPT kernel; uname -v: #1 SMP PREEMPT Debian",
        "rtprio limit: ", "memlock limit: ",
        "WARN swap: 1 area(s) active, vm.swappiness=60 -> `sudo tune apply` sets "
        "vm.swappiness=0",
        "WARN CPU governor: ondemand -> echo performance",
        "OK   temperature: 52.5 C",
        "INFO throttling: cannot read: no vcgencmd",  # a tree is not the live machine
        "WARN tcp congestion control: cubic -> `sudo tune apply` sets bbr",
        "WARN default qdisc: pfifo_fast -> `sudo tune apply` sets fq",
        "WARN net.core.rmem_max: 212992 -> `sudo tune apply` sets 8388608",
        "WARN net.core.wmem_max: 212992",
        "INFO WiFi power save (wlan0): read on the machine itself",
        "OK   network IRQ affinity (eth0): IRQ 107 -> CPUs 0-3",
        "OK   network IRQ affinity (wlan0): IRQ 61 -> CPUs 0-3",  # SDIO host mmc1, not mmc0
    ):
        assert expected in out, (expected, out)
    assert "IRQ 60" not in out and "(lo)" not in out
    for line in out.splitlines():
        assert line.split()[0] in ("OK", "WARN", "INFO"), line
    assert snapshot(root) == before


def test_check_json_and_isolated_cpus_with_irqs_on_them(tmp_path, capsys) -> None:
    root = make_tree(tmp_path, isolated="2-3")
    assert tune(root, "check", "--json") == 0
    checks = {c["item"]: c for c in json.loads(capsys.readouterr().out)}
    assert set(checks["isolated CPUs"]) == {"status", "item", "detail", "fix"}
    assert checks["isolated CPUs"]["status"] == "OK"
    assert checks["isolated CPUs"]["detail"] == (
        "2-3 (isolcpus=2-3; nohz_full=2-3; nohz_full ignored: kernel built without "
        "CONFIG_NO_HZ_FULL)")
    irq = checks["network IRQ affinity (eth0)"]
    assert irq["status"] == "WARN" and "reaches isolated CPUs" in irq["detail"]
    assert irq["fix"].startswith("echo 0-1 | sudo tee /proc/irq/107/smp_affinity_list")


def test_tune_and_the_dashboard_read_temperature_and_throttling_alike(tmp_path, capsys) -> None:
    """Both read system/thermal.py: the hottest zone, and a Pi 5's firmware word (which
    the dashboard once looked for only at the Pi 4's soc/soc:firmware path)."""
    root = make_tree(tmp_path)
    zone = root / "sys/class/thermal/thermal_zone1"
    zone.mkdir()
    (zone / "temp").write_text("81500\n")
    (zone / "type").write_text("rp1_adc\n")
    firmware = root / "sys/devices/platform/soc@107c000000/soc@107c000000:firmware"
    firmware.mkdir(parents=True)
    (firmware / "get_throttled").write_text("50005\n")
    assert tune(root, "check", "--json") == 0
    checks = {c["item"]: c for c in json.loads(capsys.readouterr().out)}
    soc = SystemMonitor(str(root)).sample({}).soc
    assert (soc.temperature_c, soc.temperature_source) == (
        81.5, "/sys/class/thermal/thermal_zone1 (rp1_adc)")
    assert checks["temperature"]["status"] == "WARN"
    assert checks["temperature"]["detail"] == "81.5 C (/sys/class/thermal/thermal_zone1 (rp1_adc))"
    fw = "/sys/devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled"
    assert (soc.throttled, soc.throttled_source) == (0x50005, fw)
    flags = ["under-voltage now", "throttled now", "under-voltage has occurred",
             "throttling has occurred"]  # bits 0, 2, 16 and 18 of 0x50005
    assert soc.throttle_flags == flags
    assert checks["throttling"]["status"] == "WARN"
    assert checks["throttling"]["detail"] == f"throttled=0x50005 ({fw}): {', '.join(flags)}"


def test_check_on_an_empty_tree_says_not_available(tmp_path, capsys) -> None:
    assert tune(tmp_path, "check") == 0
    out = capsys.readouterr().out
    for item in ("isolated CPUs", "kernel preemption", "swap", "CPU governor", "temperature",
                 "throttling", "tcp congestion control", "default qdisc", "net.core.rmem_max",
                 "WiFi power save", "network IRQ affinity"):
        assert f"INFO {item}: not available on this machine" in out, (item, out)
    assert list(tmp_path.iterdir()) == []


def test_dry_run_apply_apply_revert_revert_on_a_pi5(tmp_path, capsys) -> None:
    root = make_tree(tmp_path)
    before = snapshot(root)

    assert tune(root, "apply", "--dry-run", "--user", "pi") == 0
    dry = capsys.readouterr().out
    assert snapshot(root) == before, "a dry run must change nothing"
    for expected in (f"would change /{CMDLINE_FILE}", f"    - {CMDLINE.strip()}",
                     f"    + {CMDLINE.strip()} {ISOLATION}", f"would create /{SYSCTL_FILE}",
                     "    + net.ipv4.tcp_congestion_control = bbr", f"would create /{LIMITS_FILE}",
                     "    + pi - rtprio 99", f"would create /{NM_FILE}",
                     "    + wifi.powersave = 2", "gpu_mem=256 does not apply",
                     "its existing gpu_mem line is ignored", "dry run: nothing written"):
        assert expected in dry, (expected, dry)

    assert tune(root, "apply", "--user", "pi") == 0
    out = capsys.readouterr().out
    assert f"changed /{CMDLINE_FILE}" in out and f"created /{SYSCTL_FILE}" in out
    assert "would" not in out
    cmdline = (root / CMDLINE_FILE).read_text()
    assert cmdline == f"{CMDLINE.strip()} {ISOLATION}\n"
    assert os.stat(root / CMDLINE_FILE).st_mode & 0o777 == 0o755  # mode kept
    sysctl = (root / SYSCTL_FILE).read_text()
    for line in ("net.core.rmem_max = 8388608", "net.core.wmem_max = 8388608",
                 "net.core.default_qdisc = fq", "net.ipv4.tcp_congestion_control = bbr",
                 "vm.swappiness = 0"):
        assert line in sysctl.splitlines(), (line, sysctl)
    assert sum(not x.startswith("#") and "=" in x for x in sysctl.splitlines()) == 5
    assert sysctl.count("# ") >= 5, "each value says why"
    limits = (root / LIMITS_FILE).read_text().splitlines()
    assert "pi - rtprio 99" in limits and "pi - memlock unlimited" in limits
    assert (root / "boot/firmware/config.txt").read_bytes() == b"dtparam=audio=on\n" \
        b"camera_auto_detect=1\ngpu_mem=128\n"
    manifest = json.loads((root / BACKUP_DIR / "manifest.json").read_text())
    original = manifest["files"][CMDLINE_FILE]
    assert original["existed"] and original["mode"] == 0o755
    assert original["sha256"] == hashlib.sha256(CMDLINE.encode()).hexdigest()
    assert manifest["files"][SYSCTL_FILE] == {
        "existed": False, "applied_sha256": hashlib.sha256(sysctl.encode()).hexdigest()}
    applied = snapshot(root)

    assert tune(root, "apply", "--user", "pi") == 0  # idempotent
    assert "nothing to change: already applied" in capsys.readouterr().out
    assert snapshot(root) == applied

    assert tune(root, "revert") == 0
    out = capsys.readouterr().out
    assert f"restored /{CMDLINE_FILE}" in out and f"removed /{SYSCTL_FILE}" in out
    assert snapshot(root) == before, "revert restores every byte, mode, mtime; no leftovers"
    assert tune(root, "revert") == 0
    assert "nothing to revert" in capsys.readouterr().out
    assert snapshot(root) == before


def test_cmdline_keeps_what_is_there_and_adds_no_duplicates(tmp_path, capsys) -> None:
    text = "console=tty1 root=/dev/mmcblk0p2 isolcpus=3 nohz_full=2,3"  # no newline at the end
    root = make_tree(tmp_path, cmdline=text)
    before = snapshot(root)
    assert tune(root, "apply") == 0
    out = capsys.readouterr().out
    assert "kept isolcpus=3" in out
    assert "rcu_nocbs= " not in out  # this kernel has RCU_NOCB_CPU
    assert "nohz_full= has no effect on this kernel (CONFIG_NO_HZ_FULL is not set)" in out
    assert (root / CMDLINE_FILE).read_text() == text + " rcu_nocbs=2,3"
    assert tune(root, "apply") == 0 and "already applied" in capsys.readouterr().out
    assert (root / CMDLINE_FILE).read_text().count("rcu_nocbs") == 1
    assert tune(root, "revert") == 0
    assert snapshot(root) == before


def test_not_a_pi5_leaves_the_boot_files_alone(tmp_path, capsys) -> None:
    root = make_tree(tmp_path, pi5=False, network_manager=False)
    before = snapshot(root)
    assert tune(root, "apply", "--dry-run", "--user", "ubuntu") == 0
    dry = capsys.readouterr().out
    assert "not a Raspberry Pi 5 (no device-tree model): /boot/firmware/cmdline.txt and " \
           "/boot/firmware/config.txt left alone" in dry
    assert "WiFi power save: no NetworkManager here" in dry
    assert "WARN user 'ubuntu' is not in /etc/passwd" in dry
    assert "cmdline.txt" not in "".join(x for x in dry.splitlines() if "would" in x)
    assert tune(root, "apply", "--user", "ubuntu") == 0
    after = snapshot(root)
    changed = {k for k in after if after[k] != before.get(k)}
    assert not any(k.startswith("boot/") for k in changed)
    assert {SYSCTL_FILE, LIMITS_FILE} <= changed and NM_FILE not in after
    assert tune(root, "revert") == 0
    assert snapshot(root) == before


def test_revert_refuses_a_file_edited_since_apply_unless_forced(tmp_path, capsys) -> None:
    root = make_tree(tmp_path)
    before = snapshot(root)
    assert tune(root, "apply") == 0
    with open(root / SYSCTL_FILE, "a") as f:
        f.write("kernel.sched_rt_runtime_us = -1\n")
    edited = snapshot(root)
    assert tune(root, "revert") == 1
    assert f"changed since `tune apply`: /{SYSCTL_FILE}" in capsys.readouterr().err
    assert snapshot(root) == edited, "a refused revert changes nothing"
    assert tune(root, "revert", "--force") == 0
    assert snapshot(root) == before


def test_bbr_is_left_out_where_the_kernel_has_none(tmp_path, capsys) -> None:
    root = make_tree(tmp_path)
    (root / "proc/config.gz").write_bytes(gzip.compress(b"# CONFIG_TCP_CONG_BBR is not set\n"))
    (root / f"lib/modules/{RELEASE}/kernel/net/ipv4/tcp_bbr.ko.xz").unlink()
    assert tune(root, "apply") == 0
    assert "bbr left out: this kernel has no tcp_bbr" in capsys.readouterr().out
    sysctl = (root / SYSCTL_FILE).read_text()
    assert "tcp_congestion_control" not in sysctl and "default_qdisc = fq" in sysctl


@pytest.mark.parametrize(("args", "message"), [
    (["--root", "/nonexistent-vr-tune", "check"], "--root '/nonexistent-vr-tune': not a dir"),
    (["apply", "--user", "pi; rm -rf"], "--user 'pi; rm -rf' is not a user or @group name"),
])
def test_bad_arguments_are_refused_with_the_reason(tmp_path, capsys, args, message) -> None:
    if args[0] != "--root":
        args = ["--root", str(tmp_path), *args]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


NOBODY_CHILD = """
import os, sys
from vr_stream_ros.system.tune import main
os.setgroups([]); os.setgid(65534); os.setuid(65534)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop a child to nobody")
@pytest.mark.parametrize(("args", "code", "expected"), [
    (["apply"], 2, "tune apply: needs root (try sudo)"),
    (["revert"], 2, "tune revert: needs root (try sudo)"),
    (["apply", "--dry-run"], 0, "dry run: nothing written"),  # reads only: any user
])
def test_the_real_root_needs_root_to_change(args, code, expected) -> None:
    result = subprocess.run([sys.executable, "-c", NOBODY_CHILD, *args], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == code, result
    assert expected in result.stdout + result.stderr
    assert not Path("/", BACKUP_DIR).exists()


def test_check_on_this_machine_is_read_only() -> None:
    backup_existed = Path("/", BACKUP_DIR).exists()
    result = subprocess.run([sys.executable, "-m", "vr_stream_ros.system.tune", "check"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    print(result.stdout)  # quoted in the README / the lead's note (pytest -s)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(x.split()[0] in ("OK", "WARN", "INFO") for x in lines), lines
    for item in ("machine", "isolated CPUs", "kernel preemption", "rtprio limit",
                 "memlock limit", "swap", "CPU governor", "temperature", "throttling",
                 "tcp congestion control", "net.core.rmem_max", "WiFi power save",
                 "network IRQ affinity"):
        assert any(x[5:].startswith(item) for x in lines), (item, lines)
    assert Path("/", BACKUP_DIR).exists() == backup_existed
    as_json = subprocess.run([sys.executable, "-m", "vr_stream_ros.system.tune", "check",
                              "--json"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert [c["item"] for c in json.loads(as_json.stdout)] == [x[5:].split(":")[0]
                                                               for x in lines]


def test_revert_restores_the_first_original_after_apply_edit_apply(tmp_path, capsys) -> None:
    root = make_tree(tmp_path)
    before = snapshot(root)
    assert tune(root, "apply") == 0
    cmdline = root / CMDLINE_FILE
    cmdline.write_text(cmdline.read_text().replace(" rcu_nocbs=2,3", ""))  # a hand edit
    assert tune(root, "apply") == 0  # puts rcu_nocbs back; the backup keeps the first original
    assert cmdline.read_text().count("rcu_nocbs=2,3") == 1
    assert tune(root, "revert") == 0
    assert snapshot(root) == before
