"""A real browser for the web page's end-to-end tests: Playwright (the only module that
imports it) driving Debian's chromium, headless and with no network of its own (installed
by `scripts/test`; never `playwright install`, which would download a browser).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, Route, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Test artefacts (gitignored): what the page looked like, for a person to check.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

__all__ = ["Page", "close_network", "expect", "open_page", "screenshot"]

# A page on a loaded test machine may take a while to render: a generous ceiling for every
# `expect` (its default is 5 s; `Page.set_default_timeout` does not cover it).
expect.set_options(timeout=30_000)


@contextmanager
def open_page(base_url: str) -> Iterator[Page]:
    """A fresh browser page (its own cookies) on the app at `base_url`."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        try:
            context = browser.new_context(
                base_url=base_url, viewport={"width": 1280, "height": 860}
            )
            context.grant_permissions(["clipboard-read", "clipboard-write"])
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
            context.close()
        finally:
            browser.close()


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def close_network(page: Page, origin: str) -> list[str]:
    """Abort every request of `page` to anywhere but `origin` (the app), as on a machine
    with no Internet access; returns the list of the aborted URLs, filled as they come."""
    aborted: list[str] = []

    def only_the_app(route: Route) -> None:
        url = route.request.url
        if url == origin or url.startswith(origin.rstrip("/") + "/"):
            route.continue_()
        else:
            aborted.append(url)
            route.abort()

    page.context.route("**/*", only_the_app)
    return aborted
