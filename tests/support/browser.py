"""One headless Chromium (Debian's, driven by Playwright) for the UI tests, and the one retry they may take.

Chromium aborts every request in flight with `net::ERR_NETWORK_CHANGED` when any interface of the host comes or
goes. CI runs its legs side by side, and each creates and removes Docker networks (bridges, veths) all the time, so
a page load can be cut by a neighbour's network, not by the service under test. `drive` therefore runs the whole
scenario again in a fresh page, at most `ATTEMPTS` times, only when Chromium itself reported that error during the
failed attempt; any other failure (an assertion, a timeout, a refused file) fails at once, as it should.
"""
from collections.abc import Callable

from ops.engine import testenv

# What Chromium needs to run headless as root in a container-less sandbox with no network of its own.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"
ATTEMPTS = 3


def drive(scenario: Callable, viewport: dict | None = None):
    """Run `scenario(page)` in a fresh page of a fresh headless Chromium; return what it returns. A failed attempt
    during which Chromium reported the host's network changed is run again (see the module docstring)."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    testenv.ensure_host_packages()
    with sync_playwright() as pw:
        for attempt in range(1, ATTEMPTS + 1):
            browser = pw.chromium.launch(executable_path=testenv.CHROMIUM, args=CHROMIUM_ARGS)
            cut: list[str] = []
            try:
                page = browser.new_page(viewport=viewport or {"width": 1280, "height": 720})
                page.on("requestfailed", lambda r, cut=cut: cut.append(r.url) if NETWORK_CHANGED in (r.failure or "")
                        else None)
                return scenario(page)
            except (AssertionError, PlaywrightError):
                if not cut or attempt == ATTEMPTS:
                    raise
                print(f"browser: attempt {attempt} cut by the host's network changing ({len(cut)} requests, "
                      f"first {cut[0]}); running the scenario again")
            finally:
                browser.close()
    raise AssertionError("unreachable")  # the loop returns or raises
