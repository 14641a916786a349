"""The OpenAPI document covers every route; the docs and dashboard pages are self-contained."""
import re
from pathlib import Path

import pytest

from chalicelib.api import apidocs, dashboard
from chalicelib.core.errors import NotFound


def test_every_route_of_the_app_is_in_the_spec_with_its_methods():
    from app import app

    spec = apidocs.openapi_spec()["paths"]
    for path, entry in app.routes.items():
        if path == "/":
            continue  # a redirect to /dashboard
        assert path in spec, path
        assert {m.lower() for m in entry} <= set(spec[path]), path


def test_open_routes_need_no_key_and_the_rest_do():
    spec = apidocs.openapi_spec()["paths"]
    open_paths = {"/v1/health", "/openapi.json", "/docs", "/docs/{asset}", "/dashboard"}
    for path, operations in spec.items():
        for method, operation in operations.items():
            assert bool(operation["security"]) == (path not in open_paths), (method, path)
            if operation["security"]:
                assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)


def test_docs_page_is_swagger_ui_from_the_vendored_files_by_relative_urls():
    page = apidocs.docs_html()
    assert 'src="docs/swagger-ui-bundle.js?v=' in page and 'href="docs/swagger-ui.css?v=' in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "validatorUrl: null" in page


def test_the_vendored_swagger_ui_files_are_served_with_their_types():
    script, script_type = apidocs.swagger_ui_asset("swagger-ui-bundle.js")
    style, style_type = apidocs.swagger_ui_asset("swagger-ui.css")
    assert "SwaggerUIBundle" in script and script_type.startswith("text/javascript")
    assert ".swagger-ui" in style and style_type.startswith("text/css")


@pytest.mark.parametrize("name", ["LICENSE", "../apidocs.py", "README.md", ""])
def test_nothing_else_is_served_as_a_docs_asset(name):
    with pytest.raises(NotFound):
        apidocs.swagger_ui_asset(name)


def test_dashboard_is_one_page_with_the_chart_library_inlined_and_nothing_external():
    page = dashboard.html()
    assert not re.search(r"/\*[A-Z_]+\*/", page)  # every placeholder was filled
    assert f"uPlot (v{dashboard.UPLOT_VERSION})" in page
    assert len(page.encode()) < 100_000  # uPlot is about 51 KB of it
    assert not re.search(r"(src|href)=[\"']https?://", page)
    assert "innerHTML" not in page  # data is set as text, never parsed as HTML


def test_dashboard_requests_only_relative_urls_so_it_works_under_a_path_prefix():
    script = (Path(dashboard.__file__).parent / "app.js").read_text()
    calls = re.findall(r"api\(\s*[`\"']([^`\"']*)", script)
    assert calls and all(not c.startswith(("/", "http")) for c in calls), calls
    assert "fetch(path" in script and script.count("fetch(") == 1  # every request goes through api()


def test_an_inlined_file_that_would_close_its_element_early_is_refused(monkeypatch, tmp_path):
    evil = tmp_path / "evil.js"
    evil.write_text("var s = '</script><script>alert(1)';")
    monkeypatch.setitem(dashboard.PARTS, "SCRIPT", evil)
    dashboard.html.cache_clear()
    try:
        with pytest.raises(ValueError, match="evil.js"):
            dashboard.html()
    finally:
        dashboard.html.cache_clear()


@pytest.mark.parametrize("name", ["pay", "ünïcode api", "team-a:acme", "a" * 200, "", "new\nline", "tab\there",
                                  "nul\x00", "del\x7f", "bell\x07"])
def test_the_specs_name_parameters_allow_what_the_api_allows(name):
    """The path parameters' schema says which names the API refuses with 400, so a client (or a
    property test) generating from the spec sends names the API takes."""
    from chalicelib.api.apidocs import CONSUMER, SERVICE
    from chalicelib.core.quotas import is_consumer_name, is_service_name

    for parameter, allowed in ((SERVICE, is_service_name), (CONSUMER, is_consumer_name)):
        schema = parameter["schema"]
        # \Z: ECMA's $ ends the string; Python's would also match before a final newline
        by_spec = (schema["minLength"] <= len(name) <= schema["maxLength"]
                   and re.search(schema["pattern"].replace("$", r"\Z"), name) is not None)
        assert by_spec == allowed(name), (parameter["name"], name)


def test_the_listings_link_to_their_members_operations():
    """GET /v1/services and /v1/consumers link to the member routes (a client, or schemathesis's
    stateful phase, follows them with a name the listing gave): each link names a real operation
    and fills its one path parameter from the listing's items."""
    spec = apidocs.openapi_spec()
    for listing, items, key in (("/v1/services", "services", "service"), ("/v1/consumers", "consumers", "consumer")):
        links = spec["paths"][listing]["get"]["responses"]["200"]["links"]
        assert len(links) >= 2
        for link in links.values():
            path = link["operationRef"].removeprefix("#/paths/").removesuffix("/get").replace("~1", "/").replace("~0", "~")
            assert path.startswith(listing + "/{" + key + "}") and "get" in spec["paths"][path]
            assert [p["name"] for p in spec["paths"][path]["get"]["parameters"] if p["in"] == "path"] == [key]
            assert link["parameters"] == {key: f"$response.body#/{items}/0/{key}"}

