"""API keys: created once and shown once, stored as SHA-256 hashes, checked in constant time.

A key looks like ``ik_<8 chars>_<secret>``; the ``ik_<8 chars>`` prefix is stored in clear so
keys can be listed and revoked by it, and so a lookup needs no scan. Scopes: ``predict``
(classify images), ``review`` (read and label the review queue), ``admin`` (everything).

Example:
    >>> created = create_key(engine, "mobile app", ["predict"])
    >>> created.secret            # give this to the client; it is not stored
    'ik_3fa9c2d1_...'
    >>> authenticate(engine, created.secret).scopes
    ('predict',)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from imgclf.errors import ConfigError
from imgclf.storage.database import session_scope
from imgclf.storage.models import ApiKey, utcnow

SCOPES = ("predict", "review", "admin", "metrics")  # metrics: only /metrics (for Prometheus)
PREFIX_LENGTH = 11  # "ik_" + 8 characters


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True)
class CreatedKey:
    info: KeyInfo
    secret: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(key: ApiKey) -> KeyInfo:
    scopes = tuple(s for s in key.scopes.split(",") if s)
    return KeyInfo(key.id, key.name, key.prefix, scopes, key.created_at, key.revoked_at)


def parse_scopes(scopes: list[str] | str) -> list[str]:
    items = scopes.split(",") if isinstance(scopes, str) else scopes
    cleaned = [s.strip() for s in items if s.strip()]
    unknown = [s for s in cleaned if s not in SCOPES]
    if unknown or not cleaned:
        raise ConfigError(f"scopes must be some of {', '.join(SCOPES)} (got {', '.join(cleaned) or 'none'})")
    return cleaned


def create_key(engine: Engine, name: str, scopes: list[str] | str) -> CreatedKey:
    scope_list = parse_scopes(scopes)
    if not name.strip():
        raise ConfigError("an API key needs a name")
    prefix = "ik_" + secrets.token_hex(4)
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    with session_scope(engine) as session:
        key = ApiKey(name=name.strip(), prefix=prefix, key_hash=_hash(secret), scopes=",".join(scope_list))
        session.add(key)
        session.flush()
        return CreatedKey(_info(key), secret)


def list_keys(engine: Engine, include_revoked: bool = True) -> list[KeyInfo]:
    with session_scope(engine) as session:
        query = select(ApiKey).order_by(ApiKey.created_at)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        return [_info(key) for key in session.scalars(query)]


def revoke_key(engine: Engine, id_or_prefix: str) -> KeyInfo:
    with session_scope(engine) as session:
        key = session.scalars(
            select(ApiKey).where((ApiKey.id == id_or_prefix) | (ApiKey.prefix == id_or_prefix))
        ).first()
        if key is None:
            raise ConfigError(f"no API key with id or prefix {id_or_prefix!r}")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
        return _info(key)


def authenticate(engine: Engine, presented: str | None) -> KeyInfo | None:
    """The key's info if ``presented`` is a valid, unrevoked key; else None."""
    if not presented or not presented.startswith("ik_") or len(presented) <= PREFIX_LENGTH:
        return None
    with session_scope(engine) as session:
        candidates = session.scalars(select(ApiKey).where(ApiKey.prefix == presented[:PREFIX_LENGTH])).all()
        digest = _hash(presented)
        for key in candidates:
            if hmac.compare_digest(key.key_hash, digest) and key.revoked_at is None:
                return _info(key)
    return None


def key_by_id(engine: Engine, key_id: str) -> KeyInfo | None:
    """The key's info if ``key_id`` names an unrevoked key; else None (the console's sessions hold the id)."""
    with session_scope(engine) as session:
        key = session.get(ApiKey, key_id)
        return None if key is None or key.revoked_at is not None else _info(key)
