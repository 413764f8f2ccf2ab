"""The scorer end to end on a hand-made feature frame and a fake model (no MLflow, no builder):
curator files, reasons vs contributions, change and trend, cooldown, report, atomic writes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from features.catalog import feature_names
from features.sources import course_titles
from interventions.reasons import group_features
from interventions.report import ReportContext, build_report
from interventions.routing import check_rule_features
from interventions.weekly import explain_in_words, rank_week
from pipelines import outputs_store, score_steps
from pipelines.feature_cache import CachedFrame
from pipelines.texts import load_texts
from tests.steps import score_week

T = datetime(2026, 3, 2, tzinfo=UTC)
N_CURATORS = 4
PER_CURATOR = 9
CAPACITY = 4


class FakeModel:
    """The DropoutModel interface: a linear log-odds model whose contributions are exact."""

    def __init__(self, names: list[str], seed: int = 0):
        rng = np.random.default_rng(seed)
        self.feature_names = names
        self.feature_types = {n: "category" if n == "attr_age_band" else "float" for n in names}
        self.categories = {"attr_age_band": ["18-25", "36+"]}
        self.weights = pd.Series(rng.normal(0, 0.08, len(names)), index=names)
        self.weights["days_since_last_submission"] = 0.05
        self.weights["attr_age_band"] = 3.0  # large, so it would win if attributes were reasons

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.feature_names if c not in frame.columns]
        if missing:
            from models.model import ModelMismatch

            raise ModelMismatch("missing columns: " + ", ".join(missing), missing=missing)
        x = frame[self.feature_names].copy()
        x["attr_age_band"] = (x["attr_age_band"].astype("str") == "36+").astype(float)
        return x.astype("float64").fillna(0.0)

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        x = self.prepare(frame)
        out = (x - 1.0) * self.weights
        out["bias"] = -3.0
        return out

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        margin = self.contributions(frame).sum(axis=1).to_numpy()
        return 1.0 / (1.0 + np.exp(-margin))


def feature_frame(config, as_of: datetime = T, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = N_CURATORS * PER_CURATOR
    names = feature_names(config.features)
    frame = pd.DataFrame(
        {
            "student_id": pd.Series([f"s{i:03d}" for i in range(n)], dtype="str"),
            "course_id": pd.Series(
                ["PY101-A" if i % 2 else "UX120-A" for i in range(n)], dtype="str"
            ),
            "as_of": pd.Series([as_of] * n).astype("datetime64[us, UTC]"),
            "curator_id": pd.Series([f"cur-{i % N_CURATORS}" for i in range(n)], dtype="str"),
            "mentor_id": pd.Series([None] * n, dtype="str"),
            "course_start": pd.Series([as_of - timedelta(days=60)] * n).astype(
                "datetime64[us, UTC]"
            ),
            "course_end": pd.Series([as_of + timedelta(days=60)] * n).astype("datetime64[us, UTC]"),
            "enrolled_at": pd.Series([as_of - timedelta(days=62)] * n).astype(
                "datetime64[us, UTC]"
            ),
            "label": np.nan,
        }
    )
    for name in names:
        frame[name] = rng.poisson(3, n).astype("float64")
    frame["days_since_last_submission"] = rng.uniform(0, 30, n)
    frame.loc[0, "days_since_last_submission"] = np.nan  # never submitted
    frame["events_change_7d"] = rng.uniform(-1, 1, n)
    frame["course_elapsed_share"] = 0.5
    frame["attr_age_band"] = pd.Categorical(rng.choice(["18-25", "36+"], n))
    return frame


@pytest.fixture()
def source(tmp_path) -> Path:
    folder = tmp_path / "school"
    folder.mkdir()
    pd.DataFrame(
        {
            "course_id": ["PY101-A", "UX120-A"],
            "start_at": [T, T],
            "end_at": [T, T],
            "title": ["Python for beginners", "UX/UI design"],
        }
    ).to_parquet(folder / "courses.parquet")
    return folder


@pytest.fixture()
def setup(monkeypatch, source):
    config = load_config(overrides={"scoring": {"capacity": CAPACITY}})
    frames = {}

    def fake_features(src, cfg, as_of, duplicate_events, workspace, progress):
        frame = frames[as_of] if as_of in frames else feature_frame(cfg, as_of)
        check_rule_features(cfg.scoring, list(frame.columns))
        return CachedFrame(frame, "fake", hit=False)

    monkeypatch.setattr(score_steps, "features_step", fake_features)
    names = [*feature_names(config.features), "attr_age_band"]
    return config, FakeModel(names), source, frames


def run(setup, out: Path, as_of: datetime = T, **kw):
    config, model, source, _ = setup
    return score_week(
        source, as_of, out=out, config=kw.pop("config", config), model=model, validate=False, **kw
    )


def test_curator_files_hold_only_their_students_at_most_capacity_in_order(setup, tmp_path):
    result = run(setup, tmp_path / "out" / "2026-03-02")
    ranking = pd.read_parquet(result["ranking"])
    assert len(ranking) == N_CURATORS * PER_CURATOR
    files = sorted(Path(result["curators_dir"]).glob("*.csv"))
    assert [f.stem for f in files] == [f"cur-{i}" for i in range(N_CURATORS)]
    for path in files:
        listed = pd.read_csv(path, encoding="utf-8-sig", dtype={"student": str})
        assert list(listed.columns) == [
            "section",
            "rank",
            "student",
            "course",
            "risk",
            "change",
            "reasons",
            "tier",
            "action",
            "message",
        ]
        mine = ranking[ranking["curator_id"] == path.stem]
        assert set(listed["student"]) <= set(mine["student_id"])
        assert 0 < len(listed) <= CAPACITY
        assert listed["rank"].tolist() == list(range(1, len(listed) + 1))
        order = mine.set_index("student_id").loc[listed["student"]]
        # triggers first, then by risk
        key = list(zip(~order["triggered"], -order["risk"], strict=True))
        assert key == sorted(key)
        for col in ("reasons", "tier", "action", "message"):
            assert listed[col].notna().all() and (listed[col].str.len() > 0).all()
        for reasons in listed["reasons"]:
            assert 1 <= len(reasons.split("; ")) <= 3


def test_named_reasons_are_the_largest_positive_contributions(setup, tmp_path):
    config, model, _, _ = setup
    result = run(setup, tmp_path / "out" / "2026-03-02")
    ranking = pd.read_parquet(result["ranking"])
    frame = feature_frame(config)
    listed = ranking[ranking["listed"]]
    contrib = model.contributions(frame.set_index("student_id").loc[listed["student_id"]])
    groups = group_features(list(contrib.columns), config.scoring.reason_groups, ("attr_",))
    for (_, row), (_, c) in zip(listed.iterrows(), contrib.iterrows(), strict=True):
        sums = pd.Series({g: c[m].sum() for g, m in groups.items()}).sort_values(
            ascending=False, kind="stable"
        )
        expected = sums[sums > 0].index[:3].tolist() or sums.index[:3].tolist()
        named = [row[f"reason_{i}_group"] for i in (1, 2, 3) if pd.notna(row[f"reason_{i}_group"])]
        assert named == expected
        assert not any(str(row[f"reason_{i}_feature"]).startswith("attr_") for i in (1, 2, 3))
        assert bool(row["reasons_fallback"]) == (sums.iloc[0] <= 0)


def test_rule_triggers_are_always_listed(setup, tmp_path):
    config, model, source, frames = setup
    frame = feature_frame(config)
    frame["deadlines_missed_28d"] = 0.0
    frame["questions_14d"] = 0.0  # no other trigger
    # both curator cur-1: a deadline passed unsubmitted, nothing submitted since
    frame.loc[[5, 9], ["deadlines_missed_28d", "deadlines_due_28d", "submissions_14d"]] = [1, 2, 0]
    frame.loc[[5, 9], ["days_since_enrolment", "days_since_start"]] = 30.0
    frame.loc[[5, 9], "attr_age_band"] = "18-25"
    frames[T] = frame
    result = run(setup, tmp_path / "out" / "2026-03-02")
    ranking = pd.read_parquet(result["ranking"]).set_index("student_id")
    for sid in ("s005", "s009"):
        row = ranking.loc[sid]
        assert row["trigger_stopped_submitting"] and row["listed"] and row["rank"] <= 2
        assert row["routed_by"] == "stopped_submitting" and row["tier"] == "curator"
        assert row["reasons"].startswith("missed 1 of the last 2 deadlines: work was due")


def test_change_trend_and_cooldown_use_earlier_weeks_and_contacts(setup, tmp_path):
    config, model, source, frames = setup
    root = tmp_path / "out"
    week1 = T - timedelta(days=7)
    run(setup, root / week1.date().isoformat(), as_of=week1)
    previous = pd.read_parquet(root / week1.date().isoformat() / "ranking.parquet")
    top = previous.sort_values("risk", ascending=False).iloc[0]
    pd.DataFrame(
        {
            "student_id": [top["student_id"]],
            "course_id": [top["course_id"]],
            "ts": [T - timedelta(days=2)],
            "curator_id": [top["curator_id"]],
            "action": ["write_first"],
            "outcome": ["replied"],
        }
    ).to_parquet(source / "interventions.parquet")
    result = run(setup, root / T.date().isoformat())
    ranking = pd.read_parquet(result["ranking"]).set_index(["student_id", "course_id"])
    prev = previous.set_index(["student_id", "course_id"])["risk"]
    expected = ranking["risk"] - prev.reindex(ranking.index)
    np.testing.assert_allclose(ranking["change"], expected)
    contacted = ranking.loc[(top["student_id"], top["course_id"])]
    assert contacted["in_cooldown"] and not contacted["listed"]
    assert contacted["hold_back"] == "cooldown"
    assert result["previous"] == str(root / week1.date().isoformat())
    html = Path(result["report"]).read_text(encoding="utf-8")
    assert week1.date().isoformat() in html  # the trend / previous column names the earlier week


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.sections, self._section, self.cells = [], [], {}, None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        for key in ("href", "src"):
            if key in a and tag != "img":
                self.links.append(a[key])
        if tag == "details":
            self._section = a["id"].removeprefix("curator-")
            self.sections[self._section] = []

    def handle_endtag(self, tag):
        if tag == "details":
            self._section = None

    def handle_data(self, data):
        if self._section is not None and re.fullmatch(r"s\d{3}", data):
            self.sections[self._section].append(data)


def test_report_is_self_contained_and_each_curator_section_holds_only_their_students(
    setup, tmp_path
):
    result = run(setup, tmp_path / "out" / "2026-03-02")
    html = Path(result["report"]).read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)
    assert len(page.images) >= 3
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert not re.search(r"https?://", html)
    assert page.links == []
    ranking = pd.read_parquet(result["ranking"])
    assert set(page.sections) == set(ranking["curator_id"])
    for curator, shown in page.sections.items():
        mine = ranking[(ranking["curator_id"] == curator) & ranking["listed"]]
        assert sorted(shown) == sorted(mine["student_id"])


def test_warnings_are_visible_in_the_report(setup, tmp_path):
    config, model, source, _ = setup
    frame = feature_frame(config)
    ranking = rank_week(frame, model.predict_proba(frame), T, config)
    contrib = score_steps.explain_step(model, frame, ranking)
    texts = load_texts("en", config)
    titles = course_titles(source)
    full = explain_in_words(frame, ranking, contrib, titles, T, config, texts)
    html = build_report(
        full,
        ReportContext(
            as_of=T.date().isoformat(),
            model="m",
            source=str(source),
            high_risk=config.scoring.report_high_risk,
            decimals=config.scoring.risk_decimals,
            histogram_bins=config.scoring.report_histogram_bins,
            warnings=("drift: PSI of events_7d is 0.31",),
        ),
        texts,
    )
    assert 'class="warn"' in html and "PSI of events_7d is 0.31" in html


def test_reruns_give_byte_identical_curator_files(setup, tmp_path):
    out = tmp_path / "out" / "2026-03-02"
    first = run(setup, out)
    before = {p.name: p.read_bytes() for p in Path(first["curators_dir"]).glob("*.csv")}
    run(setup, out)
    after = {p.name: p.read_bytes() for p in Path(first["curators_dir"]).glob("*.csv")}
    assert before == after and len(before) == N_CURATORS
    assert all(b.startswith(b"\xef\xbb\xbfsection,rank,student,") for b in before.values())


@pytest.mark.parametrize("failing_step", ["explain_in_words", "report_step", "write_week_report"])
def test_a_failed_run_leaves_the_previous_outputs_untouched(
    setup, tmp_path, monkeypatch, failing_step
):
    out = tmp_path / "out" / "2026-03-02"
    run(setup, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def boom(*args, **kwargs):
        raise RuntimeError("step failed")

    if failing_step == "write_week_report":
        # fail after ranking.parquet and the curator files went into the temporary folder
        monkeypatch.setattr(outputs_store.Path, "write_text", boom)
    else:
        monkeypatch.setattr(score_steps, failing_step, boom)
    config = load_config(overrides={"scoring": {"capacity": 2}})  # would change every list
    with pytest.raises(RuntimeError, match="step failed"):
        run(setup, out, config=config)
    monkeypatch.undo()
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary folder left


def test_model_that_does_not_match_the_features_is_refused(setup, tmp_path):
    config, model, source, _ = setup
    from features.errors import NotaloneError

    stranger = FakeModel([*model.feature_names, "logins_90d"])
    with pytest.raises(NotaloneError, match="logins_90d"):
        score_week(
            source, T, out=tmp_path / "o" / "x", config=config, model=stranger, validate=False
        )
    assert not (tmp_path / "o" / "x").exists()


def test_capacity_zero_lists_nobody_but_still_writes_every_curator_file(setup, tmp_path):
    config = load_config(overrides={"scoring": {"capacity": 0}})
    result = run(setup, tmp_path / "out" / "2026-03-02", config=config)
    files = list(Path(result["curators_dir"]).glob("*.csv"))
    assert len(files) == N_CURATORS
    assert all(p.read_text(encoding="utf-8-sig").count("\n") == 1 for p in files)


def test_russian_lists(setup, tmp_path):
    config = load_config(overrides={"scoring": {"capacity": CAPACITY, "language": "ru"}})
    result = run(setup, tmp_path / "out" / "2026-03-02", config=config)
    text = (Path(result["curators_dir"]) / "cur-0.csv").read_text(encoding="utf-8-sig")
    assert "Здравствуйте" in text or "добрый день" in text
    assert "Куратор" in text or "Ментор" in text or "Техподдержка" in text
    assert "Python for beginners" in text or "UX/UI design" in text


def test_default_output_is_the_workspace_week_folder_and_the_result_names_the_outputs(
    setup, isolated_workspace
):
    config, model, source, _ = setup
    result = score_week(source, "2026-03-02", config=config, model=model, validate=False)
    week = isolated_workspace / "outputs" / "2026-03-02"
    assert result["out"] == str(week.resolve())
    for key in ("ranking", "report", "curators_dir"):
        assert Path(result[key]).exists() and Path(result[key]).is_relative_to(week.resolve())
    assert result["students"] == N_CURATORS * PER_CURATOR and result["curators"] == N_CURATORS
    assert set(result["timings"]) >= {"features", "predict", "rank", "explain", "words", "write"}
