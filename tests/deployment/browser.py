"""Headless Chromium for the deployment's UI tests: selenium over Debian's chromium and
chromium-driver, a fresh profile per browser, explicit waits, screenshots as artifacts.

Missing pieces (selenium, /usr/bin/chromium, /usr/bin/chromedriver) skip the tests with the
reason; under CI=true they fail instead, so a CI image without a browser cannot pass green.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("JOBFORGE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("JOBFORGE_CHROMEDRIVER", "/usr/bin/chromedriver"))
WIDTH, HEIGHT = 1600, 1000
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in a container: the sandbox needs user namespaces
    "--disable-gpu",
    "--disable-dev-shm-usage",  # a small /dev/shm crashes tabs
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no calls home: the machine may be offline
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={WIDTH},{HEIGHT}",
)


def unavailable(reason: str) -> None:
    """Skip, or under CI=true fail: a missing browser must not turn a CI run green."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the browser test cannot run: {reason}")
    pytest.skip(reason)


def screenshot_dir() -> Path:
    base = Path(os.environ.get("JOBFORGE_ARTIFACTS", REPO / ".jobforge" / "artifacts"))
    directory = base / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


class Browser:
    """One Chromium: open a page of the deployment, wait for the DOM, screenshot it."""

    def __init__(self, driver: Any, base_url: str, timeout: float):
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._wait = WebDriverWait

    def login(self, token: str) -> None:
        """Put an API token where the api-server looks when a request carries no Authorization
        header: the `_token` cookie (what /auth/token/login sets). With all-admins on, the
        server's middleware authorizes every request anyway; the cookie makes the same test
        work against a deployment without it."""
        self.open("/api/v2/version")  # a cookie needs a page of its origin
        self.driver.add_cookie({"name": "_token", "value": token, "path": "/"})

    def open(self, path: str) -> None:
        """Load a page once the api-server answers (other tests may be restarting it)."""
        self.wait_api()
        self.driver.get(self.base_url + path)

    def wait_api(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with urllib.request.urlopen(self.base_url + "/api/v2/monitor/health", timeout=5):
                    return
            except (urllib.error.URLError, OSError) as error:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.base_url} does not answer: {error}") from None
                time.sleep(0.5)

    def wait(self, condition: Callable[[Any], Any], what: str, timeout: float | None = None) -> Any:
        """Until `condition(driver)` is truthy; its value. The failure says what was awaited,
        where the browser was, and what the page said."""
        from selenium.common.exceptions import StaleElementReferenceException, TimeoutException

        try:
            return self._wait(
                self.driver,
                timeout or self.timeout,
                poll_frequency=0.2,
                # React re-renders replace elements under a condition's feet: look again.
                ignored_exceptions=(StaleElementReferenceException,),
            ).until(condition)
        except TimeoutException:
            raise AssertionError(
                f"timed out after {timeout or self.timeout:.0f}s waiting for {what} at "
                f"{self.driver.current_url}; page text:\n{self.text()[:3000]}"
            ) from None

    def css(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def by_id(self, element_id: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.ID, element_id)

    def reveal(self, elements: list[Any]) -> None:
        """Scroll the first of `elements` (if any) into view, inner scroll boxes included."""
        if elements:
            self.script(
                "arguments[0].scrollIntoView({block: 'center', inline: 'center'})", elements[0]
            )

    def hover(self, element: Any) -> None:
        """Mouse over `element`, revealed first: the pointer does not scroll an inner scroll
        box (the grid's run columns) by itself."""
        from selenium.webdriver.common.action_chains import ActionChains

        self.reveal([element])
        ActionChains(self.driver).move_to_element(element).perform()

    def xpath(self, expression: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.XPATH, expression)

    def text(self) -> str:
        try:
            return self.driver.execute_script("return document.body ? document.body.innerText : ''")
        except Exception as error:  # only for failure messages
            return f"(no page text: {error})"

    def script(self, source: str, *args: Any) -> Any:
        return self.driver.execute_script(source, *args)

    def screenshot(self, name: str) -> Path:
        path = screenshot_dir() / name
        if not self.driver.save_screenshot(str(path)):
            raise AssertionError(f"chromium wrote no screenshot to {path}")
        print(f"screenshot: {path}")
        return path


@contextmanager
def chromium(base_url: str, timeout: float = 60.0) -> Iterator[Browser]:
    """A headless Chromium with a fresh profile, closed (and its profile removed) afterwards."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        unavailable(f"selenium is not installed ({error}); pip install selenium")
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(binary, os.X_OK):
            unavailable(f"{binary} not found: apt-get install {package}")

    profile = tempfile.mkdtemp(prefix="jobforge-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        # --window-size sizes the window; the viewport (what a screenshot shows) is smaller.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )
        yield Browser(driver, base_url, timeout)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
