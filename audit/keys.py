"""API keys with roles, stored hashed.

A key looks like `hk_<key id>_<secret>`. The key id is public (it names the key in decisions and
logs); only the sha256 of the 256-bit random secret is stored, so a leaked database yields no
usable key. Roles: `generator` (its own tenant's records), `reviewer` (read and decide),
`admin` (also redact and manage keys). Verification needs no key at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import update
from sqlmodel import Session, select

from audit.models import ApiKey
from audit.store import AuditError, AuditStore


class Role(StrEnum):
    generator = "generator"  # generates, and reads its own tenant's records
    reviewer = "reviewer"  # reads every record and decides
    admin = "admin"  # also redacts and manages keys


ROLES = tuple(Role)
PREFIX = "hk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name, role and (for generator keys) tenant."""

    key_id: str
    name: str
    role: str
    tenant: str | None
    tier: str | None = None  # generator keys: the policy tier (None: the policy's default)

    @property
    def reviews(self) -> bool:
        return self.role in (Role.reviewer, Role.admin)


def create_key(
    store: AuditStore, role: str, name: str, tenant: str | None = None, tier: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is shown once and never stored."""
    if role not in ROLES:
        raise AuditError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role == Role.generator and not tenant:
        raise AuditError("a generator key needs a tenant (its records are the only ones it sees)")
    if not name.strip():
        raise AuditError("a key needs a name (who or what uses it)")
    if tier is not None and role != Role.generator:
        raise AuditError("only generator keys have a tier")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    row = ApiKey(
        key_id=key_id,
        secret_sha256=_digest(secret),
        role=role,
        tenant=tenant,
        tier=tier,
        name=name.strip(),
        created_at=dt.datetime.now(dt.UTC),
    )
    with Session(store.engine) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
        session.expunge(row)
    return row, f"{PREFIX}{key_id}_{secret}"


def authenticate(store: AuditStore, token: str) -> Principal | None:
    """The principal for a presented key, or None if it is malformed, unknown or revoked."""
    if not token.startswith(PREFIX) or token.count("_") < 2:
        return None
    key_id, secret = token[len(PREFIX) :].split("_", 1)
    with Session(store.engine) as session:
        row = session.exec(select(ApiKey).where(ApiKey.key_id == key_id)).first()
    if (
        row is None
        or row.revoked_at is not None
        or not hmac.compare_digest(row.secret_sha256, _digest(secret))
    ):
        return None
    return Principal(row.key_id, row.name, row.role, row.tenant, row.tier)


def list_keys(store: AuditStore) -> list[ApiKey]:
    with Session(store.engine) as session:
        return list(session.exec(select(ApiKey).order_by(ApiKey.id)))


def revoke_key(store: AuditStore, key_id: str) -> None:
    with Session(store.engine) as session:
        done = session.execute(
            update(ApiKey)
            .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=dt.datetime.now(dt.UTC))
        )
        session.commit()
    if done.rowcount == 0:
        raise AuditError(f"no active key with id {key_id!r}")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
