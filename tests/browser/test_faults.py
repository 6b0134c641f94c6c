"""Worker faults (issue #9): an engine worker that dies (closes itself, is terminated) is noticed
even with a call in flight, replaced by a fresh worker that gets the model again, its in-flight
image is retried once and then reported as failed in words; the rest of the batch completes and
the page says what happened.

Faults are injected from the test into the real workers: Playwright's ``page.workers`` finds the
worker by the ``self.vitrineWorkerName`` it publishes, and ``Worker.evaluate`` installs a hook
that closes the worker (``self.close()``) instead of sending its n-th ``classify`` answer: the image
is in flight when the worker dies, deterministically. Probabilities
are compared with TensorFlow's (static/demo/expected.json). No timing assertions.
"""

import pytest

from tests.browser.test_pool import (PLAIN_SAMPLES, add_batch, assert_matches_tensorflow, card_workers, engine_worker,
                                     image_batch, open_pool_page)
from tests.browser.test_workflow import TIMEOUT, screenshot, shown_probabilities, wait

pytestmark = pytest.mark.browser

# Runs inside the worker. PyScript's workers talk to the page over a MessagePort (coincident), not
# through the worker's own "message" events, so the fault hooks the port's postMessage: the n-th
# reply to a classify request is swallowed and the worker closes itself (``self.close()``) instead,
# which is what a crash / out-of-memory kill looks like from the page: the image was sent, its
# answer never comes.
DIE_ON_CLASSIFY = """(n) => {
    let seen = 0;
    const post = MessagePort.prototype.postMessage;
    MessagePort.prototype.postMessage = function (data, transfer) {
        // a reply to one of the page's calls is [id, result, error]; the engine's result is JSON text
        const reply = Array.isArray(data) && typeof data[1] === 'string' ? data[1] : '';
        if (reply.startsWith('{') && reply.includes('"call": "classify"')) {
            seen += 1;
            if (seen >= n) {
                self.close();
                return;
            }
        }
        return post.call(this, data, transfer);
    };
    return self.vitrineWorkerName;
}"""


def results(page):
    """{file: (status, error or None, note or None, worker)} from the result cards."""
    return {card.get_attribute("data-file"): (card.get_attribute("data-status"), card.get_attribute("data-error"),
                                              card.get_attribute("data-note"), card.get_attribute("data-worker"))
            for card in page.query_selector_all("#result-cards article.result-card")}


def pool_events(page):
    return page.inner_text("#pool-events")


def test_pool_worker_dying_mid_batch_is_replaced_and_its_image_retried(site_page):
    page = site_page.page
    open_pool_page(page, site_page.site.origin + "/index.html?workers=2", 2)
    files, origin = image_batch(copies=3)
    add_batch(page, files)
    # the second worker classifies two images, then dies with its third in flight
    assert engine_worker(page, "engine-pool-1").evaluate(DIE_ON_CLASSIFY, 3) == "engine-pool-1"
    page.click("#predict")
    wait(page, "body[data-run-state='done'][data-runs='1']")
    wait(page, "body[data-worker-replacements='1'][data-pool-ready='2']")

    assert page.get_attribute("body", "data-worker-deaths") == "1"
    outcome = results(page)
    assert set(outcome) == set(origin)
    assert all(status == "ok" for status, *_ in outcome.values()), outcome
    assert_matches_tensorflow(shown_probabilities(page), origin)
    retried = {name: r for name, r in outcome.items() if r[2]}
    assert len(retried) == 1, retried  # exactly the image that was in flight
    (name, (status, error, note, worker)), = retried.items()
    assert "engine worker 2 stopped while classifying this image; retried" in note
    assert worker != "engine-pool-1"  # the retry ran on a live worker
    assert "retried" in page.inner_text(f"#result-cards article[data-file='{name}'] .result-summary")
    assert sum(1 for r in outcome.values() if r[3] == "engine-pool-1") == 2
    events = pool_events(page)
    assert "Engine worker 2 (engine-pool-1) stopped" in events
    assert f"Image {name} was in flight on engine worker 2" in events
    assert "Engine worker 2 stopped; replaced by a fresh worker (engine-pool-2), the model is loaded again." in events
    screenshot(page, "fault-worker-replaced-1366.png")

    # the replacement works: a second run uses it and is still right
    page.click("#predict")
    wait(page, "body[data-run-state='done'][data-runs='2']")
    assert_matches_tensorflow(shown_probabilities(page), origin)
    assert set(card_workers(page).values()) == {"engine", "engine-pool-2"}


