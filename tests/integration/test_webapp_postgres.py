"""The workspace database functions against a real PostgreSQL server (psycopg 3).

The unit tests of `tests/unit/test_webapp_db.py` run again here with `engine` on PostgreSQL:
importing them into this module makes pytest collect them with this module's fixture."""

from __future__ import annotations

import uuid

import pytest

from tests.unit.test_webapp_db import (  # noqa: F401
    test_accounts_tokens_are_hashed_and_revocable,
    test_empty_recorded_contacts_still_has_columns,
    test_expired_credential_and_invite_refused,
    test_failed_insert_rolls_back_the_whole_week,
    test_invite_is_single_use,
    test_later_outcome_supersedes,
    test_lead_summary_counts,
    test_publish_is_atomic,
    test_publish_labels_and_display_names,
    test_publish_lists_only_listed_in_rank_order,
    test_recorded_contacts_has_the_interventions_shape,
    test_republish_replaces_list_and_keeps_records,
)
from tests.workspace_data import WEEK, tiny_ranking
from webapp.db import open_workspace_db, publish_week, recorded_contacts


@pytest.fixture
def engine(postgres_server, tmp_path):
    dsn = postgres_server.create_database(f"ws_{uuid.uuid4().hex[:12]}")
    engine = open_workspace_db(dsn, tmp_path)
    assert engine.dialect.name == "postgresql"
    assert engine.dialect.driver == "psycopg"
    yield engine
    engine.dispose()


def test_env_url_and_app_on_postgres(postgres_server, tmp_path, monkeypatch):
    """NOTALONE_DB_URL selects the server; the app records a contact there."""
    from fastapi.testclient import TestClient

    from configs import load_config
    from tests.integration.test_webapp_api import SECRET, login
    from webapp.app import create_app
    from webapp.settings import AppSettings

    dsn = postgres_server.create_database("ws_app")
    monkeypatch.setenv("NOTALONE_DB_URL", dsn)
    app = create_app(AppSettings(home=tmp_path, config=load_config(), secret=SECRET))
    engine = app.state.engine
    assert engine.dialect.name == "postgresql"
    assert not (tmp_path / "workspace.db").exists()
    publish_week(engine, as_of=WEEK, ranking=tiny_ranking())
    client, csrf = login(app, "cur-a")
    assert isinstance(client, TestClient)
    data = {"csrf_token": csrf, "week_id": 1, "student_id": "s1", "course_id": "PY101-2026A"}
    posted = client.post(
        "/contacts", data={**data, "channel": "email", "outcome": "replied"}, follow_redirects=False
    )
    assert posted.status_code == 303
    assert recorded_contacts(engine)["outcome"].tolist() == ["replied"]
    # Migrating again (a second app or the scorer opening the same database) is a no-op.
    open_workspace_db(dsn, tmp_path).dispose()
