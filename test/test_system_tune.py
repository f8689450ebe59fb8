"""`tune` against temporary root trees: nothing on the host changes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vr_stream_ros.system_tune import main

CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=abc rootfstype=ext4 quiet\n"


def _tree(root: Path, pi5: bool) -> None:
    files = {
        "proc/cmdline": CMDLINE, "proc/swaps": "Filename Type Size Used Priority\n"
        "/var/swap file 102396 0 -2\n", "proc/version": "Linux version 6.6 #1 SMP PREEMPT\n",
        "proc/sys/net/ipv4/tcp_congestion_control": "cubic\n",
        "proc/sys/net/core/default_qdisc": "pfifo_fast\n",
        "proc/sys/net/core/rmem_max": "212992\n", "proc/sys/net/core/wmem_max": "212992\n",
        "sys/devices/system/cpu/isolated": "\n",
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "ondemand\n",
        "sys/class/thermal/thermal_zone0/temp": "52500\n",
        "sys/class/net/wlan0/wireless/.keep": "", "proc/interrupts":
        "           CPU0  CPU1\n 42:  100  0  GICv2 wlan0\n",
        "proc/irq/42/smp_affinity_list": "0-1\n",
        "etc/sysctl.d/10-default.conf": "kernel.printk = 3 4 1 3\n",
        "boot/firmware/cmdline.txt": CMDLINE,
        "boot/firmware/config.txt": "dtparam=audio=on\n",
    }
    if pi5:
        files["proc/device-tree/model"] = "Raspberry Pi 5 Model B Rev 1.0\x00"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    os.chmod(root / "boot/firmware/cmdline.txt", 0o755)


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                       p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_check_reports_each_item_with_a_fix(tmp_path, capsys) -> None:
    _tree(tmp_path, pi5=True)
    assert main(["--root", str(tmp_path), "check"]) == 0
    out = capsys.readouterr().out
    for expected in ("WARN isolated CPUs", "isolcpus=2,3", "WARN kernel preemption",
                     "WARN swap", "WARN CPU governor: ondemand", "OK   temperature: 52.5 C",
                     "WARN tcp congestion control: cubic", "WARN net.core.rmem_max",
                     "WiFi power save (wlan0)", "network IRQ affinity: IRQ 42 -> CPUs 0-1"):
        assert expected in out, (expected, out)


def test_dry_run_apply_apply_revert_revert_on_a_pi5(tmp_path, capsys) -> None:
    _tree(tmp_path, pi5=True)
    before = _snapshot(tmp_path)
    root = ["--root", str(tmp_path)]
    assert main([*root, "apply", "--dry-run", "--user", "pi"]) == 0
    assert _snapshot(tmp_path) == before, "dry run must change nothing"
    dry = capsys.readouterr().out
    assert "would change /boot/firmware/cmdline.txt" in dry and "would create /etc/sysctl.d" in dry
    assert "gpu_mem=256 does not apply" in dry

    assert main([*root, "apply", "--user", "pi"]) == 0
    cmdline = (tmp_path / "boot/firmware/cmdline.txt").read_text()
    assert cmdline.count("\n") == 1 and cmdline.strip().endswith(
        "quiet isolcpus=2,3 nohz_full=2,3 rcu_nocbs=2,3")
    assert "net.ipv4.tcp_congestion_control = bbr" in (
        tmp_path / "etc/sysctl.d/90-vr-stream-ros.conf").read_text()
    assert "pi - rtprio 99" in (tmp_path / "etc/security/limits.d/90-vr-stream-ros.conf"
                                ).read_text()
    applied = _snapshot(tmp_path)
    capsys.readouterr()
    assert main([*root, "apply", "--user", "pi"]) == 0  # idempotent
    assert "already applied" in capsys.readouterr().out
    assert _snapshot(tmp_path) == applied

    assert main([*root, "revert"]) == 0
    assert _snapshot(tmp_path) == before, "revert must restore byte for byte (and modes)"
    assert main([*root, "revert"]) == 0
    assert "nothing to revert" in capsys.readouterr().out
    assert _snapshot(tmp_path) == before


def test_not_a_pi_leaves_boot_files_alone(tmp_path, capsys) -> None:
    _tree(tmp_path, pi5=False)
    before = _snapshot(tmp_path)
    assert main(["--root", str(tmp_path), "apply", "--user", "ubuntu"]) == 0
    out = capsys.readouterr().out
    assert "not a Raspberry Pi 5" in out
    after = _snapshot(tmp_path)
    assert after["boot/firmware/cmdline.txt"] == before["boot/firmware/cmdline.txt"]
    assert main(["--root", str(tmp_path), "revert"]) == 0
    assert _snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user (CI is root)")
def test_apply_on_the_real_root_refuses_without_root() -> None:
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             sys.executable, "-I", "-c",
                             "import sys; sys.path.insert(0, sys.argv[1]);"
                             "from vr_stream_ros.system_tune import main;"
                             "raise SystemExit(main(['apply']))",
                             str(Path(__file__).resolve().parents[1])],
                            capture_output=True, text=True, timeout=60)
    if "Permission denied" in result.stderr and "vr_stream_ros" not in result.stderr:
        pytest.skip("user nobody cannot read this checkout")
    assert result.returncode == 2, result.stderr
    assert "needs root (try sudo)" in result.stderr


def test_check_on_this_machine_runs_read_only(capsys) -> None:
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "isolated CPUs" in out and "tcp congestion control" in out
