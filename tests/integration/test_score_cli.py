"""`notalone score` on a trained synthetic school: the three outputs, lists that follow the rules,
reasons that agree with the real model's contributions, idempotent re-runs, clear errors."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from configs import load_config
from pipelines.cli import app

runner = CliRunner()


@pytest.fixture()
def workspace(trained_workspace):
    return trained_workspace


def score(source, as_of, out: Path, *extra: str):
    result = runner.invoke(
        app,
        [
            "score",
            "--source",
            str(source),
            "--as-of",
            as_of.date().isoformat(),
            "--out",
            str(out),
            "--no-prefect",
            *extra,
        ],
    )
    return result


@pytest.fixture(scope="module")
def scored(trained_week, tmp_path_factory):
    """Two consecutive weeks scored into one outputs root (so the second has a change column)."""
    home, source, as_of = trained_week
    root = tmp_path_factory.mktemp("outputs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOTALONE_HOME", str(home))
        # module fixtures run before the per-test reset: drop what earlier tests' workspaces set
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        for week in (as_of - timedelta(days=7), as_of):
            result = score(source, week, root / week.date().isoformat())
            assert result.exit_code == 0, result.output
    return root / as_of.date().isoformat(), result.output


def test_score_writes_ranking_curator_lists_and_report(scored):
    out, output = scored
    assert (out / "ranking.parquet").is_file() and (out / "report.html").is_file()
    assert "listed" in output and str(out / "curators") in output
    ranking = pd.read_parquet(out / "ranking.parquet")
    assert ranking[["student_id", "course_id"]].duplicated().sum() == 0
    assert ranking["change"].notna().mean() > 0.5  # the week before was scored too
    assert ranking["risk"].between(0, 1).all()


def test_curator_files_follow_capacity_order_and_privacy(scored):
    out, _ = scored
    capacity = load_config().scoring.capacity
    ranking = pd.read_parquet(out / "ranking.parquet")
    files = sorted((out / "curators").glob("*.csv"))
    assert {f.stem for f in files} == set(ranking["curator_id"])
    for path in files:
        both = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
        mine = ranking[ranking["curator_id"] == path.stem].set_index(["student_id", "course_id"])
        sections = both["section"].tolist()
        # early warnings first, then the win-back part; each ranked from 1 and capped
        assert sections == sorted(sections, key=lambda s: s != "early_warning")
        back = both[both["section"] == "win_back"]
        assert len(back) <= load_config().scoring.winback_capacity
        assert back["rank"].astype(int).tolist() == list(range(1, len(back) + 1))
        listed = both[both["section"] == "early_warning"]
        assert len(listed) <= capacity
        assert listed["rank"].astype(int).tolist() == list(range(1, len(listed) + 1))
        keys = list(zip(listed["student"], listed["course"], strict=True))
        assert set(keys) <= set(mine.index)  # only this curator's students
        rows = mine.loc[keys]
        assert (rows["section"] == "early_warning").all()
        order = list(zip(~rows["triggered"], -rows["risk"], strict=True))
        assert order == sorted(order)
        # every trigger not held back by a recent contact (or in the hold-out's control arm) is
        # listed, as far as capacity allows
        early = mine[mine["section"] == "early_warning"]
        triggered = early[early["triggered"] & ~early["hold_back"].isin(["cooldown", "control"])]
        assert rows["triggered"].sum() == min(len(triggered), capacity)
        for col in ("reasons", "tier", "action", "message"):
            assert (listed[col].str.strip() != "").all(), (path.name, col)
        assert listed["reasons"].map(lambda r: 1 <= len(r.split("; ")) <= 3).all()
        assert listed["message"].str.contains("{first_name}", regex=False).all()
        assert listed["risk"].str.fullmatch(r"0\.\d{3}|1\.000").all()


def test_named_reasons_are_the_models_largest_positive_contributions(scored, workspace):
    from features.build import build_feature_frame
    from interventions.reasons import group_features
    from pipelines.mlflow_store import load_model

    out, _ = scored
    source, as_of = workspace
    config = load_config()
    ranking = pd.read_parquet(out / "ranking.parquet")
    listed = ranking[ranking["listed"]].sample(
        n=min(25, int(ranking["listed"].sum())), random_state=0
    )
    frame = build_feature_frame(source, config, as_of=as_of).set_index(["student_id", "course_id"])
    model = load_model(None)
    rows = frame.loc[list(zip(listed["student_id"], listed["course_id"], strict=True))]
    contrib = model.contributions(rows.reset_index())
    groups = group_features(
        list(contrib.columns), config.scoring.reason_groups, config.scoring.skip_reason_prefixes
    )
    for (_, row), (_, c) in zip(listed.iterrows(), contrib.iterrows(), strict=True):
        sums = pd.Series({g: c[m].sum() for g, m in groups.items()})
        sums = sums.sort_values(ascending=False, kind="stable")
        expected = sums[sums > 0].index[:3].tolist() or sums.index[:3].tolist()
        named = [row[f"reason_{i}_group"] for i in (1, 2, 3) if pd.notna(row[f"reason_{i}_group"])]
        assert named == expected, row["student_id"]
        strongest = c[groups[named[0]]].idxmax()
        assert row["reason_1_feature"] == strongest


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src", ""))


def test_report_opens_without_network(scored):
    out, _ = scored
    html = (out / "report.html").read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(html)
    assert len(parser.sources) >= 4  # distribution, trend, tiers, reasons, per curator
    assert all(s.startswith("data:image/png;base64,") for s in parser.sources)
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?:", html)


def test_rerunning_the_same_week_gives_byte_identical_lists(scored, workspace):
    out, _ = scored
    source, as_of = workspace
    first = {p.name: p.read_bytes() for p in (out / "curators").glob("*.csv")}
    result = score(source, as_of, out)  # same week, same history, replaces the folder
    assert result.exit_code == 0, result.output
    second = {p.name: p.read_bytes() for p in (out / "curators").glob("*.csv")}
    assert first == second and first


def test_without_a_champion_the_scorer_says_how_to_train_one(trained_week, tmp_path):
    _, source, as_of = trained_week  # NOTALONE_HOME is a fresh, empty workspace here
    result = score(source, as_of, tmp_path / "out")
    assert result.exit_code == 2
    assert "notalone train" in result.output
    assert not (tmp_path / "out").exists()


def test_a_date_with_nobody_active_is_a_clear_error(workspace, tmp_path):
    source, _ = workspace
    result = runner.invoke(
        app,
        [
            "score",
            "--source",
            str(source),
            "--as-of",
            "2001-01-01",
            "--out",
            str(tmp_path / "o"),
            "--no-prefect",
        ],
    )
    assert result.exit_code == 2
    assert "nothing to score" in result.output
