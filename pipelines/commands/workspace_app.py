"""`notalone app ...`: run the curator workspace, invite and revoke people, export contacts."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from configs.schema import Config
from pipelines.settings import Workspace


def _workspace_db(config: Config):
    from webapp.db import open_workspace_db
    from webapp.settings import load_secret

    workspace = Workspace.resolve()
    workspace.root.mkdir(parents=True, exist_ok=True)
    return workspace, open_workspace_db(None, workspace.root), load_secret(workspace.root)


def run_app(*, host: str, port: int, config: Config) -> None:
    """Serve the workspace on host:port (127.0.0.1 unless told otherwise) until Ctrl-C."""
    import uvicorn
    from rich.console import Console

    from webapp.app import create_app
    from webapp.settings import AppSettings

    workspace = Workspace.resolve()
    workspace.root.mkdir(parents=True, exist_ok=True)
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
        base_url=base_url or "http://127.0.0.1:8000",
        expires_in=timedelta(hours=hours),
    )
    role = "lead" if lead else "curator"
    Console(stderr=True).print(
        f"personal link for {role} [bold]{curator_id}[/bold] (works once, for {hours:g} h):"
    )
    print(link)
    return link


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


# --------------------------------------------------------------- wiring for `notalone score`


def display_names_of(source: Path) -> pd.DataFrame | None:
    """(student_id, display_name) from the source's enrollments, when it has that optional
    column; for curator-facing pages only (never MLflow)."""
    from features.sources import read_table

    enrollments = read_table(source, "enrollments")
    if "display_name" not in enrollments.columns:
        return None
    names = enrollments[["student_id", "display_name"]].dropna(subset=["display_name"])
    return names.astype("str").drop_duplicates("student_id")


def publish_scored_week(
    ranking: pd.DataFrame,
    *,
    as_of: datetime,
    model_uri: str,
    config: Config,
    source: Path | None = None,
    course_titles: pd.Series | None = None,
):
    """Publish a scored week (the scorer's full ranking) into the workspace database: the lists
    with the tier and action labels of the scoring language, display names from the source's
    enrollments and the course titles. Returns `webapp.db.PublishedWeek`."""
    from interventions.ranking import curator_lists
    from pipelines.scoring import load_texts
    from webapp.db import publish_week

    _, engine, _ = _workspace_db(config)
    texts = load_texts(config.scoring.language)
    lists = curator_lists(ranking, texts.tiers, texts.actions, config.scoring.risk_decimals)
    try:
        return publish_week(
            engine,
            as_of=as_of,
            ranking=ranking,
            lists=lists,
            model_uri=model_uri,
            language=config.scoring.language,
            display_names=display_names_of(Path(source)) if source is not None else None,
            course_titles=course_titles,
        )
    finally:
        engine.dispose()


def workspace_contacts(config: Config) -> pd.DataFrame:
    """The contacts recorded in the workspace as the `interventions` table (for the cooldown);
    empty, with the columns, when there is no workspace database yet."""
    from webapp.db import recorded_contacts

    _, engine, _ = _workspace_db(config)
    try:
        return recorded_contacts(engine)
    finally:
        engine.dispose()
