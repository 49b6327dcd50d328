"""FastAPI dependencies that every router shares: the audit store and the caller's API key.

The app factory (hallmark/app.py) puts a zero-argument factory for each service on `app.state`;
routers are module-level and reach them only through dependencies like these, so a test or
another composition can build the same routes over other services.

Roles: generator keys generate and read their own tenant's records; reviewer keys read
everything and decide; admin keys also redact and manage keys. Verification needs no key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from audit.keys import Principal, Role, authenticate
from audit.store import AuditStore

_bearer = HTTPBearer(auto_error=False, description="An API key from `hallmark keys create`.")


def get_store(request: Request) -> AuditStore:
    """The deployment's audit store (opened on first use)."""
    return request.app.state.audit_store()


Store = Annotated[AuditStore, Depends(get_store)]


def principal(
    store: Store, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller's API key (`Authorization: Bearer hk_...`), or 401."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "an API key is required: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    found = authenticate(store, credentials.credentials)
    if found is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return found


Caller = Annotated[Principal, Depends(principal)]


def generator(caller: Caller) -> Principal:
    if caller.role != Role.generator:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs a generator key; this is a {caller.role} key")
    return caller


def reviewer(caller: Caller) -> Principal:
    if not caller.reviews:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"needs a reviewer or admin key; this is a {caller.role} key"
        )
    return caller


def admin(caller: Caller) -> Principal:
    if caller.role != Role.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs an admin key; this is a {caller.role} key")
    return caller


Generator = Annotated[Principal, Depends(generator)]
Reviewer = Annotated[Principal, Depends(reviewer)]
Admin = Annotated[Principal, Depends(admin)]
