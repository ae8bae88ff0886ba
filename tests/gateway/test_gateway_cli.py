"""``imgclf gateway``, ``imgclf reviews export`` and ``imgclf demo``'s gateway on the command line."""

from __future__ import annotations

import socket

from imgclf.data.sources import load_dataset
from imgclf.storage.database import connect
from imgclf.storage.predictions import record_review
from tests.gateway.conftest import gateway_settings, running_gateway
from tests.helpers import _one_error_line, bearer, run_cli, upload


def test_gateway_refuses_bad_settings_in_one_line(tmp_path, capsys, monkeypatch, cats_dogs_registry):
    monkeypatch.chdir(tmp_path)
    _one_error_line(*run_cli(["gateway", "--registry", tmp_path / "nope"], capsys)[::2], "is not a directory")
    two_models = tmp_path / "two"
    for name in ("a", "b"):
        (two_models / name / "1").mkdir(parents=True)
    _one_error_line(*run_cli(["gateway", "--registry", two_models], capsys)[::2], "choose one with --model")
    code, _, err = run_cli(["gateway", "--registry", cats_dogs_registry, "--backend", "ftp://x"], capsys)
    _one_error_line(code, err, "backend must be local")
    monkeypatch.setenv("IMGCLF_RATE_LIMIT_BURST", "lots")
    _one_error_line(
        *run_cli(["gateway", "--registry", cats_dogs_registry], capsys)[::2], "invalid IMGCLF_RATE_LIMIT_BURST"
    )


def test_demo_refuses_a_busy_port_before_training(tmp_path, capsys):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        code, _, err = run_cli(["demo", "--out", tmp_path / "demo", "--port", port], capsys)
    _one_error_line(code, err, f"cannot listen on 127.0.0.1:{port}")
    assert not (tmp_path / "demo").exists()


def test_reviews_export_command(cats_dogs_registry, photos, tmp_path, capsys, monkeypatch):
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with running_gateway(gateway_settings(tmp_path, cats_dogs_registry, database_url)) as gw:
        answers = gw.client.post("/v1/predict", files=upload(photos, 3), headers=bearer(gw.key())).json()
    engine = connect(database_url)
    for prediction, label in zip(answers["predictions"], ("cats", "dogs", "otters"), strict=True):
        record_review(engine, prediction["id"], label, "ana")
    monkeypatch.setenv("IMGCLF_DATABASE_URL", database_url)
    monkeypatch.setenv("IMGCLF_IMAGE_STORE_DIR", str(tmp_path / "images"))
    code, out, err = run_cli(["reviews", "export", "--out", tmp_path / "reviewed.csv"], capsys)
    assert code == 0, err
    assert "Wrote 3 reviewed image(s) in 3 class(es)" in out
    dataset = load_dataset(tmp_path / "reviewed.csv")
    assert sorted(s.label for s in dataset.samples) == ["cats", "dogs", "otters"]
