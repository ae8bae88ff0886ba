"""The key cache under a flood of made-up keys (issue 17): unknown keys need no credentials, so they
must not push valid keys out of the cache that keeps real clients served during a database outage."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import create_engine

from imgclf.errors import DatabaseUnavailableError
from imgclf.gateway import auth
from imgclf.gateway.api_keys import create_key
from imgclf.gateway.auth import Authenticator
from imgclf.storage.database import connect


def test_unknown_keys_never_evict_valid_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "MAX_CACHED_KEYS", 50)
    monkeypatch.setattr(auth, "MAX_CACHED_MISSES", 50)
    engine = connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    good = [create_key(engine, f"client-{i}", "predict").secret for i in range(3)]
    now = [0.0]
    authenticator = Authenticator(engine, cache_seconds=30, clock=lambda: now[0])
    assert all(authenticator.authenticate(key) is not None for key in good)
    for _ in range(120):  # more than both caches hold
        assert authenticator.authenticate(f"ik_{secrets.token_hex(4)}_{secrets.token_hex(16)}") is None

    now[0] = 100.0  # every entry is stale, and the database goes away
    authenticator.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none",
                                         connect_args={"connect_timeout": 2})  # fmt: skip
    assert [authenticator.authenticate(key).name for key in good] == ["client-0", "client-1", "client-2"]
    with pytest.raises(DatabaseUnavailableError):
        authenticator.authenticate(f"ik_{secrets.token_hex(4)}_{secrets.token_hex(16)}")


def test_valid_keys_beyond_the_cache_drop_the_least_recently_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "MAX_CACHED_KEYS", 3)
    engine = connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    keys = [create_key(engine, f"client-{i}", "predict").secret for i in range(4)]
    now = [0.0]
    authenticator = Authenticator(engine, cache_seconds=30, clock=lambda: now[0])
    for key in (keys[0], keys[1], keys[2]):
        authenticator.authenticate(key)
    now[0] = 31.0
    for key in (keys[0], keys[3]):  # key 0 checked again: key 1 is now the least recently checked
        authenticator.authenticate(key)
    now[0] = 100.0
    authenticator.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none",
                                         connect_args={"connect_timeout": 2})  # fmt: skip
    for key in (keys[0], keys[2], keys[3]):  # still trusted while the database is down
        assert authenticator.authenticate(key) is not None
    with pytest.raises(DatabaseUnavailableError):
        authenticator.authenticate(keys[1])
