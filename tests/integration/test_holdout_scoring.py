"""The hold-out through the weekly scoring: a control student is on no CSV, workspace list or
report for its weeks out, technical-support cases are never held out, and re-scoring a week
changes no arm and no list."""

from __future__ import annotations

import re
from datetime import timedelta

import pandas as pd
from sqlalchemy import select

from configs import load_config
from interventions.holdout import ARM_CONTROL, HOLD_CONTROL
from tests.steps import score_week
from webapp.db import open_workspace_db, read_arms
from webapp.db.models import ListEntry, Week


def listed_ids(out, engine, as_of) -> dict[str, set[str]]:
    csvs = set()
    for path in (out / "curators").glob("*.csv"):
        table = pd.read_csv(path, dtype="str")
        csvs |= set(zip(table["student"], table["course"], strict=True))
    report = (out / "report.html").read_text(encoding="utf-8")
    with engine.connect() as conn:
        week_id = conn.execute(select(Week.week_id).where(Week.as_of == as_of)).scalar_one()
        page = {
            (s, c)
            for s, c in conn.execute(
                select(ListEntry.student_id, ListEntry.course_id).where(
                    ListEntry.week_id == week_id
                )
            )
        }
    return {"csv": csvs, "page": page, "report": report}


def test_control_students_are_on_no_list_csv_page_or_report(
    trained_workspace, tmp_path, monkeypatch
):
    source, data_end = trained_workspace
    db_url = f"sqlite:///{tmp_path / 'holdout.db'}"
    monkeypatch.setenv("NOTALONE_DB_URL", db_url)
    config = load_config(overrides={"experiment": {"control_share": 0.3, "weeks_out": 2}})
    week_a, week_b = data_end - timedelta(days=7), data_end
    engine = open_workspace_db(db_url, tmp_path)

    drawn_in_a = set()
    for week, out in ((week_a, tmp_path / "a"), (week_b, tmp_path / "b")):
        score_week(source, week, config=config, out=out)
        arms = read_arms(engine)
        when = pd.Timestamp(week, tz="UTC") if week.tzinfo is None else pd.Timestamp(week)
        out_now = arms[
            (arms["arm"] == ARM_CONTROL)
            & (arms["assigned_at"] <= when)
            & (arms["release_at"] > when)
        ]
        # the arm is per enrolment: a student may be control in one course, listed in another
        control = set(zip(out_now["student_id"], out_now["course_id"], strict=True))
        assert control, "a 30 % share of the listed students draws someone"
        if week == week_a:
            drawn_in_a = control
        else:
            assert drawn_in_a <= control, "control students of week A are still out in week B"
        ranking = pd.read_parquet(out / "ranking.parquet")
        keys = pd.Series(list(zip(ranking["student_id"], ranking["course_id"], strict=True)))
        # a control student who has become a technical-support case is released (listed)
        technical = (ranking["tier"] == "technical_support").to_numpy() & ranking["listed"]
        released = set(keys[technical.to_numpy()]) & control
        if week == week_a:
            assert not released, "a technical-support case was drawn into control"
        control -= released
        is_control = keys.isin(control).to_numpy()
        held = ranking[is_control]
        listed_students = set(ranking.loc[ranking["listed"], "student_id"])
        shown = listed_ids(out, engine, pd.Timestamp(week).to_pydatetime())
        assert not control & shown["csv"], sorted(control & shown["csv"])[:5]
        assert not control & shown["page"]
        for student in {s for s, _ in control} - listed_students:
            assert not re.search(rf"\b{re.escape(student)}\b", shown["report"]), student
        # the report's effect section: arms and the plain verdict while nothing has matured
        section = shown["report"][shown["report"].index('id="effect"') :]
        assert "in the control arm" in section and "not enough evidence yet" in section
        assert not held["listed"].any()
        assert (held["hold_back"] == HOLD_CONTROL).all()
        assert (ranking["hold_back"] == HOLD_CONTROL).sum() == len(held)
        summary = pd.read_json(out / "summary.json", typ="series")
        assert summary["held_back_control"] == len(held)

    # re-scoring week A changes no arm (and gives the same lists)
    before = read_arms(engine)
    csv_before = {p.name: p.read_bytes() for p in (tmp_path / "a" / "curators").glob("*.csv")}
    score_week(source, week_a, config=config, out=tmp_path / "a")
    after = read_arms(engine)
    pd.testing.assert_frame_equal(
        before.sort_values(["student_id", "course_id"]).reset_index(drop=True),
        after.sort_values(["student_id", "course_id"]).reset_index(drop=True),
    )
    assert csv_before == {
        p.name: p.read_bytes() for p in (tmp_path / "a" / "curators").glob("*.csv")
    }
    engine.dispose()


