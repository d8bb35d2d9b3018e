"""The demo page end to end: the real server (`coldrec serve`) in a subprocess, driven by headless Chromium.

The server runs on a small generated shop (tests/synthetic.py) with the fake encoder, so it
starts in seconds; the page talks to it exactly as in `make demo`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from coldrec.serve.process import free_port, start_server, stop_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[1]
ID_KEY = "e2e-test-key"
TIMEOUT_MS = 10_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} missing: install the Debian packages chromium and chromium-driver (.ci/run does)",
)


def _build_model(out: Path) -> None:
    """What `coldrec build` writes (out/model, out/state/coldrec.sqlite), on the generated shop."""
    from coldrec.serve.engine import Engine
    from coldrec.serve.store import Store
    from coldrec.serve.synthetic import HashingEncoder
    from tests.synthetic import make_catalog, make_log

    catalog, log = make_catalog(), make_log()
    Engine.build(catalog, log, encoder=HashingEncoder(256), now=int(time.time())).save(out / "model")
    store = Store.open(out / "state", ID_KEY)
    store.seed(catalog, log)
    store.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    _build_model(out)
    port = free_port()
    env = {**os.environ, "COLDREC_ID_KEY": ID_KEY, "PYTHONPATH": str(ROOT)}  # PYTHONPATH: the pickled fake encoder
    try:
        process = start_server(["--model", str(out)], port, out / "server.log", env=env, cwd=out, timeout=60)
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _recommended_ids(page) -> list[str]:
    return page.eval_on_selector_all("#recommendations [data-testid=product-card]", "cs => cs.map(c => c.dataset.itemId)")


def _wait_for_refresh(page, after: int) -> None:
    page.wait_for_function(f"Number(document.getElementById('recommendations').dataset.generation || 0) > {after}",
                           timeout=TIMEOUT_MS)


def _generation(page) -> int:
    return int(page.get_attribute("#recommendations", "data-generation") or 0)


def test_demo_interests_clicks_and_search(server, browser):
    from playwright.sync_api import expect

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server}/?user=e2e-shopper")
    page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT_MS)
    expect(page.get_by_test_id("user-id")).to_have_value("e2e-shopper")
    recommendations = page.locator("#recommendations [data-testid=product-card]")
    expect(recommendations.first).to_be_visible(timeout=TIMEOUT_MS)

    # choose an interest: recommendations that match it, saying so
    chip = page.locator("[data-testid=interest][data-category='Electronics']")
    generation = _generation(page)
    chip.click()
    expect(chip).to_have_attribute("aria-pressed", "true")
    _wait_for_refresh(page, generation)
    reasons = page.locator("#recommendations [data-testid=reason]")
    expect(reasons.filter(has_text="matches your interest Electronics").first).to_be_visible(timeout=TIMEOUT_MS)
    assert not reasons.filter(has_text="because you viewed").count()

    # search outside that interest: results appear
    generation = _generation(page)
    page.get_by_test_id("search-input").fill("stapler")
    page.get_by_test_id("search-input").press("Enter")
    results = page.locator("#search-results [data-testid=product-card]")
    expect(results.first).to_contain_text("stapler", timeout=TIMEOUT_MS)

    # click a product: the recommendations change and explain themselves by that view
    _wait_for_refresh(page, generation)  # the search's own refresh is done
    before = _recommended_ids(page)
    generation = _generation(page)
    title = results.first.locator(".title").inner_text()
    results.first.click()
    _wait_for_refresh(page, generation)
    expect(reasons.filter(has_text=f"because you viewed {title}").first).to_be_visible(timeout=TIMEOUT_MS)
    assert _recommended_ids(page) != before
    expect(page.get_by_test_id("history")).to_contain_text(f"viewed {title}")

    # forget me: the page reports the erasure, and the user's events are gone server-side
    page.get_by_test_id("forget").click()
    expect(page.get_by_test_id("status")).to_contain_text("Erased", timeout=TIMEOUT_MS)
    assert httpx.delete(f"{server}/users/e2e-shopper").json()["events"] == 0
    assert not errors, errors
    page.close()

