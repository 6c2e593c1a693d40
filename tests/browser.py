"""A real headless Chromium (Debian's `chromium` package) driven by Playwright, with the network cut off except
127.0.0.1: every request elsewhere is aborted and recorded, as are failed requests and console errors (a
Content-Security-Policy violation is one), so a test can assert a page needs nothing from outside the server.

Install: `apt-get install chromium` (README, "Tests"); without it the browser tests skip with one line saying so.
Set DOMAIN_LLM_SCREENSHOTS=docs to (re)write the README's screenshots while the tests run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

LOCAL_HOSTS = {"127.0.0.1"}


def chromium_path() -> str:
    path = os.environ.get("DOMAIN_LLM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("browser tests need Chromium: `apt-get install chromium` (or set DOMAIN_LLM_CHROMIUM)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("browser tests need playwright: `pip install -e '.[dev]'`")
    return path


@dataclass
class PageLog:
    blocked: list[str] = field(default_factory=list)       # requests to anywhere but 127.0.0.1
    failed: list[str] = field(default_factory=list)        # requests that failed (blocked ones included)
    console_errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.blocked, f"requests left the server: {self.blocked}"
        assert not self.failed, f"failed requests: {self.failed}"
        assert not self.console_errors, f"console errors: {self.console_errors}"


@contextmanager
def offline_page(width: int = 1280, height: int = 900) -> Iterator[tuple[object, PageLog]]:
    """(page, log): a fresh browser page whose network reaches 127.0.0.1 only."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    log = PageLog()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": width, "height": height})

            def route(route) -> None:
                url = route.request.url
                if url.startswith(("data:", "blob:", "about:")) or urlparse(url).hostname in LOCAL_HOSTS:
                    route.continue_()
                else:
                    log.blocked.append(url)
                    route.abort("blockedbyclient")

            context.route("**/*", route)
            page = context.new_page()
            page.on("requestfailed", lambda r: log.failed.append(f"{r.url} ({r.failure})"))
            page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
            page.set_default_timeout(30_000)
            yield page, log
        finally:
            browser.close()


def wait_until(condition, timeout_s: float = 30.0, interval_s: float = 0.1):
    """Poll `condition()` from Python: the pages' CSP forbids the string evaluation that Playwright's
    wait_for_function relies on (which is the point of the CSP)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            assert value, "condition not met in time"
            return value
        time.sleep(interval_s)


def screenshot(page, name: str, tmp_path: Path) -> Path:
    """Save a screenshot in tmp_path, and under $DOMAIN_LLM_SCREENSHOTS when set (the README's images)."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("DOMAIN_LLM_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(target) / name)
    assert path.stat().st_size > 10_000, "a screenshot of a rendered page"
    return path