def test_effect_command_and_the_leads_page(trained_workspace, tmp_path, monkeypatch):
    """`notalone effect --json` on a scored week: comparisons with verdicts (a few weeks of a
    small school are not enough evidence), the plan, and the lead's page showing both."""
    import json

    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from pipelines.cli import app as cli
    from pipelines.settings import Workspace
    from webapp import auth
    from webapp.app import create_app
    from webapp.db import EFFECT_FILE
    from webapp.settings import AppSettings

    source, data_end = trained_workspace
    db_url = f"sqlite:///{tmp_path / 'effect.db'}"
    monkeypatch.setenv("NOTALONE_DB_URL", db_url)
    config = load_config(overrides={"experiment": {"control_share": 0.3}})
    score_week(source, data_end - timedelta(days=35), config=config, out=tmp_path / "w")
    home = Workspace.resolve().root
    effect_file = home / EFFECT_FILE
    try:
        result = CliRunner().invoke(
            cli,
            ["effect", "--source", str(source), "--as-of", data_end.date().isoformat(), "--json"],
        )
        assert result.exit_code == 0, result.output
        shown = json.loads(result.output)
        assert shown["drawn"] > 0 and 0 < shown["control"] < shown["drawn"]
        overall = [c for c in shown["comparisons"] if c["band"] == "all"]
        assert {c["outcome"] for c in overall} == {"dropout", "enrolled_at_end"}
        # stratified by risk band x week of the draw; strata without both arms left out, counted
        assert all(c["n_listed"] + c["n_control"] + c["dropped"] <= shown["drawn"] for c in overall)
        assert all((c["strata"] > 0) == (c["n_listed"] + c["n_control"] > 0) for c in overall)
        assert any(c["strata"] > 0 for c in overall)
        assert all(c["verdict"] == "not enough evidence yet" for c in shown["comparisons"])
        assert shown["plan"]["per_arm_equal"] > 0 and "weeks" in shown["plan"]["text"]
        assert effect_file.is_file()

        plan = CliRunner().invoke(cli, ["effect", "--source", str(source), "--plan"])
        assert plan.exit_code == 0, plan.output
        assert "enrolments per arm" in plan.output and "[all]" not in plan.output

        secret = b"holdout-test-" * 4
        app = create_app(AppSettings(home=home, config=config, secret=secret, db_url=db_url))
        client = TestClient(app)
        link = auth.invite_link(
            app.state.engine,
            secret,
            "lead-h",
            lead=True,
            base_url="http://t",
            expires_in=timedelta(hours=1),
        ).removeprefix("http://t")
        client.get(link)
        client.post(link, follow_redirects=False)
        page = client.get("/lead")
        assert page.status_code == 200
        section = page.text[page.text.index('id="effect"') :]
        assert f"{shown['drawn']} enrolments drawn, {shown['control']} in the control" in section
        # one week scored: every control student drawn is out in the week shown
        assert f"{shown['control']} of them on no list this week" in section
        assert "not enough evidence yet" in section
        assert shown["plan"]["text"].split(";")[0] in section
    finally:
        effect_file.unlink(missing_ok=True)
