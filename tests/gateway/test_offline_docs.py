"""The API docs work on a machine without internet (issue 19 item 9): ``/docs`` and ``/redoc`` load
Swagger UI and ReDoc from the gateway itself (no CDN, no Google Fonts), with and without
``IMGCLF_DOCS_REQUIRE_KEY``; the assets need no key. The OpenAPI descriptions are Markdown, so no
reStructuredText double backticks show up as text in the docs."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from tests.gateway.conftest import gateway_settings, running_gateway
from tests.helpers import assert_error, bearer

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "imgclf" / "gateway" / "static"

# What each asset must look like: content type fragment, smallest plausible size, a string it holds.
KINDS = {
    ".js": ("javascript", 100_000, None),
    ".css": ("text/css", 10_000, None),
    ".png": ("image/png", 100, b"\x89PNG"),
}
LIBRARY = {"/docs": b"SwaggerUIBundle", "/redoc": b"Redoc"}


class References(HTMLParser):
    """Every URL a page makes the browser load: src and href attributes, and ReDoc's spec-url."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "spec-url") and value]


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("require_key", [False, True], ids=["open", "docs_require_key"])
def test_docs_load_everything_from_the_gateway(require_key, cats_dogs_registry, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}",
                                docs_require_key=require_key)  # fmt: skip
    with running_gateway(settings) as gw:
        key = bearer(gw.key("predict")) if require_key else {}
        gateway = urlsplit(gw.url).netloc
        for page, library in LIBRARY.items():
            response = gw.client.get(page, headers=key)
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
            html = response.text
            for host in ("cdn.jsdelivr.net", "unpkg.com", "fonts.googleapis.com", "fonts.gstatic.com",
                         "fastapi.tiangolo.com"):  # fmt: skip
                assert host not in html, (page, host)
            for url in re.findall(r"""(?:https?:)?//[^\s"'<>)\\]+""", html):
                assert urlsplit(url).netloc == gateway, (page, url)  # nothing outside the gateway
            urls = references(html)
            assets = [u for u in urls if not u.endswith("/openapi.json")]
            assert len(assets) >= (3 if page == "/docs" else 2), (page, urls)  # script, stylesheet, icon
            seen_library = False
            for url in assets:
                absolute = urljoin(gw.url + page, url)
                assert urlsplit(absolute).netloc == gateway, (page, url)
                asset = gw.client.get(absolute)  # public library files: no key, even behind IMGCLF_DOCS_REQUIRE_KEY
                assert asset.status_code == 200, (page, url, asset.status_code)
                content_type, least, magic = KINDS[Path(urlsplit(absolute).path).suffix]
                assert content_type in asset.headers["content-type"], (url, asset.headers["content-type"])
                assert len(asset.content) >= least, (url, len(asset.content))
                assert magic is None or asset.content.startswith(magic), url
                seen_library = seen_library or library in asset.content
            assert seen_library, f"{page} loads no {library.decode()} script"
            spec_urls = [u for u in urls if u.endswith("/openapi.json")]
            for url in spec_urls:  # ReDoc fetches the document; Swagger UI has it inline
                assert gw.client.get(urljoin(gw.url + page, url), headers=key).status_code == 200
        for path in ("/docs-static/nothing.js", "/docs-static/..%2F__init__.py", "/docs-static/"):
            assert_error(gw.client.get(path), 404, "not_found")


def test_asset_paths_are_package_data():
    """Every vendored file ships in the wheel (pyproject's package-data), not only in a checkout."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["imgclf"]
    files = [p.relative_to(ROOT / "src" / "imgclf").as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert any(f.endswith(".js") for f in files) and any(f.endswith(".css") for f in files)
    for name in files:
        assert any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns), name
    licenses = {p.parent.name for p in STATIC.rglob("LICENSE")}
    assert licenses == {p.parent.name for p in STATIC.rglob("*.js")}, "a vendored library without its LICENSE"


def test_openapi_descriptions_are_markdown(cats_dogs_registry, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}")
    with running_gateway(settings) as gw:
        text = gw.client.get("/openapi.json").text
        assert "``" not in text
        assert "multipart `files`" in text  # the predict route's description, now in Markdown


def test_every_schema_reference_in_the_openapi_document_resolves(cats_dogs_registry, tmp_path):
    """`POST /v1/predict`'s JSON body pointed at a component schema nobody defined (Swagger showed an error)."""
    import json as json_module

    with running_gateway(gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}")) as gw:
        document = gw.client.get("/openapi.json").json()
    text = json_module.dumps(document)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))
    assert refs and refs <= set(document["components"]["schemas"]), refs - set(document["components"]["schemas"])
    body = document["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["images"]
