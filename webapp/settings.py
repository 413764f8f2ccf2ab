"""What the app needs to start: the workspace home, the config, the database and the secret."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from configs.schema import Config

SECRET_FILE = "workspace-secret.key"  # signs invite links and CSRF tokens


def load_secret(home: Path) -> bytes:
    """The app's signing key in the workspace (mode 0600), made on first use."""
    path = Path(home) / SECRET_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


@dataclass(frozen=True)
class AppSettings:
    home: Path
    config: Config
    db_url: str | None = None  # None: NOTALONE_DB_URL, else $NOTALONE_HOME/workspace.db
    secret: bytes | None = None  # None: the workspace's secret file

    def signing_key(self) -> bytes:
        return self.secret or load_secret(self.home)
