"""Access: signed single-use invite links, session cookies with CSRF tokens, bearer API tokens.

An invite link carries (person, nonce) signed with itsdangerous and a timestamp; the nonce row in
the database makes it single-use and revocable. Exchanging it creates a session whose secret is
the cookie (only its SHA-256 is stored). The CSRF token of a form is an HMAC of the session
secret, so it is tied to the session and needs no storage.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import Engine

from webapp.db.accounts import (
    KIND_API,
    KIND_SESSION,
    Account,
    account_for_secret,
    consume_invite,
    create_credential,
    create_invite,
    create_person,
)

SESSION_COOKIE = "notalone_session"
INVITE_SALT = "notalone-invite"
CSRF_FIELD = "csrf_token"


def _signer(secret: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=INVITE_SALT)


def invite_token(engine: Engine, secret: bytes, person_id: str, expires_in: timedelta) -> str:
    nonce = create_invite(engine, person_id, expires_in)
    return _signer(secret).dumps({"p": person_id, "n": nonce})


def invite_link(
    engine: Engine,
    secret: bytes,
    person_id: str,
    *,
    lead: bool,
    base_url: str,
    expires_in: timedelta,
) -> str:
    """Create (or re-admit) the person and return their personal, single-use link."""
    create_person(engine, person_id, lead=lead)
    return f"{base_url.rstrip('/')}/invite/{invite_token(engine, secret, person_id, expires_in)}"


def redeem_invite(
    engine: Engine, secret: bytes, token: str, max_age: timedelta, session_lifetime: timedelta
) -> tuple[Account, str] | None:
    """(account, session secret) for a valid, unexpired, unused invite; None otherwise."""
    try:
        data = _signer(secret).loads(token, max_age=int(max_age.total_seconds()))
    except (SignatureExpired, BadSignature):
        return None
    if not isinstance(data, dict) or not {"p", "n"} <= data.keys():
        return None
    account = consume_invite(engine, str(data["n"]), str(data["p"]))
    if account is None:
        return None
    session = create_credential(engine, account.person_id, KIND_SESSION, session_lifetime)
    return account, session


def invite_is_signed(secret: bytes, token: str, max_age: timedelta) -> bool:
    """Whether a link is genuine and unexpired (its use is checked when it is redeemed)."""
    try:
        _signer(secret).loads(token, max_age=int(max_age.total_seconds()))
    except (SignatureExpired, BadSignature):
        return False
    return True


def session_account(engine: Engine, session: str | None) -> Account | None:
    return account_for_secret(engine, session, KIND_SESSION)


def api_account(engine: Engine, authorization: str | None) -> Account | None:
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    return account_for_secret(engine, authorization[7:].strip(), KIND_API)


def csrf_token(secret: bytes, session: str) -> str:
    return hmac.new(secret, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: bytes, session: str | None, token: str | None) -> bool:
    if not session or not token:
        return False
    return hmac.compare_digest(csrf_token(secret, session), token)
