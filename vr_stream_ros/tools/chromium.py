"""Headless Chromium as the WebRTC headset's stand-in, for the tests and ``make bench-webrtc``.

    with Chromium(profile_dir) as browser:
        browser.inject(js)                  # runs before each page's own scripts
        browser.open_viewer(url_the_bridge_printed, port)
        browser.stat("framesRead")          # window.vrStats of the viewer page
        browser.inbound_video()             # the browser's getStats for the video
        browser.screenshot("viewer.png")
        browser.log()                       # Chromium's own log (warnings and up)

Debian's chromium driven by Debian's chromedriver through Selenium (installed with
apt-get when missing and root), on loopback only with nothing phoning home. The
Selenium WebDriver stays reachable as ``driver`` for windows and elements.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from typing import Any

from vr_stream_ros.tools.apt import ensure_packages

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns", "--window-size=1400,900",
    "--ignore-certificate-errors",  # the bridge's self-signed HTTPS certificate
    # Chromium's own log (every process, warnings and up; --vmodule=<file>=N adds a
    # file's VLOGs) into <profile>/chrome_debug.log: libwebrtc's word on what it did.
    "--enable-logging", "--v=0",
)
PACKAGES = ("chromium", "chromium-driver")

_INBOUND_VIDEO = """
  const done = arguments[arguments.length - 1];
  window.vrPeer.getStats().then((stats) => { let out = null;
    stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') out = {
      framesDecoded: r.framesDecoded, jitterBufferDelay: r.jitterBufferDelay,
      jitterBufferEmittedCount: r.jitterBufferEmittedCount,
      totalDecodeTime: r.totalDecodeTime, framesDropped: r.framesDropped,
      framesReceived: r.framesReceived, packetsLost: r.packetsLost}; });
    done(out); });"""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def local_url(url: str, port: int, host: str = "127.0.0.1") -> str:
    """``url`` (as the bridge printed it, with its LAN address) pointed at ``host:port``."""
    return urllib.parse.urlsplit(url)._replace(netloc=f"{host}:{port}").geturl()


class Chromium:
    """One headless Chromium; raises ``tools.apt.PackagesMissing`` when it cannot be had."""

    def __init__(self, profile_dir: str | os.PathLike, extra_flags: tuple[str, ...] = ()) -> None:
        driver_path = ensure_packages("chromedriver", PACKAGES)
        os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for drivers online
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        options = webdriver.ChromeOptions()
        self.profile_dir = os.fspath(profile_dir)
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={os.fspath(profile_dir)}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(driver_path), options=options)

    def inject(self, source: str) -> None:
        """Run ``source`` in every page this browser loads from now on, before the page's
        own scripts (DevTools' Page.addScriptToEvaluateOnNewDocument)."""
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": source})

    def open_viewer(self, url: str, port: int | None = None) -> None:
        """Load the viewer page (on 127.0.0.1:``port`` when given)."""
        self.driver.get(local_url(url, port) if port is not None else url)

    def stats(self) -> dict[str, Any]:
        """The viewer page's ``window.vrStats`` (frames read, latencies, errors, ...)."""
        return self.driver.execute_script("return vrStats")

    def stat(self, name: str) -> Any:
        """One field of ``vrStats``; ``framesRead.length`` style paths work too."""
        return self.driver.execute_script(f"return vrStats.{name}")

    def inbound_video(self) -> dict[str, float] | None:
        """The browser's getStats for the received video (frames received, decoded and
        dropped, packets lost, jitter buffer delay and count, total decode time); None
        before it has any."""
        return self.driver.execute_async_script(_INBOUND_VIDEO)

    def screenshot(self, path: str | os.PathLike) -> str:
        """A PNG of the page at ``path``; ValueError if what was written is not a PNG."""
        path = os.fspath(path)
        self.driver.save_screenshot(path)
        with open(path, "rb") as f:
            if f.read(8) != PNG_MAGIC:
                raise ValueError(f"{path}: the screenshot is not a PNG")
        return path

    def log(self) -> str:
        """Chromium's log so far (its processes' LOG/RTC_LOG lines), '' before any."""
        try:
            with open(os.path.join(self.profile_dir, "chrome_debug.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def quit(self) -> None:
        """Close the browser and its driver."""
        self.driver.quit()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.quit()
