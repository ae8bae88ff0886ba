"""Headless Chromium through Selenium for the console's browser tests: finding the browser, one
1280×800 viewport, screenshots into ``test-artifacts/console/``, axe-core checks, CSP reports.

The browser is Debian's ``chromium`` with ``chromium-driver``: system-wide (/usr/bin), or unpacked
into ``.venv`` by ``make browser``; ``IMGCLF_CHROMIUM`` / ``IMGCLF_CHROMEDRIVER`` name others.
Without one the tests skip with the reason, unless ``IMGCLF_REQUIRE_BROWSER`` is set (CI): then
they fail.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("IMGCLF_TEST_ARTIFACTS", REPO / "test-artifacts")) / "console"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
WIDTH, HEIGHT = 1280, 800


def _first(*candidates: str | None) -> str | None:
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_browser() -> tuple[str, str] | None:
    venv = REPO / ".venv" / "bin"
    chromium = _first(os.environ.get("IMGCLF_CHROMIUM"), str(venv / "chromium"), "/usr/bin/chromium",
                      shutil.which("chromium") or shutil.which("chromium-browser"))  # fmt: skip
    driver = _first(os.environ.get("IMGCLF_CHROMEDRIVER"), str(venv / "chromedriver"), "/usr/bin/chromedriver",
                    shutil.which("chromedriver"))  # fmt: skip
    return (chromium, driver) if chromium and driver else None


def start_browser():  # type: ignore[no-untyped-def]
    """A headless Chromium at 1280×800 CSS pixels, or a skip (a failure under IMGCLF_REQUIRE_BROWSER)."""
    found = find_browser()
    if found is None:
        message = "no chromium and chromedriver (make browser installs Debian's into .venv)"
        if os.environ.get("IMGCLF_REQUIRE_BROWSER"):
            pytest.fail(message + "; IMGCLF_REQUIRE_BROWSER is set")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={WIDTH},{HEIGHT}", "--force-device-scale-factor=1", "--lang=en-US",
                     "--disable-extensions", "--no-first-run", "--password-store=basic"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    driver.set_page_load_timeout(30)
    return driver


def screenshot(driver, name: str) -> Path:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def serious_violations(driver) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    """axe-core's violations of impact serious or critical on the current page (all WCAG 2.x A/AA rules and
    best practices axe runs by default)."""
    if not driver.execute_script("return typeof window.axe !== 'undefined'"):
        driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations), e => done([String(e)]));"
    )
    found = [v for v in result if isinstance(v, dict) and v.get("impact") in ("serious", "critical")]
    errors = [v for v in result if not isinstance(v, dict)]
    assert not errors, errors
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"][:5]]} for v in found]  # fmt: skip


def csp_reports(driver) -> list[str]:  # type: ignore[no-untyped-def]
    """Console messages about Content-Security-Policy violations since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if "Content Security Policy" in entry["message"]]


def save_json(name: str, data: object) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path
