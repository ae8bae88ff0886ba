"""A review sent as ``curl -d '{"label": "dogs"}'`` (issue 19 item 10): curl declares
``application/x-www-form-urlencoded``, and the body is JSON. The gateway takes a body that parses as
JSON whatever its Content-Type says; a body that does not parse under a non-JSON Content-Type is a
415 that names the Content-Type; bad JSON declared as JSON stays a 422."""

from __future__ import annotations

from tests.gateway.conftest import gateway_settings, running_gateway
from tests.helpers import assert_error, bearer, upload

FORM = "application/x-www-form-urlencoded"


def test_review_body_is_json_whatever_its_content_type(cats_dogs_registry, photos, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}")
    with running_gateway(settings) as gw:
        key = gw.key("predict,review", "ana")
        answers = gw.client.post("/v1/predict", files=upload(photos, 3), headers=bearer(key)).json()["predictions"]
        first, second, third = (a["id"] for a in answers)

        def review(prediction_id: str, body: bytes, content_type: str | None):  # type: ignore[no-untyped-def]
            headers = bearer(key) | ({"Content-Type": content_type} if content_type else {})
            return gw.client.post(f"/v1/reviews/{prediction_id}", content=body, headers=headers)

        # What the README's curl -d sends, and the same without any Content-Type.
        for prediction_id, content_type, label in ((first, FORM, "dogs"), (second, None, "cats")):
            answer = review(prediction_id, b'{"label": "%s"}' % label.encode(), content_type)
            assert answer.status_code == 200, answer.text
            assert answer.json()["review"]["label"] == label and answer.json()["review"]["reviewer"] == "ana"
            record = gw.client.get(f"/v1/predictions/{prediction_id}", headers=bearer(key)).json()
            assert record["review"]["label"] == label
        text = review(third, b'{"label": "foxes", "reviewer": "bo"}', "text/plain; charset=utf-8").json()
        assert text["review"]["label"] == "foxes" and text["review"]["reviewer"] == "bo"

        # JSON under another Content-Type is still checked like JSON.
        assert_error(review(third, b'{"label": ""}', FORM), 422, "invalid_request")
        assert_error(review(third, b'{"label": "dogs", "extra": 1}', FORM), 422, "invalid_request")

        # Not JSON, not declared as JSON: 415, and the message says what was sent and what is wanted.
        for body, content_type in ((b"label=dogs", FORM), (b"dogs", "text/plain"), (b"label=dogs", None)):
            error = assert_error(review(third, body, content_type), 415, "unsupported_media_type")
            assert (content_type or "none").split(";")[0] in error["message"], error
            assert "application/json" in error["message"], error

        # Declared as JSON but not JSON: as before, a 422 in the error shape.
        assert_error(review(third, b'{"label": ', "application/json"), 422, "invalid_request")
        assert_error(review(third, b"label=dogs", "application/json"), 422, "invalid_request")
        # Nothing recorded from the refused requests.
        record = gw.client.get(f"/v1/predictions/{third}", headers=bearer(key)).json()
        assert record["review"]["label"] == "foxes"


def test_review_route_still_documents_its_json_body(cats_dogs_registry, tmp_path):
    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}")
    with running_gateway(settings) as gw:
        spec = gw.client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/reviews/{prediction_id}"]["post"]
    assert operation["requestBody"]["required"] is True
    assert operation["requestBody"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/ReviewRequest"}}
    }
    assert set(spec["components"]["schemas"]["ReviewRequest"]["properties"]) == {"label", "reviewer"}
    assert "415" in operation["responses"]
