"""The web console over HTTP (no browser): sessions, CSRF, CSP, images, review decisions and undo,
grid labelling, prediction history, classify, models actions and monitoring (issue 22).
The browser scenarios are in ``test_console_browser.py``."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select, update

from imgclf.gateway.console.security import SESSION_COOKIE, Sessions
from imgclf.registry.store import Registry
from imgclf.storage.models import Prediction
from tests.console.site import CLASSES, MODEL, console_site, person, picture, seed_predictions

PAGES = ["/ui/review", "/ui/review/grid", "/ui/predictions", "/ui/classify", "/ui/models", "/ui/monitoring"]


def _row(site, prediction_id: str) -> Prediction:  # type: ignore[no-untyped-def]
    with site.gateway.engine.connect() as connection:
        return connection.execute(select(Prediction).where(Prediction.id == prediction_id)).one()


def _form_value(html: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', html).group(1)  # type: ignore[union-attr]


def _card(html: str) -> str:
    return re.search(r'data-prediction="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]


def _signed_in(site, scopes: str, name: str = "tester"):  # type: ignore[no-untyped-def]
    someone = person(site)
    assert someone.sign_in(site.key(scopes, name=name)).status_code == 303
    return someone


def test_signed_out_requests_redirect_to_sign_in(site):
    client = httpx.Client(base_url=site.url)
    sha = _row(site, site.seeded[0]).image_sha256
    for path in [*PAGES, f"/ui/predictions/{site.seeded[0]}", f"/ui/images/{sha}", "/ui/"]:
        response = client.get(path + "?x=1")
        assert response.status_code == 303, path
        assert response.headers["location"] == "/ui/sign-in?next=" + path + "%3Fx%3D1"
        assert sha not in response.text
    posted = client.post(f"/ui/review/{site.seeded[0]}/label", data={"label": "dog"})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/ui/sign-in")
    htmx = client.get("/ui/review", headers={"HX-Request": "true"})
    assert htmx.status_code == 204 and htmx.headers["hx-redirect"].startswith("/ui/sign-in")
    assert _row(site, site.seeded[0]).review_label is None


def test_sign_in_sets_a_signed_http_only_strict_cookie_with_an_expiry(site):
    someone = person(site)
    assert someone.sign_in("ik_00000000_made-up").status_code == 401
    assert someone.sign_in(site.key("metrics")).status_code == 403  # no scope the console uses
    signed = someone.sign_in(site.key("review"))
    cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "max-age", "path"} <= attributes and "secure" not in attributes
    assert "samesite=strict" in cookie.lower() and "path=/ui" in cookie.lower() and "max-age=28800" in cookie.lower()
    assert signed.headers["location"] == "/ui/review"
    assert someone.client.get("/ui/review").status_code == 200
    # Over HTTPS (a trusted proxy says so) the cookie is also Secure.
    https = person(site)
    https.client.headers["X-Forwarded-Proto"] = "https"
    secure = https.sign_in(site.key("review"))
    assert any("secure" in c.lower() for c in secure.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    # A forged or altered cookie is no session.
    value = someone.client.cookies[SESSION_COOKIE]
    forged = httpx.Client(
        base_url=site.url, cookies={SESSION_COOKIE: value[:-3] + ("AAA" if value[-3:] != "AAA" else "BBB")}
    )
    assert forged.get("/ui/review").status_code == 303
    # Sign-in forms need their own token; `next` never leaves the console.
    assert person(site).client.post("/ui/sign-in", data={"api_key": site.key("review")}).status_code == 403
    elsewhere = person(site)
    token = _form_value(elsewhere.client.get("/ui/sign-in").text, "csrf_token")
    moved = elsewhere.client.post(
        "/ui/sign-in", data={"csrf_token": token, "api_key": site.key("review"), "next": "//evil.example/"}
    )
    assert moved.headers["location"] == "/ui/review"
    # Signing out ends the session.
    csrf = someone.csrf()
    out = someone.client.post("/ui/sign-out", data={"csrf_token": csrf})
    assert out.status_code == 303 and someone.client.get("/ui/review").status_code == 303


def test_sessions_expire_and_revoked_keys_end_them(site, monkeypatch):
    sessions = Sessions(b"secret", max_age_seconds=60)
    response = httpx.Response(200)

    class Request:  # what Sessions.read needs
        cookies: dict[str, str] = {}

    from starlette.requests import Request as StarletteRequest
    from starlette.responses import Response

    scope = {"type": "http", "scheme": "http", "server": ("x", 80), "path": "/", "headers": [], "query_string": b""}
    out = Response()
    sessions.start(out, StarletteRequest(scope), "key-1")
    token = out.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    Request.cookies = {SESSION_COOKIE: token}
    assert sessions.read(Request()).key_id == "key-1"  # type: ignore[arg-type,union-attr]
    import itsdangerous.timed

    later = itsdangerous.timed.time.time() + 61
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: later)
    assert sessions.read(Request()) is None  # type: ignore[arg-type]
    assert response.status_code == 200
    monkeypatch.undo()
    # Revoking the key ends its sessions (the tests' cache time is 0).
    from imgclf.gateway.api_keys import create_key, revoke_key

    created = create_key(site.gateway.engine, "leaving", "review")
    leaving = person(site)
    leaving.sign_in(created.secret)
    assert leaving.client.get("/ui/review").status_code == 200
    revoke_key(site.gateway.engine, created.info.prefix)
    assert leaving.client.get("/ui/review").status_code == 303


def test_every_state_changing_request_needs_the_csrf_token(site):
    reviewer = _signed_in(site, "review,predict")
    page = reviewer.client.get("/ui/review").text
    item, trail = _card(page), _form_value(page, "trail")
    attempts = [
        (f"/ui/review/{item}/label", {"trail": trail, "label": "fox"}),
        (f"/ui/review/{item}/skip", {"trail": trail}),
        ("/ui/review/undo", {"trail": trail}),
        ("/ui/review/grid", {"ids": item, "label": "fox"}),
        (f"/ui/predictions/{item}/review", {"label": "fox"}),
        ("/ui/models/pets/apply", {"action": "rollback"}),
        ("/ui/sign-out", {}),
    ]
    for path, data in attempts:
        for token in (None, "wrong"):
            sent = dict(data, **({"csrf_token": token} if token else {}))
            refused = reviewer.client.post(path, data=sent)
            assert refused.status_code == 403, path
            assert "CSRF" in refused.text
    upload = reviewer.client.post("/ui/classify", files=[("files", ("a.jpg", picture(3), "image/jpeg"))])
    assert upload.status_code == 403
    htmx = reviewer.client.post(f"/ui/review/{item}/skip", data={"trail": trail}, headers={"HX-Request": "true"})
    assert htmx.status_code == 403 and htmx.headers["hx-retarget"] == "#main"  # shown in the page's main
    assert "<html" not in htmx.text and "CSRF" in htmx.text
    assert _row(site, item).review_label is None
    assert reviewer.client.get("/ui/review").status_code == 200  # still signed in
    # The header htmx sends is accepted in place of the field.
    csrf = reviewer.csrf()
    done = reviewer.client.post(
        f"/ui/review/{item}/label", data={"trail": trail, "label": "fox"}, headers={"X-CSRF-Token": csrf}
    )
    assert done.status_code == 200 and _row(site, item).review_label == "fox"


def test_pages_forbid_inline_scripts_and_styles(site):
    admin = _signed_in(site, "admin")
    prediction = site.seeded[1]
    paths = [*PAGES, f"/ui/predictions/{prediction}", "/ui/sign-in", "/ui/monitoring/drift/7",
             "/ui/monitoring/quality", "/ui/monitoring/traffic", "/ui/models/pets/confirm?action=rollback"]  # fmt: skip
    for path in paths:
        response = admin.client.get(path)
        assert response.status_code == 200, (path, response.text[-500:])
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        html = response.text
        assert all(" src=" in tag for tag in re.findall(r"<script[^>]*>", html)), path
        assert not re.search(r"\sstyle=|<style|\son[a-z]+=|javascript:", html, re.IGNORECASE), path
    static = admin.client.get(
        re.search(r'src="(/ui/static/htmx\.min\.js[^"]*)"', admin.client.get("/ui/review").text)[1]
    )
    assert static.status_code == 200 and static.headers["content-type"].startswith("text/javascript")


def test_images_by_content_hash_to_signed_in_people_with_the_scope(site):
    gateway = site.gateway
    png = picture(77, fmt="PNG")
    digest = gateway.service.store.put(png)
    with gateway.engine.begin() as connection:
        connection.execute(update(Prediction).where(Prediction.id == site.seeded[2]).values(
            image_sha256=digest, image_format="PNG"))  # fmt: skip
    reviewer = _signed_in(site, "review")
    image = reviewer.client.get(f"/ui/images/{digest}")
    assert image.status_code == 200 and image.content == png
    assert image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in image.headers["content-security-policy"]
    thumb = reviewer.client.get(f"/ui/images/{digest}?size=thumb")
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    assert reviewer.client.get("/ui/images/" + "0" * 64).status_code == 404
    assert reviewer.client.get("/ui/images/../../etc/passwd").status_code in (404, 422)
    # A predict-only key sees the images of its own predictions only.
    own = _signed_in(site, "predict")
    assert own.client.get(f"/ui/images/{digest}").status_code == 404
    answer = own.client.post(
        "/ui/classify", files=[("files", ("mine.png", picture(78, fmt="PNG"), "image/png"))],
        data={"csrf_token": own.csrf("/ui/classify")},
    )  # fmt: skip
    mine = re.search(r"/ui/images/([0-9a-f]{64})", answer.text)[1]
    assert own.client.get(f"/ui/images/{mine}").headers["content-type"] == "image/png"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_review_decisions_go_through_the_api_code_and_undo_puts_back(database, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    with console_site(tmp_path, url) as site:
        seed_predictions(site, 12)
        reviewer = _signed_in(site, "review", name="Ana")
        htmx = {"HX-Request": "true"}
        page = reviewer.client.get("/ui/review").text
        csrf, first = reviewer.csrf(), _card(page)
        before = _row(site, first)
        decided = reviewer.client.post(
            f"/ui/review/{first}/label", data={"csrf_token": csrf, "trail": _form_value(page, "trail"), "label": "fox"},
            headers=htmx,
        )  # fmt: skip
        assert decided.status_code == 200 and decided.text.startswith('<div id="workspace"')  # a fragment
        row = _row(site, first)
        assert (row.review_label, row.reviewer, row.review_reason) == ("fox", "Ana", before.review_reason)
        api = site.client.get(f"/v1/predictions/{first}", headers={"Authorization": f"Bearer {site.key('review')}"})
        assert api.json()["review"]["label"] == "fox" and api.json()["review_status"] == "reviewed"
        second = _card(decided.text)
        assert second != first
        # A label with a control character is refused as the API refuses it.
        bad = reviewer.client.post(
            f"/ui/review/{second}/label", data={"csrf_token": csrf, "trail": _form_value(decided.text, "trail"),
                                                "new_label": "a\nb"}, headers=htmx,
        )  # fmt: skip
        assert bad.status_code == 422 and _row(site, second).review_label is None
        # u: the decision is taken back, the item shows again, pending as before.
        undone = reviewer.client.post(
            "/ui/review/undo", data={"csrf_token": csrf, "trail": _form_value(decided.text, "trail")}, headers=htmx
        )
        assert undone.status_code == 200 and _card(undone.text) == first
        row = _row(site, first)
        assert (row.review_label, row.reviewer, row.reviewed_at, row.review_reason) == (
            None, None, None, before.review_reason)  # fmt: skip
        assert (
            "Nothing to undo"
            in reviewer.client.post(
                "/ui/review/undo", data={"csrf_token": csrf, "trail": _form_value(undone.text, "trail")}, headers=htmx
            ).text
        )
        # An undo does not overwrite a review someone else made since.
        again = reviewer.client.post(
            f"/ui/review/{first}/label", data={"csrf_token": csrf, "trail": _form_value(undone.text, "trail"),
                                               "label": "dog"}, headers=htmx,
        )  # fmt: skip
        other = site.client.post(f"/v1/reviews/{first}", json={"label": "cat"},
                                 headers={"Authorization": f"Bearer {site.key('review', name='Bo')}"})  # fmt: skip
        assert other.status_code == 200
        conflict = reviewer.client.post(
            "/ui/review/undo", data={"csrf_token": csrf, "trail": _form_value(again.text, "trail")}, headers=htmx
        )
        assert conflict.status_code == 409 and _row(site, first).review_label == "cat"
        # A trail from another key (or made up) undoes nothing.
        stranger = _signed_in(site, "review", name="Cy")
        forged = stranger.client.post(
            "/ui/review/undo", data={"csrf_token": stranger.csrf(), "trail": _form_value(again.text, "trail")},
            headers=htmx,
        )  # fmt: skip
        assert "Nothing to undo" in forged.text and _row(site, first).review_label == "cat"


def test_skip_filters_and_counts(site):
    reviewer = _signed_in(site, "review")
    page = reviewer.client.get("/ui/review?reason=audit").text
    with site.gateway.engine.connect() as connection:
        pending = connection.execute(
            select(Prediction.review_reason, Prediction.label).where(
                Prediction.needs_review.is_(True), Prediction.review_label.is_(None))
        ).all()  # fmt: skip
    for reason in ("audit", "uncertain", "out_of_distribution"):
        count = sum(r == reason for r, _ in pending)
        assert re.search(rf"\?reason={reason}\">[^<]+</a> <span class=\"count\">{count}</span>", page), reason
    for label in CLASSES:
        count = sum(lab == label for _, lab in pending)
        if count:
            assert re.search(rf"\?label={label}\">{label}</a> <span class=\"count\">{count}</span>", page), label
    first = _card(page)
    assert _row(site, first).review_reason == "audit"
    csrf = reviewer.csrf()
    skipped = reviewer.client.post(
        f"/ui/review/{first}/skip", data={"csrf_token": csrf, "trail": _form_value(page, "trail")},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    second = _card(skipped.text)
    assert second != first and _row(site, second).review_reason == "audit" and _row(site, first).review_label is None


def test_grid_labels_many_at_once(site):
    reviewer = _signed_in(site, "review", name="Grid")
    page = reviewer.client.get("/ui/review/grid?label=cat").text
    ids = re.findall(r'name="ids" value="([0-9a-f]+)"', page)[:3]
    assert ids and all(_row(site, i).label == "cat" for i in ids)
    done = reviewer.client.post(
        "/ui/review/grid", data={"csrf_token": reviewer.csrf(), "ids": ids, "label": "dog", "label_filter": "cat"}
    )
    assert done.status_code == 303 and "done=3" in done.headers["location"]
    assert "Labelled 3 images dog." in reviewer.client.get(done.headers["location"]).text
    assert [(_row(site, i).review_label, _row(site, i).reviewer) for i in ids] == [("dog", "Grid")] * 3


def test_predictions_history_filters_pages_and_detail(site):
    reviewer = _signed_in(site, "review")
    seen: list[str] = []
    url = "/ui/predictions"
    while url:
        page = reviewer.client.get(url.replace("&amp;", "&"))
        assert page.status_code == 200
        seen += re.findall(r'data-row="([0-9a-f]+)"', page.text)
        found = re.search(r'href="([^"]+)" rel="next"', page.text)
        url = found[1] if found else None
    with site.gateway.engine.connect() as connection:
        every = connection.execute(select(Prediction.id).order_by(Prediction.created_at.desc(), Prediction.id.desc()))
        assert seen == list(every.scalars())  # all of them, newest first, none twice
    filtered = reviewer.client.get("/ui/predictions?label=dog&min_confidence=0.4&review_status=pending").text
    for prediction_id in re.findall(r'data-row="([0-9a-f]+)"', filtered):
        row = _row(site, prediction_id)
        assert row.label == "dog" and row.confidence >= 0.4 and row.needs_review and row.review_label is None
    assert reviewer.client.get("/ui/predictions?max_confidence=2").status_code == 422
    detail = reviewer.client.get(f"/ui/predictions/{site.seeded[5]}")
    assert detail.status_code == 200 and "Set the correct label" in detail.text
    saved = reviewer.client.post(f"/ui/predictions/{site.seeded[5]}/review",
                                 data={"csrf_token": reviewer.csrf(), "label": "cat", "new_label": "lynx"})  # fmt: skip
    assert saved.status_code == 303 and _row(site, site.seeded[5]).review_label == "lynx"
    assert reviewer.client.get("/ui/predictions/" + "f" * 32).status_code == 404
    # predict-only keys see only their own predictions.
    own = _signed_in(site, "predict")
    assert "No predictions match" in own.client.get("/ui/predictions").text
    assert own.client.get(f"/ui/predictions/{site.seeded[5]}").status_code == 404
    assert "Set the correct label" not in own.client.get("/ui/predictions").text


def test_classify_goes_through_the_predict_path(site):
    user = _signed_in(site, "predict", name="Uploader")
    csrf = user.csrf("/ui/classify")
    files = [("files", ("a.jpg", picture(11), "image/jpeg")), ("files", ("b.png", picture(12, fmt="PNG"), "image/png"))]
    answer = user.client.post("/ui/classify", files=files, data={"csrf_token": csrf}, headers={"HX-Request": "true"})
    assert answer.status_code == 200 and answer.text.startswith('<section id="results"')
    ids = re.findall(r'<a href="/ui/predictions/([0-9a-f]+)">', answer.text)
    assert len(ids) == 2
    rows = [_row(site, i) for i in ids]  # logged like any request: the key, the version, the review decision
    assert re.findall(r"data-label>([^<]+)<", answer.text) == [r.label for r in rows]
    assert len({r.api_key_id for r in rows}) == 1 and rows[0].api_key_id is not None
    assert {r.model_version for r in rows} == {7} and {r.role for r in rows} == {"stable"}
    for row in rows:
        top, second = sorted(row.scores.values(), reverse=True)[:2]
        assert row.needs_review == (top < 0.7 or top - second < 0.2)
    assert user.client.get(f"/ui/predictions/{ids[0]}").status_code == 200  # their own
    refused = user.client.post("/ui/classify", files=[("files", ("x.txt", b"not an image", "text/plain"))],
                               data={"csrf_token": csrf})  # fmt: skip
    assert refused.status_code == 415 and "not an image" in refused.text
    empty = user.client.post("/ui/classify", files=[("files", ("", b"", "application/octet-stream"))],
                             data={"csrf_token": csrf})  # fmt: skip
    assert empty.status_code == 400
    assert _signed_in(site, "review").client.get("/ui/classify").status_code == 403


def test_models_actions_need_admin_and_a_confirmation(tmp_path):
    with console_site(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}") as site:
        registry = Registry(site.gateway.settings.registry)
        reviewer = _signed_in(site, "review")
        page = reviewer.client.get("/ui/models").text
        assert (
            "Start canary" not in page and "Promote to stable" not in page and "need an API key with the admin" in page
        )
        assert reviewer.client.get("/ui/models/pets/confirm?action=canary&version=8&share=0.2").status_code == 403
        refused = reviewer.client.post("/ui/models/pets/apply",
                                       data={"csrf_token": reviewer.csrf(), "action": "canary", "version": "8",
                                             "share": "0.2"})  # fmt: skip
        assert refused.status_code == 403 and registry.state(MODEL).canary is None
        admin = _signed_in(site, "admin")
        page = admin.client.get("/ui/models").text
        assert "Start canary" in page and "0.890" in page and "blessed" in page
        confirm = admin.client.get("/ui/models/pets/confirm?action=canary&version=8&share=0.2")
        assert "answers 20% of API keys" in confirm.text and registry.state(MODEL).canary is None  # nothing yet
        csrf = _form_value(confirm.text, "csrf_token")
        done = admin.client.post(
            "/ui/models/pets/apply", data={"csrf_token": csrf, "action": "canary", "version": "8", "share": "0.2"}
        )
        state = registry.state(MODEL)
        assert done.status_code == 303 and (state.canary, state.canary_share) == (8, 0.2)
        admin.client.post("/ui/models/pets/apply", data={"csrf_token": csrf, "action": "share", "share": "0.5"})
        assert registry.state(MODEL).canary_share == 0.5
        shares = re.findall(r'<td class="num">(\d+ %)</td>', admin.client.get("/ui/models").text)
        assert shares == ["50 %", "50 %"]  # canary 8 and stable 7
        admin.client.post("/ui/models/pets/apply", data={"csrf_token": csrf, "action": "rollback"})
        assert registry.state(MODEL).canary is None and registry.state(MODEL).stable == 7
        # Version 7 was never gated: promoting it over a stable needs the override the confirmation offers.
        admin.client.post("/ui/models/pets/apply", data={"csrf_token": csrf, "action": "promote", "version": "8"})
        assert registry.state(MODEL).stable == 8
        confirm = admin.client.get("/ui/models/pets/confirm?action=promote&version=7").text
        assert "has not been through the gate" in confirm and 'name="force"' in confirm
        unforced = admin.client.post("/ui/models/pets/apply",
                                     data={"csrf_token": csrf, "action": "promote", "version": "7"})  # fmt: skip
        assert unforced.status_code == 400 and registry.state(MODEL).stable == 8
        admin.client.post("/ui/models/pets/apply", data={"csrf_token": csrf, "action": "rollback"})
        assert registry.state(MODEL).stable == 7


def test_monitoring_shows_drift_quality_and_traffic(site):
    reviewer = _signed_in(site, "review")
    page = reviewer.client.get("/ui/monitoring").text
    assert 'hx-get="/ui/monitoring/drift/7"' in page
    drift = reviewer.client.get("/ui/monitoring/drift/7", headers={"HX-Request": "true"}).text
    assert re.search(r'class="verdict-(drift|no_drift|insufficient_data)"', drift) and "embedding.mmd" in drift
    figure = reviewer.client.get("/ui/monitoring/drift/7/figure-0.png")
    assert figure.status_code == 200 and figure.content[:4] == b"\x89PNG"
    quality = reviewer.client.get("/ui/monitoring/quality").text
    assert "<svg" in quality and "estimated" in quality
    traffic = reviewer.client.get("/ui/monitoring/traffic").text
    assert "Requests per hour" in traffic and "<polyline" in traffic
    assert reviewer.client.get("/ui/monitoring/drift/99").status_code == 200  # no profile: said on the page


def test_the_api_is_unchanged(site, tmp_path):
    schema = site.client.get("/openapi.json").json()
    assert not [path for path in schema["paths"] if path.startswith("/ui")]
    with console_site(tmp_path, f"sqlite:///{tmp_path / 'off.db'}", console_enabled=False) as off:
        assert off.client.get("/ui/sign-in").status_code == 404
