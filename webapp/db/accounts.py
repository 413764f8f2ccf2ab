"""Curator and lead accounts, invites, sessions and API tokens (secrets stored as SHA-256)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update

from features.errors import NotaloneError
from webapp.db.engine import as_utc, utcnow
from webapp.db.models import Credential, Invite, Person

ROLE_CURATOR = "curator"
ROLE_LEAD = "lead"
KIND_SESSION = "session"
KIND_API = "api"


class AccountError(NotaloneError):
    """An unknown person or a bad role."""


@dataclass(frozen=True)
class Account:
    person_id: str
    role: str

    @property
    def is_lead(self) -> bool:
        return self.role == ROLE_LEAD


def hash_secret(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def create_person(engine: Engine, person_id: str, *, lead: bool = False) -> Account:
    """Create (or re-admit, after a revoke) a curator or lead; the role follows `lead`."""
    person_id = person_id.strip()
    if not person_id:
        raise AccountError("a curator id is needed")
    role = ROLE_LEAD if lead else ROLE_CURATOR
    with engine.begin() as conn:
        found = conn.execute(select(Person).where(Person.person_id == person_id)).first()
        if found is None:
            conn.execute(
                Person.__table__.insert().values(
                    person_id=person_id, role=role, created_at=utcnow(), revoked_at=None
                )
            )
        else:
            conn.execute(
                update(Person)
                .where(Person.person_id == person_id)
                .values(role=role, revoked_at=None)
            )
    return Account(person_id, role)


def get_account(engine: Engine, person_id: str) -> Account | None:
    """The active (not revoked) account, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            select(Person.person_id, Person.role).where(
                Person.person_id == person_id, Person.revoked_at.is_(None)
            )
        ).first()
    return Account(row.person_id, row.role) if row else None


def create_invite(engine: Engine, person_id: str, expires_in: timedelta) -> str:
    """A fresh invite nonce for an active person (the link signs it)."""
    if get_account(engine, person_id) is None:
        raise AccountError(f"no active account {person_id!r}")
    nonce = secrets.token_urlsafe(24)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            Invite.__table__.insert().values(
                nonce=nonce,
                person_id=person_id,
                created_at=now,
                expires_at=now + expires_in,
                used_at=None,
            )
        )
    return nonce


def consume_invite(engine: Engine, nonce: str, person_id: str) -> Account | None:
    """Mark the invite used (once, before it expires) and return its active account; else None."""
    now = utcnow()
    with engine.begin() as conn:
        row = conn.execute(
            select(Invite.expires_at).where(
                Invite.nonce == nonce, Invite.person_id == person_id, Invite.used_at.is_(None)
            )
        ).first()
        if row is None or as_utc(row.expires_at) <= now:
            return None
        used = conn.execute(
            update(Invite)
            .where(Invite.nonce == nonce, Invite.used_at.is_(None))
            .values(used_at=now)
        )
        if used.rowcount != 1:  # another request used it at the same moment
            return None
    return get_account(engine, person_id)


def create_credential(
    engine: Engine, person_id: str, kind: str, lifetime: timedelta | None, label: str = ""
) -> str:
    """A new session or API token for an active person; returns the secret (shown once)."""
    if get_account(engine, person_id) is None:
        raise AccountError(f"no active account {person_id!r}")
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            Credential.__table__.insert().values(
                token_hash=hash_secret(raw),
                person_id=person_id,
                kind=kind,
                label=label,
                created_at=now,
                expires_at=now + lifetime if lifetime is not None else None,
                revoked_at=None,
            )
        )
    return raw


def account_for_secret(engine: Engine, raw: str | None, kind: str) -> Account | None:
    """The account behind a live session or API token (not expired, not revoked), else None."""
    if not raw:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            select(Credential.expires_at, Person.person_id, Person.role)
            .join(Person, Person.person_id == Credential.person_id)
            .where(
                Credential.token_hash == hash_secret(raw),
                Credential.kind == kind,
                Credential.revoked_at.is_(None),
                Person.revoked_at.is_(None),
            )
        ).first()
    if row is None:
        return None
    expires = as_utc(row.expires_at)
    if expires is not None and expires <= utcnow():
        return None
    return Account(row.person_id, row.role)


def end_credential(engine: Engine, raw: str) -> None:
    """Log out: revoke one session or token."""
    with engine.begin() as conn:
        conn.execute(
            update(Credential)
            .where(Credential.token_hash == hash_secret(raw), Credential.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )


def revoke_person(engine: Engine, person_id: str) -> dict[str, int]:
    """End every session and API token of a person, void their open invites and lock them out.
    Returns how many credentials and invites were ended."""
    now = utcnow()
    with engine.begin() as conn:
        found = conn.execute(
            update(Person).where(Person.person_id == person_id).values(revoked_at=now)
        )
        if found.rowcount != 1:
            raise AccountError(f"no account {person_id!r}")
        credentials = conn.execute(
            update(Credential)
            .where(Credential.person_id == person_id, Credential.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        invites = conn.execute(
            update(Invite)
            .where(Invite.person_id == person_id, Invite.used_at.is_(None))
            .values(used_at=now)
        ).rowcount
    return {"credentials": credentials, "invites": invites}


def list_people(engine: Engine) -> list[tuple[str, str, datetime | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Person.person_id, Person.role, Person.revoked_at).order_by(Person.person_id)
        ).all()
    return [(r.person_id, r.role, as_utc(r.revoked_at)) for r in rows]
