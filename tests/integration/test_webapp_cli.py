"""`notalone app invite / token / revoke / export` and the scorer-side helpers."""

from __future__ import annotations

import pandas as pd
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from configs import load_config
from pipelines import workspace_store
from pipelines.cli import app as cli
from pipelines.settings import Workspace
from pipelines.texts import load_texts
from tests.workspace_data import WEEK, tiny_ranking
from webapp.app import create_app
from webapp.db import open_workspace_db, records
from webapp.settings import AppSettings

runner = CliRunner()


def test_invite_link_opens_the_app_once_and_revoke_ends_it(isolated_workspace):
    home = isolated_workspace
    result = runner.invoke(cli, ["app", "invite", "cur-a", "--base-url", "http://school:9000/"])
    assert result.exit_code == 0, result.output
    link = result.stdout.strip().splitlines()[-1]
    assert link.startswith("http://school:9000/invite/")
    app = create_app(AppSettings(home=home, config=load_config()))
    client = TestClient(app)
    path = link.removeprefix("http://school:9000")
    assert client.post(path, follow_redirects=False).status_code == 303
    assert TestClient(app).post(path, follow_redirects=False).status_code == 403
    token = runner.invoke(cli, ["app", "token", "cur-a"]).stdout.strip().splitlines()[-1]
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    assert api.get("/api/v1/me").json()["person_id"] == "cur-a"
    revoked = runner.invoke(cli, ["app", "revoke", "cur-a"])
    assert revoked.exit_code == 0, revoked.output
    assert "2 session(s)/token(s) ended" in revoked.stdout
    assert client.get("/week").status_code == 401
    assert api.get("/api/v1/me").status_code == 401


def test_revoke_unknown_person_is_exit_2():
    result = runner.invoke(cli, ["app", "revoke", "nobody"])
    assert result.exit_code == 2
    assert "no account 'nobody'" in result.output


def test_export_of_an_empty_workspace_has_the_columns(tmp_path):
    result = runner.invoke(cli, ["app", "export", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "out" / "interventions.parquet")
    assert table.empty
    assert list(table.columns) == [
        "student_id",
        "course_id",
        "ts",
        "curator_id",
        "action",
        "outcome",
    ]


def test_publish_scored_week_labels_names_and_titles(isolated_workspace, tmp_path):
    source = tmp_path / "school"
    source.mkdir()
    pd.DataFrame(
        {
            "student_id": ["s1", "s2"],
            "course_id": ["PY101-2026A"] * 2,
            "display_name": ["Anna Petrova", None],
        }
    ).to_parquet(source / "enrollments.parquet")
    names = workspace_store.display_names_of(source)
    assert names.to_dict("records") == [{"student_id": "s1", "display_name": "Anna Petrova"}]
    config = load_config()
    workspace = Workspace.resolve().activate()
    published = workspace_store.publish(
        tiny_ranking(),
        as_of=WEEK,
        model_uri="models:/m@champion",
        config=config,
        texts=load_texts(config.scoring.language),
        source=source,
        titles=pd.Series({"PY101-2026A": "Python for beginners"}),
        workspace=workspace,
    )
    assert published["listed"] == 5
    engine = open_workspace_db(None, isolated_workspace)
    first = records.curator_cards(engine, published["week_id"], "cur-a")[0].entry
    assert (first["tier_label"], first["action_label"]) == ("Curator", "Write first")
    assert first["display_name"] == "Anna Petrova"
    assert first["course_title"] == "Python for beginners"
    assert workspace_store.contacts_between(workspace, WEEK - pd.Timedelta(days=30), WEEK).empty
