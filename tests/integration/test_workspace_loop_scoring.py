"""The loop end to end through `notalone score` (passes once the scorer publishes into the
workspace and reads its recorded contacts for the cooldown):

1. scoring week A publishes its lists into the workspace database;
2. two students of one curator are contacted through the app's API (a day after A);
3. re-scoring A replaces its list and keeps both contacts and their outcomes;
4. scoring week B = A + 7 days holds both back (cooldown), exactly as a source's own
   `interventions` table would, and any of them still listed shows the contact on their card.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from configs import load_config
from pipelines.cli import app as cli
from webapp.app import create_app
from webapp.db import open_workspace_db, recorded_contacts, records
from webapp.db.accounts import KIND_API, create_credential, create_person
from webapp.settings import AppSettings


def score(source, as_of, out):
    result = CliRunner().invoke(
        cli,
        [
            "score",
            "--source",
            str(source),
            "--as-of",
            as_of.date().isoformat(),
            "--out",
            str(out / as_of.date().isoformat()),
            "--no-prefect",
        ],
    )
    assert result.exit_code == 0, result.output
    return pd.read_parquet(out / as_of.date().isoformat() / "ranking.parquet")


def test_scoring_publishes_and_the_cooldown_reads_the_workspace(
    trained_week, tmp_path, monkeypatch
):
    home, source, data_end = trained_week
    monkeypatch.setenv("NOTALONE_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # A database of this test only: the session's workspace stays as other tests expect it.
    db_url = f"sqlite:///{tmp_path / 'loop.db'}"
    monkeypatch.setenv("NOTALONE_DB_URL", db_url)
    week_a, week_b = data_end - timedelta(days=7), data_end
    out = tmp_path / "outputs"

    ranking_a = score(source, week_a, out)
    engine = open_workspace_db(db_url, home)
    published = records.get_week(engine, week_a)
    assert published is not None, "notalone score did not publish the week into the workspace"
    listed = ranking_a[ranking_a["listed"]].sort_values(["curator_id", "rank"])
    assert published.listed == len(listed)
    curator = listed["curator_id"].iloc[0]
    pair = listed[listed["curator_id"] == curator].head(2)
    assert len(pair) == 2

    app = create_app(AppSettings(home=home, config=load_config(), db_url=db_url))
    create_person(app.state.engine, curator)
    token = create_credential(app.state.engine, curator, KIND_API, timedelta(days=1))
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    for row, outcome in zip(pair.itertuples(), ("replied", "no_answer"), strict=True):
        posted = api.post(
            "/api/v1/contacts",
            json={
                "student_id": row.student_id,
                "course_id": row.course_id,
                "week": week_a.date().isoformat(),
                "channel": "message",
                "outcome": outcome,
                "ts": (week_a + timedelta(days=1)).isoformat(),
            },
        )
        assert posted.status_code == 201, posted.text

    score(source, week_a, out)  # re-scoring A keeps what was recorded against it
    again = records.get_week(engine, week_a)
    assert again.week_id == published.week_id
    kept = recorded_contacts(engine)
    assert sorted(kept["student_id"]) == sorted(pair["student_id"])
    assert sorted(kept["outcome"]) == ["no_answer", "replied"]
    cards = {
        c.entry["student_id"]: c for c in records.curator_cards(engine, again.week_id, curator)
    }
    for sid in pair["student_id"]:
        assert sid in cards and len(cards[sid].contacts) == 1

    ranking_b = score(source, week_b, out)
    rows_b = ranking_b.set_index("student_id").loc[list(pair["student_id"])]
    assert rows_b["in_cooldown"].all(), rows_b[["in_cooldown", "listed", "hold_back"]]
    held = rows_b[~rows_b["cooldown_lifted"].astype(bool)]
    assert (held["hold_back"] == "cooldown").all()
    assert not held["listed"].any()
    week_b_ref = records.get_week(engine, week_b)
    cards_b = {
        c.entry["student_id"]: c for c in records.curator_cards(engine, week_b_ref.week_id, curator)
    }
    for sid in rows_b[rows_b["listed"].astype(bool)].index:
        assert len(cards_b[sid].contacts) == 1  # listed again after a risk jump: history shows
