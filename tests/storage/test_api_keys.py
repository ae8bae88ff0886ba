"""API keys: hashed at rest, scoped, revocable; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from imgclf.errors import ConfigError
from imgclf.gateway.api_keys import authenticate, create_key, list_keys, revoke_key
from imgclf.storage.database import connect, session_scope
from imgclf.storage.models import ApiKey


def test_create_authenticate_revoke(database_url):
    engine = connect(database_url)
    created = create_key(engine, "mobile app", "predict,review")
    assert created.secret.startswith(created.info.prefix + "_")
    with session_scope(engine) as session:
        stored = session.scalars(select(ApiKey)).one()
        assert created.secret not in (stored.key_hash, stored.prefix)  # only the hash is kept
    info = authenticate(engine, created.secret)
    assert info is not None and info.scopes == ("predict", "review")
    assert info.allows("predict") and not info.allows("admin")
    assert authenticate(engine, created.secret[:-1] + "x") is None
    assert authenticate(engine, "") is None and authenticate(engine, "Bearer nonsense") is None
    revoke_key(engine, created.info.prefix)
    assert authenticate(engine, created.secret) is None
    assert list_keys(engine)[0].revoked_at is not None
    assert list_keys(engine, include_revoked=False) == []
    engine.dispose()


def test_admin_allows_everything_and_bad_input_is_a_config_error(tmp_path):
    engine = connect(f"sqlite:///{tmp_path / 'keys.db'}")
    admin = create_key(engine, "ops", ["admin"])
    assert admin.info.allows("review") and admin.info.allows("predict")
    with pytest.raises(ConfigError, match="scopes must be some of"):
        create_key(engine, "x", "predict,superuser")
    with pytest.raises(ConfigError, match="no API key"):
        revoke_key(engine, "ik_00000000")


def test_keys_commands(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "IMGCLF_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}

    def imgclf(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "imgclf", *args], capture_output=True, text=True, env=env)

    created = imgclf("keys", "create", "--name", "ci", "--scopes", "predict,review")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    engine = connect(env["IMGCLF_DATABASE_URL"])
    assert authenticate(engine, secret).name == "ci"
    assert secret[:11] in imgclf("keys", "list").stdout
    assert imgclf("keys", "revoke", secret[:11]).returncode == 0
    assert authenticate(engine, secret) is None
    bad = imgclf("keys", "revoke", "ik_missing")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: no API key with id or prefix 'ik_missing'"
