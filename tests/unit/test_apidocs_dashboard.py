"""The OpenAPI document covers every route; the docs and dashboard pages are self-contained."""
import re


from chalicelib.api import apidocs
from chalicelib.api import dashboard


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
    open_paths = {"/v1/health", "/openapi.json", "/docs", "/dashboard"}
    for path, operations in spec.items():
        for method, operation in operations.items():
            assert bool(operation["security"]) == (path not in open_paths), (method, path)
            if operation["security"]:
                assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)


def test_docs_page_lists_every_operation_and_loads_nothing_external():
    page = apidocs.docs_html()
    assert page.count("<section>") == sum(len(ops) for ops in apidocs.openapi_spec()["paths"].values())
    assert not re.search(r"(src|href)=\"https?://", page)


def test_dashboard_is_one_small_page_without_external_references():
    page = dashboard.html()
    assert "/*SCRIPT*/" not in page and "/*STYLE*/" not in page
    assert len(page.encode()) < 60_000
    assert not re.search(r"(src|href)=[\"']https?://", page)
    assert "innerHTML" not in page  # data is set as text, never parsed as HTML
