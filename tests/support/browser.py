"""A real browser for the page's tests and scripts/screenshot_page.py: Debian's chromium, headless,
driven through Debian's chromedriver by selenium (the driver's path is given, so Selenium Manager never
runs and nothing downloads a browser or a driver), and digits drawn as strokes with W3C input actions
(mouse, pen and touch pointers), as a person would.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("SE_OFFLINE", "true")  # belt and braces: Selenium Manager may not fetch anything

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CANVAS_SIDE = 280  # the canvas's drawing buffer (index.html)
WAIT_S = 20


# ---------- digits as strokes on the 280x280 canvas (each stroke: a list of (x, y)) ----------


def _arc(cx, cy, rx, ry, start_deg, end_deg, steps):
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in (start_deg + (end_deg - start_deg) * i / steps for i in range(steps + 1))
    ]


def _line(a, b, steps):
    return [(a[0] + (b[0] - a[0]) * i / steps, a[1] + (b[1] - a[1]) * i / steps) for i in range(steps + 1)]


DIGITS = {
    # a bar and a slanted stem, as most people write it
    7: [_line((75, 65), (205, 65), 8) + _line((205, 65), (120, 225), 10)[1:]],
    # an arc over the top, a diagonal down to the left, a flat base
    2: [
        _arc(140, 105, 58, 48, 200, 370, 10) + _line((197, 118), (82, 222), 9)[1:] + _line((82, 222), (208, 222), 8)[1:]
    ],
    # an upright oval, closed
    0: [_arc(140, 140, 62, 92, -90, 275, 24)],
}


# ---------- the browser ----------


@contextmanager
def chromium(width: int = 1200, height: int = 900, *, phone: bool = False):
    """Headless Debian chromium through Debian's chromedriver; its profile in a temporary directory.
    The viewport is exactly width x height CSS pixels (headless windows have a minimum width and
    their own frame); `phone` also emulates a mobile device: the viewport meta tag, touch."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(
                f"{path} is missing: run `bash scripts/install-system-deps.sh` (Debian's chromium and chromium-driver)"
            )
    profile = tempfile.mkdtemp(prefix="mnist-page-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(WAIT_S)
        driver.set_script_timeout(WAIT_S)
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": phone},
        )
        if phone:
            driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.execute_script("return document.body.dataset.ready === 'true'"),
        "the page did not finish loading the model list",
    )


def draw(driver, strokes, kind: str = interaction.POINTER_MOUSE) -> None:
    """Draws `strokes` (canvas-buffer coordinates) with one pointer of `kind`: mouse, pen or touch."""
    canvas = driver.find_element(By.ID, "canvas")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    rect = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();return {w: r.width, h: r.height};", canvas
    )
    scale_x, scale_y = rect["w"] / CANVAS_SIDE, rect["h"] / CANVAS_SIDE

    def offset(point):  # W3C actions with an element origin are relative to its centre
        return round((point[0] - CANVAS_SIDE / 2) * scale_x), round((point[1] - CANVAS_SIDE / 2) * scale_y)

    builder = ActionBuilder(driver, mouse=PointerInput(kind, f"{kind}-pointer"), duration=15)
    pointer = builder.pointer_action
    for stroke in strokes:
        pointer.move_to(canvas, *offset(stroke[0]))
        pointer.pointer_down()
        for point in stroke[1:]:
            pointer.move_to(canvas, *offset(point))
        pointer.pointer_up()
    builder.perform()


def clear(driver) -> None:
    driver.find_element(By.ID, "clear").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_element(By.ID, "results").get_attribute("data-label") is None)


def wait_answer(driver, model: str | None = None) -> dict:
    """Waits for the final answer (the live region's text comes only once a drawing is finished)
    and returns what the page shows."""

    def shown(d):
        info = d.execute_script("""
            const r = document.getElementById('results');
            return {label: r.dataset.label, model: r.dataset.model, version: r.dataset.version,
                    top: document.getElementById('top-label').textContent,
                    announce: document.getElementById('announce').textContent,
                    answered_by: document.getElementById('answered-by').textContent,
                    bars: Array.from(document.querySelectorAll('#bars li')).map(li => li.textContent),
                    error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent,
                    busy: r.classList.contains('busy')};""")
        if info["error"]:
            raise AssertionError(f"the page shows an error: {info['error']}")
        if info["label"] is None or not info["announce"] or info["busy"]:
            return False
        return info if model is None or info["model"] == model else False

    try:
        return WebDriverWait(driver, WAIT_S).until(shown)
    except TimeoutException:
        raise AssertionError(f"no final answer within {WAIT_S}s; browser log: {driver.get_log('browser')}") from None


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for (Chrome's performance log: Network.requestWillBeSent)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def save_screenshot(driver, path: Path) -> None:
    """The whole page as a PNG (headless chromium: the window's size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    png = driver.get_screenshot_as_png()
    from PIL import Image

    Image.open(io.BytesIO(png)).save(path, optimize=True)
