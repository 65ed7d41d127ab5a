"""The report of a real run in headless Chromium: no console errors, no network requests, key sections visible.

Drives Chromium through the DevTools protocol over `--remote-debugging-pipe` (JSON messages
separated by NUL on fds 3/4: no websocket client, no port). Skips when Chromium is absent,
except in CI (`DEFTPIPE_REQUIRE_ALL=1`) where that is a failure.
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_all

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
SECTION_IDS = ("headline", "run-status", "trajectory", "iter1-sdg", "timeline", "preflight", "provenance")


def _chromium() -> str:
    for cand in CHROMIUM_CANDIDATES:
        found = shutil.which(cand)
        if found:
            return found
    reason = "headless Chromium not found (apt-get install -y chromium)"
    if require_all():
        pytest.fail(reason + " but DEFTPIPE_REQUIRE_ALL=1")
    pytest.skip(reason)


class _Cdp:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, binary: str, user_data_dir: Path) -> None:
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def remap() -> None:  # Chromium reads commands on fd 3 and writes replies on fd 4
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
             "--disable-extensions", "--disable-sync", "--metrics-recording-only", "--mute-audio",
             f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank"],
            # fds 3/4 are listed too: subprocess closes every fd not in pass_fds after preexec_fn runs
            preexec_fn=remap, pass_fds=(3, 4, to_chrome_r, from_chrome_w),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from Chromium over the debugging pipe")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise ConnectionError("Chromium closed the debugging pipe")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, *, timeout: float = 30.0) -> dict[str, Any]:
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        deadline = time.monotonic() + timeout
        while True:
            ev = self._read_message(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - best effort; the process is killed below
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) DEFT run: demo workspace, one iteration, one epoch, through the CLI."""
    ws = tmp_path_factory.mktemp("browser") / "ws"
    exe = [sys.executable, "-m", "deftpipe"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(exe + ["make-demo-data", str(ws), "--scale", "tiny", "--seed", "0", "--force"],
                   check=True, capture_output=True, env=env, timeout=300)
    res = subprocess.run(exe + ["deft", "--workspace", str(ws), "--max-iterations", "1", "--epochs", "1", "--yes"],
                         capture_output=True, text=True, env=env, timeout=900)
    runs = sorted((ws / "results").glob("run_*"))
    assert runs and (runs[-1] / "deft_state.json").exists(), res.stdout[-2000:] + res.stderr[-2000:]
    return runs[-1]


def test_report_in_headless_chromium(real_run: Path, tmp_path: Path) -> None:
    binary = _chromium()
    from deftpipe.report import render_report

    report = render_report(real_run)
    html = report.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and "<script" not in html.lower()

    cdp = _Cdp(binary, tmp_path / "profile")
    try:
        target = next(t for t in cdp.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        session = cdp.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.events.clear()
        cdp.send("Page.navigate", {"url": report.as_uri()}, session=session)
        cdp.wait_for("Page.loadEventFired", timeout=60)
        found = cdp.send("Runtime.evaluate", {"returnByValue": True, "expression": json.dumps(list(SECTION_IDS))
                                              + ".filter(id => document.getElementById(id) === null)"},
                         session=session)["result"]["value"]
        assert found == [], f"sections missing from the DOM: {found}"
        n_images = cdp.send("Runtime.evaluate", {"returnByValue": True, "expression":
                            "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"},
                            session=session)["result"]["value"]
        assert n_images >= 5, "charts and thumbnails did not decode"
        size = cdp.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        cdp.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": int(min(size["height"], 16000)),
                                                        "deviceScaleFactor": 1, "mobile": False}, session=session)
        shot = cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                        session=session, timeout=60)
    finally:
        cdp.close()

    png = base64.b64decode(shot["data"])
    out = real_run / "report_screenshot.png"
    out.write_bytes(png)
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert img is not None and img.shape[0] > 1000 and float(img.std()) > 10.0, "blank screenshot"

    methods = [ev.get("method") for ev in cdp.events]
    errors = [ev["params"] for ev in cdp.events
              if ev.get("method") == "Runtime.exceptionThrown"
              or (ev.get("method") == "Runtime.consoleAPICalled" and ev["params"].get("type") == "error")
              or (ev.get("method") == "Log.entryAdded" and ev["params"]["entry"].get("level") == "error")]
    assert errors == [], errors
    requests = [ev["params"]["request"]["url"] for ev in cdp.events if ev.get("method") == "Network.requestWillBeSent"]
    outside = [u for u in requests if not (u.startswith("data:") or u == report.as_uri())]
    assert outside == [], f"the report requested {outside}"
    assert "Page.loadEventFired" in methods
