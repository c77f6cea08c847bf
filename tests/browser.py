"""A real browser for tests: Debian's headless Chromium driven by Selenium through Debian's
chromedriver (packages `chromium` and `chromium-driver`; scripts/test installs them). Never a
downloaded browser build: the driver is given by path, so Selenium Manager fetches nothing.

`Browser` opens pages, evaluates JavaScript, collects what the page printed to the console
(`console_errors`: `console.error` calls and uncaught exceptions) and saves screenshots under
`objs/test-artifacts/<test name>/`, which survive the run for a person (or CI's artifacts) to
look at. The `browser` fixture of conftest.py gives a test one, closed (and its console saved
next to the screenshots) at teardown.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "objs" / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARGS = [
    "--headless=new",
    "--no-sandbox",  # tests run as root in CI
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1024,900",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]


def artifact_dir(name: str) -> Path:
    """objs/test-artifacts/<name>, made empty (a test's name, cleaned to a file name)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:120] or "test"
    path = ARTIFACTS / safe
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class Browser:
    """One headless Chromium (one tab) and its chromedriver; `close()` ends both."""

    def __init__(self, artifacts: Path) -> None:
        self.artifacts = artifacts
        self.log: list[dict[str, Any]] = []  # every console entry read so far
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ARGS:
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        log_path = str(artifacts / "chromedriver.log")
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER, log_output=log_path))
        self.driver.set_page_load_timeout(30)
        self.driver.set_script_timeout(30)
        self.shots = 0

    def open(self, url: str) -> None:
        self.driver.get(url)

    def js(self, script: str, *args: Any) -> Any:
        """The value of `script` (a function body: `return ...`) run in the page."""
        return self.driver.execute_script(script, *args)

    def console(self) -> list[dict[str, Any]]:
        """Every console entry so far ({level, message, source, timestamp})."""
        self.log += self.driver.get_log("browser")
        return list(self.log)

    def console_errors(self) -> list[str]:
        """What the page reported as errors: console.error and uncaught exceptions (SEVERE)."""
        return [e["message"] for e in self.console() if e.get("level") == "SEVERE"]

    def screenshot(self, label: str) -> Path:
        """Save the page as a PNG in the test's artifact folder; returns its path."""
        self.shots += 1
        path = self.artifacts / f"{self.shots:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}.png"
        self.driver.save_screenshot(str(path))
        return path

    def close(self) -> None:
        try:
            (self.artifacts / "console.json").write_text(json.dumps(self.console(), indent=1))
        except Exception:  # the browser may be gone already: the console is a courtesy
            pass
        self.driver.quit()
