"""The console in a real browser (headless Chromium driven by Selenium), as issue 22 asks: sign in,
review ten queued predictions with the keyboard only (checked in the database, timed from the key
press to the database row), undo, bulk-label a grid, classify an uploaded file, promote and roll
back a canary as admin, a review-only key sees no model actions, a form without its CSRF token is
refused, signed-out requests go to sign-in; axe-core finds no serious or critical violation on any
page; no Content-Security-Policy violation; screenshots of every page at 1280×800 in
``test-artifacts/console/``. One browser for the module."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sqlalchemy import select

from imgclf.registry.store import Registry
from imgclf.storage.models import Prediction
from tests.conftest import SHARED_DATA
from tests.console.browser import csp_reports, save_json, screenshot, serious_violations, start_browser
from tests.console.site import CLASSES, MODEL, console_site, picture, seed_predictions

# p95 from a key press to the decision's database row; the figure is 150 ms on this machine. The test
# records the measured figures in test-artifacts/console/keyboard_timing.json and fails only far above the
# target, so a busy shared machine does not fail it (benchmarks/console.py measures it on purpose).
DECISION_P95_LIMIT_MS = 600


@pytest.fixture(scope="module")
def site(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The console with 90 seeded predictions; their images are real cats and dogs photos when ../shared has
    them (the screenshots in the README), else drawn pictures."""
    root = tmp_path_factory.mktemp("console-browser")
    folders = [SHARED_DATA / "cats_dogs" / "validation" / label for label in ("cats", "dogs")]
    photos = [p.read_bytes() for folder in folders if folder.is_dir() for p in sorted(folder.iterdir())[:12]]
    with console_site(root, f"sqlite:///{root / 'imgclf.db'}") as running:
        running.seeded = seed_predictions(running, 90, photos=photos or None)  # type: ignore[attr-defined]
        yield running


@pytest.fixture(scope="module")
def driver():  # type: ignore[no-untyped-def]
    browser = start_browser()
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def audit():  # type: ignore[no-untyped-def]
    """Pages checked with axe-core: {page: serious or critical violations}; all must be empty."""
    found: dict[str, list] = {}  # type: ignore[type-arg]
    yield found
    save_json("axe", found)


def _by(kind: str):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    return getattr(By, kind)


def _wait(driver, condition, timeout: float = 15):  # type: ignore[no-untyped-def]
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)  # while a page is being replaced
    return WebDriverWait(driver, timeout, poll_frequency=0.01, ignored_exceptions=ignored).until(condition)


