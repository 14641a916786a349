"""/docs in headless Chromium against `chalice local`: Swagger UI loads from the vendored files
with no request beyond 127.0.0.1, and "Try it out" calls succeed, open and with an x-api-key.
A screenshot is kept in test-artifacts/docs.png."""
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.browser import Browser, RecordingProxy
from tests.support.keyed_api import keyed_api

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
READ_KEY = "docs-browser-read-key"

# Polls the page like a person waiting for it; returns what ``check()`` returned first (truthy).
WAIT_FOR = """
window.waitFor = (check, ms = 20000) => new Promise((resolve, reject) => {
  const started = Date.now();
  (function poll() {
    let value; try { value = check(); } catch (e) { value = null; }
    if (value) return resolve(value);
    if (Date.now() - started > ms) return reject(new Error("timed out waiting for " + check));
    setTimeout(poll, 100);
  })();
});
"""

# The clicks a person makes: open the operation, "Try it out" (unless it is on), "Clear" an
# earlier answer, "Execute"; then the live response's code and body.
TRY_IT_OUT = """
window.tryItOut = async (path) => {
  const operation = await waitFor(() => [...document.querySelectorAll(".opblock-get")].find(
    el => el.querySelector(".opblock-summary-path").textContent.replace(/\\u200b/g, "") === path));
  if (!operation.classList.contains("is-open")) operation.querySelector(".opblock-summary-control").click();
  if (!operation.querySelector(".btn.execute")) (await waitFor(() => operation.querySelector(".try-out__btn"))).click();
  const clear = operation.querySelector(".btn-clear");
  if (clear) clear.click();
  await waitFor(() => !operation.querySelector(".live-responses-table"));
  (await waitFor(() => operation.querySelector(".btn.execute"))).click();
  const status = await waitFor(() => operation.querySelector(".live-responses-table tr.response .response-col_status"));
  const body = operation.querySelector(".live-responses-table tr.response .response-col_description pre");
  return {status: status.textContent.trim(), body: body ? body.textContent : ""};
};
"""


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with keyed_api(tmp_path_factory.mktemp("docs"), {"API_KEYS": f"{READ_KEY}:read"}) as running:
        yield running


@pytest.fixture(scope="module")
def docs(api):
    proxy = RecordingProxy()
    browser = Browser(proxy)
    try:
        browser.navigate(f"{api.url}/docs")
        browser.evaluate(WAIT_FOR + TRY_IT_OUT)
        browser.evaluate("waitFor(() => document.querySelectorAll('.opblock').length > 10).then(() => true)")
        yield browser, proxy
    finally:
        browser.close()
        proxy.close()


def test_swagger_ui_renders_every_operation_of_the_spec(docs, api):
    browser, _ = docs
    spec = requests.get(f"{api.url}/openapi.json", timeout=10).json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    assert browser.evaluate("document.querySelectorAll('.opblock').length") == operations
    assert browser.evaluate("document.querySelector('.info .title').textContent").startswith("Bandwidth Meter API")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(ARTIFACTS / "docs.png")


def test_try_it_out_on_health_succeeds(docs):
    browser, _ = docs
    answer = browser.evaluate("tryItOut('/v1/health')")
    assert answer["status"] == "200" and '"status": "ok"' in answer["body"]


def test_try_it_out_sends_the_key_given_to_authorize(docs):
    browser, _ = docs
    assert browser.evaluate("tryItOut('/v1/collector/status')")["status"] == "401"
    browser.evaluate(f"ui.preauthorizeApiKey('ApiKey', {READ_KEY!r}); true")
    answer = browser.evaluate("tryItOut('/v1/collector/status')")
    assert answer["status"] == "200" and '"watermark"' in answer["body"]


def test_the_page_requests_nothing_beyond_loopback(docs, api):
    browser, proxy = docs
    requested = browser.page_requests()
    assert {urlsplit(url).path for url in requested} >= {
        "/docs", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/openapi.json"}
    assert [url for url in requested if not url.startswith(f"{api.url}/") and not url.startswith("data:")] == []
    # and all of it went through the proxy that forwards nothing else
    assert f"{api.url}/docs/swagger-ui-bundle.js?v=5.35.0" in proxy.requests
