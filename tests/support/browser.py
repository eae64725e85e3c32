"""Headless Chromium (Debian's package) driven by Selenium through Debian's chromedriver, for
tests that use a page as a person would. Screenshots go to build/console-screenshots (kept as
the run's artifacts) and, with FERRY_DOCS_SCREENSHOTS=FOLDER, also to FOLDER for the docs."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "console-screenshots"


def chromium_paths() -> tuple[str, str]:
    """Chromium and its driver; installed by ./scripts/tools (a missing one fails the test)."""
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    assert browser and driver, "chromium or chromedriver is missing: run ./scripts/tools"
    return browser, driver


class Browser:
    def __init__(self, authorization: str = "") -> None:
        browser, driver = chromium_paths()
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,860",
            "--lang=en-US",
        ):
            options.add_argument(argument)
        self.driver = webdriver.Chrome(service=Service(driver), options=options)
        self.driver.set_page_load_timeout(20)
        if authorization:  # every request of the page carries the credentials, XHR included
            self.driver.execute_cdp_cmd("Network.enable", {})
            self.driver.execute_cdp_cmd(
                "Network.setExtraHTTPHeaders", {"headers": {"Authorization": authorization}}
            )

    def open(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def wait_for_text(self, needle: str, timeout: float = 20.0, reload: bool = False) -> str:
        """Until the page shows `needle` (by its own polling, or by reloading when asked)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                shown = self.text()
            except WebDriverException:
                shown = ""
            if needle in shown:
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never showed {needle!r}; it shows:\n{shown}")
            time.sleep(0.2)
            if reload:
                self.driver.refresh()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        if docs := os.environ.get("FERRY_DOCS_SCREENSHOTS"):
            Path(docs).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(docs) / path.name)
        return path

    def close(self) -> None:
        self.driver.quit()