def _keys(driver, *keys: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def _check_page(driver, audit, name: str) -> None:  # type: ignore[no-untyped-def]
    """Screenshot, axe-core and CSP checks of the page now shown."""
    screenshot(driver, name)
    audit[name] = serious_violations(driver)
    assert not audit[name], (name, audit[name])
    assert not csp_reports(driver), name


def _sign_in(driver, site, key: str) -> None:  # type: ignore[no-untyped-def]
    driver.get(site.url + "/ui/sign-in")
    driver.delete_all_cookies()
    driver.get(site.url + "/ui/sign-in")
    driver.find_element(_by("ID"), "api_key").send_keys(key)
    driver.find_element(_by("CSS_SELECTOR"), "main form button[type=submit]").click()
    _wait(driver, lambda d: "/ui/sign-in" not in d.current_url)


def _row(site, prediction_id: str):  # type: ignore[no-untyped-def]
    with site.gateway.engine.connect() as connection:
        return connection.execute(select(Prediction).where(Prediction.id == prediction_id)).one()


def _card(driver) -> str | None:  # type: ignore[no-untyped-def]
    return driver.execute_script(
        "const h = document.getElementById('card-title'); return h ? (h.dataset.prediction || null) : null;"
    )


def test_sign_in_and_signed_out_redirects(driver, site, audit):
    driver.get(site.url + "/ui/predictions?label=cat")
    assert "/ui/sign-in?next=/ui/predictions" in driver.current_url
    _check_page(driver, audit, "sign-in")
    driver.find_element(_by("ID"), "api_key").send_keys("ik_00000000_wrong")
    driver.find_element(_by("CSS_SELECTOR"), "main form button[type=submit]").click()
    assert "not valid" in _wait(driver, lambda d: d.find_element(_by("CSS_SELECTOR"), "p.error")).text
    driver.find_element(_by("ID"), "api_key").send_keys(site.key("review", name="Ana"))
    driver.find_element(_by("CSS_SELECTOR"), "main form button[type=submit]").click()
    _wait(driver, lambda d: d.current_url.endswith("/ui/predictions?label=cat"))  # back where they were going
    cookie = driver.get_cookie("imgclf_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui" and "expiry" in cookie
    assert driver.execute_script("return document.cookie") == ""  # invisible to scripts
    driver.find_element(_by("CSS_SELECTOR"), "header form.who button").click()
    _wait(driver, lambda d: "/ui/sign-in" in d.current_url)
    driver.get(site.url + "/ui/review")
    assert "/ui/sign-in?next=/ui/review" in driver.current_url


def test_review_ten_with_the_keyboard_only_then_undo(driver, site, audit):
    _sign_in(driver, site, site.key("review", name="Keyboard"))
    driver.get(site.url + "/ui/review")
    _wait(driver, lambda d: d.execute_script("return !!window.htmx"))
    _check_page(driver, audit, "review")
    plan = ["1", "ENTER", "2", "3", "ENTER", "1", "n", "2", "ENTER", "3"]  # n: a new class, typed
    from selenium.webdriver.common.keys import Keys

    decided, timings = [], []
    for step, key in enumerate(plan):
        item = _card(driver)
        row = _row(site, item)
        expected = {"ENTER": row.label, "n": "lynx"}.get(key) or CLASSES[int(key) - 1]
        if key == "n":
            _keys(driver, "n")
            assert driver.switch_to.active_element.get_attribute("id") == "new-class"
            _keys(driver, "lynx")
            key = "ENTER"
        started = time.perf_counter()
        _keys(driver, Keys.ENTER if key == "ENTER" else key)
        while _row(site, item).review_label is None:  # the interaction reaches the database
            assert time.perf_counter() - started < 10, f"decision {step} never stored"
        timings.append((time.perf_counter() - started) * 1000)
        _wait(driver, lambda d, item=item: _card(d) not in (item, None))  # the next item is shown
        decided.append((item, expected))
        if step == 1:
            skipped = _card(driver)
            _keys(driver, "s")  # skip one: it stays pending and is not shown again on this page
            _wait(driver, lambda d, s=skipped: _card(d) not in (s, None))
            assert _row(site, skipped).review_label is None
    rows = [_row(site, item) for item, _ in decided]
    assert [(r.review_label, r.reviewer) for r in rows] == [(label, "Keyboard") for _, label in decided]
    timing = {"decisions": len(timings), "p50_ms": float(np.percentile(timings, 50)),
              "p95_ms": float(np.percentile(timings, 95)), "max_ms": max(timings), "all_ms": timings}  # fmt: skip
    save_json("keyboard_timing", timing)
    print(f"keyboard decision, key press to database row: p50 {timing['p50_ms']:.0f} ms, p95 {timing['p95_ms']:.0f} ms")
    assert timing["p95_ms"] <= DECISION_P95_LIMIT_MS, timing
    # u takes the last decision back: the item shows again and its row is pending as before.
    last = decided[-1][0]
    _keys(driver, "u")
    _wait(driver, lambda d: _card(d) == last)
    assert _row(site, last).review_label is None and _row(site, last).reviewer is None
    assert "Undone" in driver.find_element(_by("CSS_SELECTOR"), "p.status").text
    # An undo refused because someone else reviewed the item since is said on the page (a 409 fragment).
    _keys(driver, "1")
    _wait(driver, lambda d: _card(d) not in (last, None))
    other = site.client.post(f"/v1/reviews/{last}", json={"label": "fox"},
                             headers={"Authorization": f"Bearer {site.key('review', name='Other')}"})  # fmt: skip
    assert other.status_code == 200
    _keys(driver, "u")
    _wait(driver, lambda d: "Not undone" in d.find_element(_by("CSS_SELECTOR"), "#workspace").text)
    assert _row(site, last).review_label == "fox"
    assert not csp_reports(driver)


def test_bulk_label_a_grid(driver, site, audit):
    _sign_in(driver, site, site.key("review", name="Grid"))
    driver.get(site.url + "/ui/review/grid")
    _wait(driver, lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))
    _check_page(driver, audit, "review-grid")
    boxes = driver.find_elements(_by("CSS_SELECTOR"), 'input[name="ids"]')[:4]
    chosen = [box.get_attribute("value") for box in boxes]
    for box in boxes:
        driver.find_element(_by("CSS_SELECTOR"), f'label[for="{box.get_attribute("id")}"]').click()
    driver.find_element(_by("TAG_NAME"), "h1").click()  # focus off the checkboxes: keys go to the page
    _keys(driver, "2")  # the second class for every selected image
    _wait(driver, lambda d: "Labelled 4 images dog" in d.find_element(_by("CSS_SELECTOR"), "p.status").text)
    assert [(_row(site, i).review_label, _row(site, i).reviewer) for i in chosen] == [("dog", "Grid")] * 4


def test_classify_an_uploaded_file(driver, site, audit, tmp_path):
    _sign_in(driver, site, site.key("predict,review", name="Uploader"))
    driver.get(site.url + "/ui/classify")
    upload = tmp_path / "upload.png"
    upload.write_bytes(picture(4242, size=(128, 96), fmt="PNG"))
    driver.find_element(_by("ID"), "files").send_keys(str(upload))
    driver.find_element(_by("CSS_SELECTOR"), "main form button[type=submit]").click()
    answer = _wait(driver, lambda d: d.find_elements(_by("CSS_SELECTOR"), "#results [data-label]"))
    label = answer[0].text
    _wait(driver, lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))
    _check_page(driver, audit, "classify")
    import hashlib

    digest = hashlib.sha256(upload.read_bytes()).hexdigest()
    with site.gateway.engine.connect() as connection:
        stored = connection.execute(select(Prediction).where(Prediction.image_sha256 == digest)).all()
    assert len(stored) == 1 and stored[0].label == label and stored[0].api_key_id is not None
    # Drag and drop: two images dropped on the drop zone (made by a canvas, carried by a DataTransfer).
    dropped = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const make = (colour) => new Promise(resolve => {
          const canvas = document.createElement('canvas'); canvas.width = 64; canvas.height = 48;
          const context = canvas.getContext('2d'); context.fillStyle = colour; context.fillRect(0, 0, 64, 48);
          canvas.toBlob(blob => resolve(new File([blob], colour.slice(1) + '.png', {type: 'image/png'})), 'image/png');
        });
        Promise.all([make('#3366aa'), make('#aa6633')]).then(files => {
          const transfer = new DataTransfer();
          files.forEach(file => transfer.items.add(file));
          const zone = document.querySelector('[data-drop-for]');
          zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
          done(document.getElementById('files').files.length);
        });
    """)
    assert dropped == 2
    driver.find_element(_by("CSS_SELECTOR"), "main form button[type=submit]").click()
    _wait(driver, lambda d: len(d.find_elements(_by("CSS_SELECTOR"), "#results [data-label]")) == 2)
    driver.find_element(_by("CSS_SELECTOR"), "#results a").click()  # the prediction's page
    _wait(driver, lambda d: "/ui/predictions/" in d.current_url)
    _check_page(driver, audit, "prediction")
    driver.get(site.url + "/ui/predictions")
    _check_page(driver, audit, "predictions")


def test_a_form_without_its_csrf_token_is_refused(driver, site, audit):
    _sign_in(driver, site, site.key("review", name="Forger"))
    target = site.seeded[4]
    driver.get(site.url + f"/ui/predictions/{target}")
    driver.execute_script("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    driver.find_element(_by("ID"), "review-new").send_keys("forged")
    driver.find_element(_by("CSS_SELECTOR"), "main form button[type=submit]").click()
    assert "Request refused" in _wait(driver, lambda d: d.find_element(_by("TAG_NAME"), "h1")).text
    assert _row(site, target).review_label is None


def test_a_review_key_sees_no_model_actions(driver, site, audit):
    _sign_in(driver, site, site.key("review", name="Viewer"))
    driver.get(site.url + "/ui/models")
    assert driver.find_elements(_by("CSS_SELECTOR"), "main button") == []
    assert "admin scope" in driver.find_element(_by("TAG_NAME"), "main").text
    driver.get(site.url + "/ui/models/pets/confirm?action=rollback")
    assert "Not allowed" in driver.find_element(_by("TAG_NAME"), "h1").text


def _act(driver, site, button_text: str) -> None:  # type: ignore[no-untyped-def]
    driver.get(site.url + "/ui/models")
    button = next(b for b in driver.find_elements(_by("CSS_SELECTOR"), "main button") if button_text in b.text)
    button.click()
    _wait(driver, lambda d: "/confirm" in d.current_url)
    confirm = driver.find_element(_by("CSS_SELECTOR"), "button.danger")
    confirm.click()
    _wait(driver, lambda d: "done=" in d.current_url)


def test_promote_and_roll_back_a_canary_as_admin(driver, site, audit):
    registry = Registry(site.gateway.settings.registry)
    _sign_in(driver, site, site.key("admin", name="Root"))
    driver.get(site.url + "/ui/models")
    _check_page(driver, audit, "models")
    share = driver.find_element(_by("ID"), f"share-{MODEL}-8")
    share.clear()
    share.send_keys("0.25")
    next(b for b in driver.find_elements(_by("CSS_SELECTOR"), "main button") if "Start canary" in b.text).click()
    _wait(driver, lambda d: "/confirm" in d.current_url)
    assert "25% of API keys" in driver.find_element(_by("TAG_NAME"), "main").text
    assert registry.state(MODEL).canary is None  # nothing changes before the confirmation
    _check_page(driver, audit, "model-confirm")
    driver.find_element(_by("CSS_SELECTOR"), "button.danger").click()
    _wait(driver, lambda d: "done=canary" in d.current_url)
    assert (registry.state(MODEL).canary, registry.state(MODEL).canary_share) == (8, 0.25)
    _act(driver, site, "Roll back canary")
    assert registry.state(MODEL).canary is None and registry.state(MODEL).stable == 7
    _act(driver, site, "Start canary")
    _act(driver, site, "Promote to stable")
    assert registry.state(MODEL).stable == 8 and registry.state(MODEL).canary is None
    _act(driver, site, "Roll back to version 7")
    assert registry.state(MODEL).stable == 7


def test_monitoring_page(driver, site, audit):
    _sign_in(driver, site, site.key("review", name="Watcher"))
    driver.get(site.url + "/ui/monitoring")
    _wait(driver, lambda d: d.find_elements(_by("CSS_SELECTOR"), "[class^=verdict-]"), timeout=60)
    _wait(driver, lambda d: len(d.find_elements(_by("CSS_SELECTOR"), "svg.chart")) == 3, timeout=60)
    _wait(driver, lambda d: d.execute_script(
        "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"), timeout=60)  # fmt: skip
    _check_page(driver, audit, "monitoring")
