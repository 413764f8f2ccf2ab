"""Pseudonymous student identifiers for anything that leaves the school's own outputs.

A keyed hash (HMAC-SHA256) maps an id to a stable token: the same id gives the same token under
the same secret, so logged tables can still be joined, but without the secret nobody can go back
from a token to a student or test guesses of ids.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import pandas as pd

TOKEN_HEX_CHARS = 16
TOKEN_PREFIX = "p_"


def pseudonymise(ids: Iterable[object], secret: bytes | str) -> pd.Series:
    """Keyed-hash tokens for `ids` (missing stays missing), as a str Series."""
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("pseudonymise needs a non-empty secret")
    index = ids.index if isinstance(ids, pd.Series) else None
    values = list(ids)
    out = []
    for value in values:
        if value is None or (isinstance(value, float) and value != value):
            out.append(None)
            continue
        digest = hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()
        out.append(TOKEN_PREFIX + digest[:TOKEN_HEX_CHARS])
    return pd.Series(out, index=index, dtype="str")
