"""Helpers shared by the test modules (instead of test modules importing each other)."""

from __future__ import annotations

import shutil
import socket

import numpy as np

from imgclf.cli import main
from imgclf.errors import ServingError
from imgclf.gateway.backends import BackendAnswer


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload(photos, count: int | None = None):  # type: ignore[no-untyped-def]
    return [("files", (name, data, "image/jpeg")) for name, data in photos[:count]]


def assert_error(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code, body
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_version(source, base, version: int) -> None:
    """Publish a version the way ``imgclf export`` does: copy under a temporary name, then rename."""
    tmp = base / f".incoming-{version}"
    shutil.copytree(source, tmp)
    tmp.rename(base / str(version))


def available(running, name: str = "toy") -> list[int]:
    response = running.rest.get(f"/v1/models/{name}")
    if response.status_code != 200:
        return []
    return [int(s["version"]) for s in response.json()["model_version_status"] if s["state"] == "AVAILABLE"]


def config_text(base, *, versions=(1, 2), labels=None) -> str:  # type: ignore[no-untyped-def]
    label_text = "".join(f"version_labels {{ key: '{k}' value: {v} }} " for k, v in (labels or {}).items())
    specific = " ".join(f"versions: {v}" for v in versions)
    return (
        f"model_config_list {{ config {{ name: 'toy' base_path: '{base}' model_platform: 'tensorflow' "
        f"model_version_policy {{ specific {{ {specific} }} }} {label_text} }} }}"
    )


def response_head(sock: socket.socket) -> tuple[int, bytes]:
    """Read an HTTP response's head from a raw socket: (status, bytes read; status 0 if none came)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return (int(data.split(b" ", 2)[1]) if data else 0), data


_one_error_line = one_error_line  # the name the older tests use


class FakeBackend:
    """Answers with the scores it is given, one row per image, as version 7 of ``pets``."""

    model_name = "pets"

    def __init__(self, scores: list[list[float]], error: ServingError | None = None, embeddings=None) -> None:  # type: ignore[no-untyped-def]
        self.scores, self.error, self.calls = np.array(scores, np.float32), error, 0
        self.embeddings = None if embeddings is None else np.asarray(embeddings, np.float32)

    def classify(self, images, version=None, label=None, background=False):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.error is not None:
            raise self.error
        rows = self.scores[: len(images)]
        found = None if self.embeddings is None else self.embeddings[: len(images)]
        return BackendAnswer("pets", 7, rows, rows.argmax(axis=1).astype(np.int64), embeddings=found)

    def is_available(self, version: int) -> bool:
        return version == 7

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass
