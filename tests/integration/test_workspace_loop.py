"""The loop: contacts recorded through the app come back as the contract's `interventions`
table (`recorded_contacts`, `notalone app export`), and that table holds the students back in
next week's ranking (the scorer's cooldown)."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from configs import load_config
from interventions.ranking import HOLD_COOLDOWN, last_contact, rank_for_curators
from pipelines.cli import app as cli
from tests.integration.test_webapp_api import COURSE, login
from tests.workspace_data import tiny_ranking
from webapp.app import create_app
from webapp.db import publish_week, recorded_contacts
from webapp.db.records import INTERVENTION_COLUMNS
from webapp.settings import AppSettings, load_secret


def test_contacts_recorded_in_the_app_feed_the_next_weeks_cooldown(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("NOTALONE_HOME", str(home))
    app = create_app(AppSettings(home=home, config=load_config()))  # the workspace's own secret
    engine = app.state.engine
    # Contacts are recorded "now": this week's list was published six days ago, the next
    # scoring is tomorrow 00:00, so the contacts fall inside its cooldown window.
    week = pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=6)
    next_week = (week + pd.Timedelta(days=7)).to_pydatetime()
    publish_week(
        engine, as_of=week.to_pydatetime(), ranking=tiny_ranking(), model_uri="models:/m@champion"
    )

    client, csrf = login(app, "cur-a", secret=load_secret(home))
    for student, outcome in (("s1", "replied"), ("s3", "no_answer")):
        data = {"csrf_token": csrf, "week_id": 1, "student_id": student, "course_id": COURSE}
        posted = client.post(
            "/contacts",
            data={**data, "channel": "message", "outcome": outcome, "message": "Hi!"},
            follow_redirects=False,
        )
        assert posted.status_code == 303

    table = recorded_contacts(engine)
    assert list(table.columns) == INTERVENTION_COLUMNS
    assert sorted(table["student_id"]) == ["s1", "s3"]
    assert set(table["curator_id"]) == {"cur-a"}
    assert dict(zip(table["student_id"], table["outcome"], strict=True)) == {
        "s1": "replied",
        "s3": "no_answer",
    }

    out = tmp_path / "export"
    result = CliRunner().invoke(cli, ["app", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    exported = pd.read_parquet(out / "interventions.parquet")
    assert list(exported.columns) == INTERVENTION_COLUMNS
    assert sorted(exported["student_id"]) == ["s1", "s3"]

    # Next week's ranking, as the scorer builds it: the contacted students are held back.
    scoring = load_config().scoring
    nxt = tiny_ranking().drop(columns=["listed", "rank"])
    nxt["as_of"] = next_week
    nxt["change"] = 0.0  # no risk jump: the cooldown holds
    contacts = exported.assign(ts=pd.to_datetime(exported["ts"], utc=True))
    nxt["last_contact_at"] = pd.to_datetime(last_contact(nxt, contacts), utc=True)
    ranked = pd.concat([nxt, rank_for_curators(nxt, next_week, scoring)], axis=1)
    held = ranked[ranked["hold_back"] == HOLD_COOLDOWN]["student_id"]
    assert sorted(held) == ["s1", "s3"]
    assert ranked.set_index("student_id").loc["s2", "listed"]
