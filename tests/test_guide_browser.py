"""Notebook 10 in a real JupyterLab, driven by a real browser: run it, move a slider, see the ranking change.

JupyterLab is served on 127.0.0.1 with a token; Playwright drives Debian's Chromium (``/usr/bin/chromium``,
installed by ``.ci/run``), so no browser is downloaded. The notebook runs in quick mode against the servers
the tests use, from an empty results folder, so it reads the committed reference run (and says so). A
screenshot of the moved slider and its ranking is kept in ``build/browser/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from cachelab import paths
from cachelab.servers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.servers]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NOTEBOOK = "10_choosing_a_cache.ipynb"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


class Lab:
    """A running JupyterLab: the notebook's page, and its REST API to see the kernel and to shut it down."""

    def __init__(self, base: str, token: str):
        self.base, self.token = base, token
        self.page_url = f"{base}/lab/tree/{NOTEBOOK}?token={token}"

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.base}/api/{path}?token={self.token}", method=method)
        with urllib.request.urlopen(request, timeout=5) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def kernel_state(self) -> str | None:
        """The execution state of the notebook's kernel ('idle', 'busy', 'starting'), or None with no kernel."""
        for session in self.api("sessions"):
            if session.get("path", "").endswith(NOTEBOOK) and session.get("kernel"):
                return session["kernel"].get("execution_state")
        return None

    def shut_down_kernels(self) -> None:
        for session in self.api("sessions"):
            self.api(f"sessions/{session['id']}", method="DELETE")


@pytest.fixture
def lab_server(tmp_path, servers):
    """JupyterLab on a free loopback port, serving a copy of notebook 10; stopped afterwards, whatever happens."""
    pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (sudo apt-get install chromium; .ci/run does it)")
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(paths.notebooks_dir() / NOTEBOOK, root / NOTEBOOK)
    port, token = free_port(), secrets.token_hex(16)
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')  # no news prompt
    env = {**os.environ, "CACHELAB_QUICK": "1", "CACHELAB_RESULTS_DIR": str(tmp_path / "results"),
           "CACHELAB_FIGURES_DIR": str(tmp_path / "figures"), "PYTHONHASHSEED": "0",
           "REDIS_URL": servers.redis.url,
           "MEMCACHED_SERVERS": ",".join(f"{h}:{p}" for h, p in servers.memcached.nodes),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config")}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
               f"--LabApp.user_settings_dir={tmp_path / 'lab-settings'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = open(tmp_path / "jupyterlab.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=1)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    tail = (tmp_path / "jupyterlab.log").read_text()[-2000:]
                    raise RuntimeError(f"JupyterLab did not start:\n{tail}") from None
                time.sleep(0.2)
        yield Lab(f"http://127.0.0.1:{port}", token)
    finally:
        with_group = os.getpgid(server.pid) if server.poll() is None else None
        if with_group:
            os.killpg(with_group, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)
        log.close()


def ranking_text(page) -> str:
    """The text of the innermost output holding BEST:, the ranking the sliders drive."""
    texts = [t.strip() for t in page.locator(".jp-OutputArea-output", has_text="BEST:").all_inner_texts()]
    return min((t for t in texts if "BEST:" in t), key=len, default="")  # an output JupyterLab has not drawn is ''


def ranked_names(text: str) -> list[str]:
    return re.findall(r"^\s*\d+ (.+?)\s{2,}\d", text, flags=re.M)


def drive(playwright, lab: Lab, shots) -> tuple[str, str]:
    """One browser session: open the notebook, wait for a live kernel, Run All, move the slider.

    Returns the ranking before and after the slider moved.
    """
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(lab.page_url)
        page.wait_for_selector(".jp-Notebook", timeout=60_000)

        def answer_kernel_dialog() -> bool:
            dialog = page.locator(".jp-Dialog button", has_text="Select")
            if dialog.count():
                dialog.first.click()
                return True
            return False

        deadline = time.monotonic() + 90
        while lab.kernel_state() != "idle":  # a live kernel, asked of the server, before Run All
            answer_kernel_dialog()
            if time.monotonic() > deadline:
                raise AssertionError(f"the notebook's kernel never became idle (state {lab.kernel_state()})")
            page.wait_for_timeout(250)

        def run_all():
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

        run_all()
        best = page.locator(".jp-OutputArea-output", has_text="BEST:")
        deadline = time.monotonic() + 240
        while not best.count():
            if answer_kernel_dialog():  # the kernel dialog came late, and held the run back: run again
                page.wait_for_timeout(500)
                run_all()
            if time.monotonic() > deadline:
                page.screenshot(path=str(shots / "10_failed.png"), full_page=True)
                errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
                raise AssertionError("the ranking never showed; stderr of the notebook:\n"
                                     + "\n".join(errors.all_inner_texts())[-3000:])
            page.wait_for_timeout(250)
        # The sliders' cell is in the middle of the notebook: JupyterLab draws only the cells in view, so scroll to it.
        page.locator(".widget-slider", has_text="stale up to").first.scroll_into_view_if_needed(timeout=15_000)
        # A log slider whose value is off its step grid snaps to it when first drawn, and the ranking is
        # redrawn once for that: take "before" once the text has stayed the same for a while.
        before, steady_since, deadline = ranking_text(page), time.monotonic(), time.monotonic() + 20
        while time.monotonic() - steady_since < 2 and time.monotonic() < deadline:
            page.wait_for_timeout(250)
            if (now := ranking_text(page)) != before:
                before, steady_since = now, time.monotonic()
        track = page.locator(".widget-slider", has_text="stale up to").locator(".noUi-base").first
        # the left end of the track: the tightest bound, 1 ms. Playwright scrolls the track into view itself and
        # clicks relative to it (JupyterLab may scroll its notebook panel back to the active cell at any time, so
        # a page coordinate read before the click can be off screen by the time of the click)
        track.click(position={"x": 1, "y": track.bounding_box()["height"] / 2}, timeout=15_000)
        deadline = time.monotonic() + 30
        while "query's own duration" not in (after := ranking_text(page)) and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        page.screenshot(path=str(shots / "10_slider_moved.png"), full_page=False)
        return before, after
    finally:
        browser.close()


def test_moving_a_slider_changes_the_ranking(lab_server):
    """The browser session is tried twice at most: a browser that hangs once is the browser's, twice is ours."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    shots = paths.project_root() / "build" / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        try:
            before, after = drive(playwright, lab_server, shots)
        except (PlaywrightError, AssertionError) as first:
            print(f"browser session 1 failed, trying a new one: {first}")
            lab_server.shut_down_kernels()
            before, after = drive(playwright, lab_server, shots)
    assert ranked_names(before) and ranked_names(after) != ranked_names(before), (before, after)
    assert "query's own duration" in after, "a 1 ms bound rules out every TTL-only cache, saying why"