def test_image_in_flight_when_two_workers_die_is_reported_failed_and_the_pool_recovers(site_page):
    page = site_page.page
    open_pool_page(page, site_page.site.origin + "/index.html?workers=2", 2)
    files, origin = image_batch(copies=1)
    name = files[0]["name"]
    add_batch(page, files[:1])
    # whichever worker takes the image dies; the retry goes to the other one, which dies too
    for worker_name in ("engine", "engine-pool-1"):
        engine_worker(page, worker_name).evaluate(DIE_ON_CLASSIFY, 1)
    page.click("#predict")
    wait(page, "body[data-run-state='done'][data-runs='1']")
    wait(page, "body[data-worker-replacements='2'][data-pool-ready='2']")

    assert page.get_attribute("body", "data-worker-deaths") == "2"
    (status, error, note, worker), = results(page).values()
    assert status == "error"
    assert "the engine worker stopped twice while classifying this image" in error, error
    assert "engine worker 1, then 2" in error or "engine worker 2, then 1" in error, error
    row = page.locator(f"#results-table tbody tr[data-file='{name}']")
    assert "stopped twice" in row.get_attribute("data-error")
    assert "1 failed" in page.inner_text("#predict-status")
    events = pool_events(page)
    assert "Engine worker 1 (engine) stopped" in events and "Engine worker 2 (engine-pool-1) stopped" in events
    assert f"Image {name} was in flight on engine worker" in events
    assert "reported as failed, not retried again" in events
    screenshot(page, "fault-image-failed-twice-1366.png")

    # both replacements (a new primary engine-1 and engine-pool-2) have the model and work
    assert page.get_attribute("body", "data-engine-name") == "engine-1"
    add_batch(page, files[1:], ready=len(files))  # the failed image stays in the list: all eight samples
    page.click("#predict")
    wait(page, "body[data-run-state='done'][data-runs='2']")
    assert_matches_tensorflow(shown_probabilities(page), origin)
    assert set(card_workers(page).values()) == {"engine-1", "engine-pool-2"}


def test_terminated_idle_engine_is_replaced_with_the_model_loaded(site_page):
    page = site_page.page
    open_pool_page(page, site_page.site.origin + "/index.html?workers=1", 1)
    page.evaluate("""() => document.querySelector('script[type="py"][worker][name="engine"]').xworker.terminate()""")
    wait(page, "body[data-worker-deaths='1']")
    wait(page, "body[data-worker-replacements='1'][data-pool-ready='1'][data-engine-state='ready']")
    assert page.get_attribute("body", "data-engine-name") == "engine-1"
    assert "Engine worker 1 stopped; replaced by a fresh worker (engine-1), the model is loaded again." in pool_events(page)
    files, origin = image_batch(copies=1)
    add_batch(page, files[:len(PLAIN_SAMPLES)])
    page.click("#predict")
    wait(page, "body[data-run-state='done'][data-runs='1']")
    assert_matches_tensorflow(shown_probabilities(page), origin)
    assert set(card_workers(page).values()) == {"engine-1"}
    # explain / chart calls go to the new primary: the batch chart was drawn
    assert page.locator("#batch-chart svg").count() == 1
    page.wait_for_selector("#result-cards article svg", state="attached", timeout=TIMEOUT)
