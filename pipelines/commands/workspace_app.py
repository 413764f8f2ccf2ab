"""`notalone app ...`: run the curator workspace, invite and revoke people, export contacts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from configs.schema import Config
from pipelines import workspace_store
from pipelines.commands.common import activate


def _workspace_db(config: Config):
    from webapp.settings import load_secret

    workspace = activate()
    return workspace, workspace_store.engine(workspace), load_secret(workspace.root)


def run_app(*, host: str, port: int, config: Config) -> None:
    """Serve the workspace on host:port (127.0.0.1 unless told otherwise) until Ctrl-C."""
    import uvicorn
    from rich.console import Console

    from webapp.app import create_app
    from webapp.settings import AppSettings

    workspace = activate()
    app = create_app(AppSettings(home=workspace.root, config=config))
    Console(stderr=True).print(
        f"[bold green]curator workspace[/bold green] on http://{host}:{port} "
        f"(API docs: http://{host}:{port}/api/docs); invite people with `notalone app invite ID`"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


def run_invite(*, curator_id: str, lead: bool, base_url: str | None, config: Config) -> str:
    """Create (or re-admit) the person and print their personal, single-use link."""
    from rich.console import Console

    from webapp.auth import invite_link

    _, engine, secret = _workspace_db(config)
    hours = config.workspace_app.invite_expiry_hours
    link = invite_link(
        engine,
        secret,
        curator_id,
        lead=lead,
        base_url=base_url or DEFAULT_BASE_URL,
        expires_in=timedelta(hours=hours),
    )
    role = "lead" if lead else "curator"
    Console(stderr=True).print(
        f"personal link for {role} [bold]{curator_id}[/bold] (works once, for {hours:g} h):"
    )
    print(link)
    return link


DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEMO_LEAD_ID = "lead"


def demo_links(config: Config, curator_id: str) -> dict[str, str]:
    """Single-use links into the workspace for one curator and for the lead (`notalone demo`)."""
    from webapp.auth import invite_link

    _, engine, secret = _workspace_db(config)
    expires = timedelta(hours=config.workspace_app.invite_expiry_hours)
    try:
        return {
            who: invite_link(
                engine, secret, who, lead=lead, base_url=DEFAULT_BASE_URL, expires_in=expires
            )
            for who, lead in ((curator_id, False), (DEMO_LEAD_ID, True))
        }
    finally:
        engine.dispose()


def run_token(*, curator_id: str, config: Config) -> str:
    """A new personal API token (for a CRM or bot), printed once."""
    from webapp.db.accounts import KIND_API, create_credential

    _, engine, _ = _workspace_db(config)
    days = config.workspace_app.api_token_days
    token = create_credential(
        engine, curator_id, KIND_API, timedelta(days=days) if days else None, "cli"
    )
    print(token)
    return token


def run_revoke(*, curator_id: str, config: Config) -> dict[str, int]:
    """End every session and API token of the person and void their open invites."""
    from rich.console import Console

    from webapp.db import revoke_person

    _, engine, _ = _workspace_db(config)
    ended = revoke_person(engine, curator_id)
    Console().print(
        f"[bold]{curator_id}[/bold] revoked: {ended['credentials']} session(s)/token(s) ended, "
        f"{ended['invites']} open invite(s) voided"
    )
    return ended


def run_export(*, out: Path, config: Config) -> Path:
    """Write the recorded contacts as the contract's `interventions` table into `out`."""
    from rich.console import Console

    from webapp.db import export_interventions, recorded_contacts

    _, engine, _ = _workspace_db(config)
    path = export_interventions(engine, out)
    count = len(recorded_contacts(engine))
    Console().print(f"[bold green]exported[/bold green] {count:,} contact(s) to {path}")
    return path
