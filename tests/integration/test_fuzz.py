"""Hostile input: hundreds of randomly corrupted sources through `validate`, `features`, `score`.

Every case must end in one of two ways:
(a) a clear error: exit code 2, the table (and column) named, no traceback, no output file;
(b) a correct run: exit code 0, warnings named, a well-formed output (features only for
    enrollments that exist; for warnings about ignored rows, exactly the clean school's features).
Never another exit code, never an exception escaping the CLI, never a partial output.

Known gaps are listed in KNOWN_GAPS: while a gap is listed the fuzz run tolerates it and its
reproduction test below is a strict xfail; once the code is fixed that test passes unexpectedly
(and so fails), which is the signal to drop the gap from the set, making the fuzz run strict again.
"""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from typer.testing import CliRunner

from configs import load_config
from features.build import write_feature_file
from features.catalog import KEY_COLUMNS, LABEL_COLUMN, META_COLUMNS, feature_names
from features.sources import locate_tables
from pipelines.cli import app
from tests.fuzz import (
    FILE_CORRUPTIONS,
    FRAME_CORRUPTIONS,
    Case,
    Expect,
    Recipe,
    base_school,
    build_case,
    recipes,
)
from tests.sources import write_source

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out; `make test` runs it

# Gaps this test found, all fixed since (see docs/reliability.md, "Hostile input"):
# features_skips_validation and score_skips_validation (`features` and `score` now refuse a
# source `validate` rejects), zero_byte_assignments (a header-less CSV of a required table is a
# validate error) and score_duplicate_course_rows (an exact duplicate course row is harmless).
# A gap found later is listed here: the fuzz run tolerates it and its repro test is a strict xfail.
KNOWN_GAPS: set[str] = set()

MIN_CASES = 200  # the bar: at least this many corrupted sources per CI run
MAX_EXAMPLES = 210  # >= MIN_CASES with a margin; ~1 s per case on 2 busy cores, mostly scoring
COURSE_START = pd.Timestamp("2025-01-06", tz="UTC")  # course c1 of tests.sources.random_school
SCORE_WEEK = 3  # score as of this week when features are built for every week (--all)
# The model every case is scored with: trained once on a larger clean school of the same shape.
TRAIN_STUDENTS, TRAIN_EVENTS, TRAIN_SEED = 300, 6000, 1
PREVIOUS_WEEK = "2025-01-06"  # name of the earlier week folder that must stay untouched
NOT_SCORED = -1

runner = CliRunner()


@dataclass(frozen=True)
class Outcome:
    recipe: Recipe
    validate: int
    features: int
    score: int
    seconds: float


@dataclass(frozen=True)
class ScoringWorkspace:
    """A workspace with a champion, and a scored week to copy in as "the previous outputs"."""

    home: Path
    previous: Path


# --------------------------------------------------------------------------------------------
# Running the CLI and checking the contract


def invoke(args: list[str]) -> tuple[int, str]:
    """Run a command in-process; it must end with exit code 0 or 2 and never a traceback."""
    result = runner.invoke(app, args)
    output = result.output
    shown = " ".join(args[:1]) + f"\n{output[-3000:]}"
    assert "Traceback" not in output, shown
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown}\nexception: {result.exception!r}"
    )
    assert result.exit_code in (0, 2), f"exit code {result.exit_code}: {shown}"
    return result.exit_code, output


def reported(output: str, expect: Expect) -> bool:
    """Is the problem a row of validate's problem table (severity, table, column, check)?"""
    parts = [expect.severity, re.escape(expect.table)]
    if expect.check is not None:
        parts += [re.escape(expect.column or "-"), re.escape(expect.check)]
    return re.search(r"\W+".join(parts) + r"\b", output) is not None


def check_validate(case: Case) -> tuple[int, str]:
    code, output = invoke(["validate", "--source", str(case.source)])
    what = f"{case.recipe.describe()}\n{output}"
    hiding = [e for e in case.expects if e.hides_others]
    if hiding:  # the folder cannot be listed: that one problem is all validate can say
        assert code == 2 and any(reported(output, e) for e in hiding), what
        return code, output
    if case.errors:
        assert code == 2 and "FAILED" in output, what
        expected = case.errors
    else:
        assert code == 0 and "OK" in output, what
        expected = case.warnings
    for expect in expected:
        if case.must_name(expect):
            assert reported(output, expect), f"not reported: {expect}\n{what}"
    return code, output


def known_gap(case: Case, gap: str) -> bool:
    if gap not in KNOWN_GAPS:
        return False
    if gap == "zero_byte_assignments":
        return ("assignments", "zero_byte_file") in case.recipe.corruptions
    if gap == "score_duplicate_course_rows":
        return ("courses", "exact_duplicates") in case.recipe.corruptions
    return True


def as_of_of(recipe: Recipe) -> datetime | None:
    if recipe.as_of_week is None:
        return None
    return (COURSE_START + pd.Timedelta(weeks=recipe.as_of_week)).to_pydatetime()


def check_features(case: Case, validate_code: int, config) -> int:
    out = case.source.parent / "features" / "features.parquet"
    as_of = as_of_of(case.recipe)
    when = ["--as-of", as_of.date().isoformat()] if as_of else ["--all"]
    code, output = invoke(["features", "--source", str(case.source), "--out", str(out), *when])
    what = f"{case.recipe.describe()} validate={validate_code}\n{output}"
    if code == 2:
        assert not out.exists(), f"error but output written: {what}"
        leftovers = list(out.parent.iterdir()) if out.parent.exists() else []
        assert not leftovers, f"partial output left behind: {leftovers}\n{what}"
        assert "error:" in output, what
        if validate_code == 0:
            assert known_gap(case, "zero_byte_assignments"), f"validate OK, features failed: {what}"
        elif not known_gap(case, "features_skips_validation"):
            named = {e.table for e in case.errors} | set(case.corrupted_tables)
            assert any(re.search(rf"\b{t}\b", output) for t in named), f"no table named: {what}"
        return code
    if validate_code == 2:
        assert known_gap(case, "features_skips_validation"), (
            f"features built from a source validate rejects: {what}"
        )
    check_feature_file(out, case, as_of, config)
    if validate_code == 0 and case.features_unchanged:
        clean_out = case.clean.parent / "clean.parquet"
        write_feature_file(case.clean, clean_out, config, as_of=as_of)
        pd.testing.assert_frame_equal(
            pd.read_parquet(out), pd.read_parquet(clean_out), obj=case.recipe.describe()
        )
    return code


def enrollment_pairs(source: Path) -> set[tuple[str, str]]:
    """(student_id, course_id) of the source's enrollments, read the way features reads them."""
    table = locate_tables(source)["enrollments"]
    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT DISTINCT CAST(student_id AS VARCHAR), CAST(course_id AS VARCHAR) "
            f"FROM {table.scan_sql()}"
        ).fetchall()
    finally:
        con.close()
    return set(rows)


def key_pairs(frame: pd.DataFrame) -> set[tuple[str | None, str | None]]:
    """(student_id, course_id) of an output, nulls as None (as DuckDB returns them)."""
    keys = frame[["student_id", "course_id"]].astype(object)
    return set(keys.where(keys.notna(), None).itertuples(index=False, name=None))


def check_feature_file(out: Path, case: Case, as_of: datetime | None, config) -> None:
    """The agreed feature frame: columns in order, types, one row per snapshot of a real
    enrollment, snapshots only of enrolled students."""
    what = case.recipe.describe()
    assert out.is_file(), what
    frame = pd.read_parquet(out)
    names = feature_names(config.features)
    head = [*KEY_COLUMNS, *META_COLUMNS, LABEL_COLUMN, *names]
    assert list(frame.columns[: len(head)]) == head, what
    attrs = list(frame.columns[len(head) :])
    assert all(c.startswith("attr_") for c in attrs) and attrs == sorted(attrs), what
    assert (frame.dtypes[[LABEL_COLUMN, *names]] == "float64").all(), what
    assert str(frame["as_of"].dtype).startswith("datetime64") and frame["as_of"].dt.tz, what
    assert frame[LABEL_COLUMN].dropna().isin([0.0, 1.0]).all(), what
    assert not frame.duplicated(["student_id", "course_id", "as_of"]).any(), what
    pairs = key_pairs(frame)
    unknown = pairs - enrollment_pairs(case.source)
    assert not unknown, f"features for enrollments that do not exist: {unknown}; {what}"
    if as_of is not None:
        assert (frame["as_of"] == pd.Timestamp(as_of)).all(), what
    assert (frame["enrolled_at"] <= frame["as_of"]).all(), what


def folder_digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def check_score(case: Case, validate_code: int, scoring: ScoringWorkspace) -> int:
    """Score into a fresh outputs root that holds an earlier week: on an error nothing appears
    and the earlier week is byte-identical; on success the week folder is complete.
    Returns the exit code, or NOT_SCORED while a known gap makes scoring this case pointless."""
    if validate_code == 2 and known_gap(case, "score_skips_validation"):
        return NOT_SCORED
    if validate_code == 0 and known_gap(case, "score_duplicate_course_rows"):
        return NOT_SCORED
    outputs = case.source.parent / "outputs"
    previous = outputs / PREVIOUS_WEEK
    shutil.copytree(scoring.previous, previous)
    before = folder_digest(previous)
    week = case.recipe.as_of_week or SCORE_WEEK
    as_of = COURSE_START + pd.Timedelta(weeks=week)
    target = outputs / as_of.date().isoformat()
    code, output = invoke(
        [
            "score",
            "--source",
            str(case.source),
            "--as-of",
            as_of.date().isoformat(),
            "--out",
            str(target),
            "--no-prefect",
        ]
    )
    what = f"{case.recipe.describe()} validate={validate_code}\n{output}"
    assert folder_digest(previous) == before, f"earlier outputs changed: {what}"
    leftovers = sorted(
        p.name for p in outputs.iterdir() if p.name not in {PREVIOUS_WEEK, target.name}
    )
    assert not leftovers, f"temporary outputs left behind: {leftovers}\n{what}"
    if code == 2:
        assert not target.exists(), f"error but an output folder appeared: {what}"
        assert "error:" in output, what
        if validate_code == 0:
            # A valid source may have nobody to score that week; anything else is a bug.
            assert "nothing to score" in output or known_gap(case, "zero_byte_assignments"), what
        elif not known_gap(case, "score_skips_validation"):
            named = {e.table for e in case.errors} | set(case.corrupted_tables)
            assert any(re.search(rf"\b{t}\b", output) for t in named), f"no table named: {what}"
        return code
    if validate_code == 2:
        assert known_gap(case, "score_skips_validation"), f"scored a rejected source: {what}"
    check_week_folder(target, case)
    return code


def check_week_folder(target: Path, case: Case) -> None:
    """A complete week: ranking of real enrollments with risks, one list per curator, report."""
    what = case.recipe.describe()
    for name in ("ranking.parquet", "report.html", "summary.json"):
        assert (target / name).is_file(), f"{name} missing: {what}"
    ranking = pd.read_parquet(target / "ranking.parquet")
    assert len(ranking) and not ranking.duplicated(["student_id", "course_id"]).any(), what
    assert ranking["risk"].between(0, 1).all(), what
    pairs = key_pairs(ranking)
    assert pairs <= enrollment_pairs(case.source), what
    lists = list((target / "curators").glob("*.csv"))
    assert len(lists) == ranking["curator_id"].nunique(), what


@pytest.fixture(scope="session")
def scoring_workspace(tmp_path_factory) -> ScoringWorkspace:
    """Train once per session on a clean school shaped like the fuzzed ones; score one clean
    week to serve as the earlier outputs every case must leave untouched."""
    root = tmp_path_factory.mktemp("fuzz_scoring")
    home, school, small = root / "home", root / "school", root / "small"
    write_source(school, base_school(TRAIN_SEED, n_students=TRAIN_STUDENTS, n_events=TRAIN_EVENTS))
    write_source(small, base_school(TRAIN_SEED))
    previous = root / "outputs" / PREVIOUS_WEEK
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOTALONE_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        code, output = invoke(["train", "--source", str(school), "--no-prefect"])
        assert code == 0, output
        as_of = (COURSE_START + pd.Timedelta(weeks=SCORE_WEEK)).date().isoformat()
        code, output = invoke(
            ["score", "--source", str(small), "--as-of", as_of, "--out", str(previous)]
            + ["--no-prefect"]
        )
        assert code == 0, output
    return ScoringWorkspace(home, previous)


# --------------------------------------------------------------------------------------------
# The fuzz run


def summary(outcomes: list[Outcome], seconds: float) -> str:
    def word(code: int) -> str:
        return {0: "ok", 2: "error", NOT_SCORED: "skipped (gap)"}[code]

    verdicts = Counter(
        f"validate {word(o.validate)}/features {word(o.features)}/score {word(o.score)}"
        for o in outcomes
    )
    hits = Counter(name for o in outcomes for _, name in o.recipe.corruptions)
    slowest = max(o.seconds for o in outcomes)
    lines = [
        f"hostile sources: {len(outcomes)} cases in {seconds:.1f} s "
        f"({seconds / len(outcomes):.2f} s per case, slowest {slowest:.2f} s)",
        "outcomes: " + ", ".join(f"{k}: {v}" for k, v in sorted(verdicts.items())),
        "corruptions: " + ", ".join(f"{k} {v}" for k, v in sorted(hits.items())),
    ]
    if KNOWN_GAPS:
        lines.append("known gaps tolerated: " + ", ".join(sorted(KNOWN_GAPS)))
    return "\n".join(lines)


def test_hostile_sources_end_in_a_clear_error_or_a_correct_run(
    scoring_workspace, tmp_path_factory, capsys, record_property, monkeypatch
):
    monkeypatch.setenv("NOTALONE_HOME", str(scoring_workspace.home))  # its champion scores
    config = load_config(None)
    root = tmp_path_factory.mktemp("fuzz")
    outcomes: list[Outcome] = []
    started = time.perf_counter()

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,  # the same cases in every CI run
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(recipe=recipes())
    def run(recipe: Recipe) -> None:
        t0 = time.perf_counter()
        folder = root / f"case{len(outcomes)}"
        shutil.rmtree(folder, ignore_errors=True)  # a re-run while shrinking reuses the name
        case = build_case(recipe, folder)
        try:
            validate_code, _ = check_validate(case)
            features_code = check_features(case, validate_code, config)
            score_code = check_score(case, validate_code, scoring_workspace)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        seconds = time.perf_counter() - t0
        outcomes.append(Outcome(recipe, validate_code, features_code, score_code, seconds))

    run()
    seconds = time.perf_counter() - started
    record_property("hostile_cases", len(outcomes))
    record_property("hostile_seconds", round(seconds, 1))
    with capsys.disabled():
        print("\n" + summary(outcomes, seconds))
    assert len(outcomes) >= MIN_CASES
    # Both kinds of ending were exercised, with every kind of corruption.
    assert any(o.validate == 0 for o in outcomes) and any(o.validate == 2 for o in outcomes)
    used = {name for o in outcomes for _, name in o.recipe.corruptions}
    assert used == {*FRAME_CORRUPTIONS, *FILE_CORRUPTIONS}


# --------------------------------------------------------------------------------------------
# Reproductions of the known gaps (strict xfail while listed; they pass once fixed)

PARQUET = tuple((t, "parquet") for t in ("courses", "enrollments", "events", "assignments"))


@pytest.mark.xfail(
    "features_skips_validation" in KNOWN_GAPS,
    strict=True,
    reason="`notalone features` does not call features.validate.require_valid",
)
@pytest.mark.parametrize(
    "corruption",
    [
        ("events", "out_of_range_score"),  # a score of 1e9 becomes score_mean = 1e9
        ("enrollments", "null_in_required"),
        ("enrollments", "unknown_ids"),  # an enrollment of a course that does not exist
        ("events", "empty_table"),  # a failed export: every student looks inactive
    ],
)
def test_features_refuses_a_source_validate_rejects(tmp_path, corruption):
    case = build_case(Recipe(7, False, PARQUET, (corruption,), 3), tmp_path)
    out = tmp_path / "features.parquet"
    code, _ = invoke(["validate", "--source", str(case.source)])
    assert code == 2
    code, output = invoke(
        ["features", "--source", str(case.source), "--out", str(out), "--as-of", "2025-01-27"]
    )
    assert code == 2 and not out.exists()
    assert corruption[0] in output


@pytest.mark.xfail(
    "zero_byte_assignments" in KNOWN_GAPS,
    strict=True,
    reason="features fails on a zero-byte assignments.csv that validate accepts",
)
def test_zero_byte_assignments_is_consistent(tmp_path):
    case = build_case(Recipe(7, False, PARQUET, (("assignments", "zero_byte_file"),), 3), tmp_path)
    out = tmp_path / "features.parquet"
    validate_code, output = invoke(["validate", "--source", str(case.source)])
    features_code, _ = invoke(
        ["features", "--source", str(case.source), "--out", str(out), "--as-of", "2025-01-27"]
    )
    # Either both refuse (validate naming the file) or both accept it as an empty table.
    assert validate_code == features_code
    if validate_code:
        assert reported(output, Expect("error", "assignments", None, None)), output


def score_week(source: Path, out: Path) -> tuple[int, str]:
    return invoke(
        ["score", "--source", str(source), "--as-of", "2025-01-27", "--out", str(out)]
        + ["--no-prefect"]
    )


@pytest.mark.xfail(
    "score_skips_validation" in KNOWN_GAPS,
    strict=True,
    reason="`notalone score` does not call features.validate.require_valid",
)
@pytest.mark.parametrize("broken", ["score_of_1e9", "null_student_id"])
def test_score_refuses_a_source_validate_rejects(scoring_workspace, tmp_path, monkeypatch, broken):
    monkeypatch.setenv("NOTALONE_HOME", str(scoring_workspace.home))
    frames = base_school(7)
    if broken == "score_of_1e9":  # today: scored, the 1e9 lands in score_mean and the lists
        events = frames["events"]
        events.loc[0, ["event_type", "value"]] = ["assignment_submit", 1e9]
    else:  # today: AttributeError in interventions.messages.variant_index (exit 1, traceback)
        frames["enrollments"].loc[0, "student_id"] = None
    source = write_source(tmp_path / "source", frames)
    assert invoke(["validate", "--source", str(source)])[0] == 2
    code, output = score_week(source, tmp_path / "week")
    assert code == 2 and not (tmp_path / "week").exists()
    assert ("events" if broken == "score_of_1e9" else "enrollments") in output


@pytest.mark.xfail(
    "score_duplicate_course_rows" in KNOWN_GAPS,
    strict=True,
    reason="features.sources.course_titles keeps duplicate course rows: InvalidIndexError",
)
def test_score_accepts_an_exact_duplicate_course_row(scoring_workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("NOTALONE_HOME", str(scoring_workspace.home))
    frames = base_school(7)
    frames["courses"] = pd.concat([frames["courses"], frames["courses"].iloc[:1]])
    source = write_source(tmp_path / "source", frames)
    assert invoke(["validate", "--source", str(source)])[0] == 0  # a warning: dropped
    code, output = score_week(source, tmp_path / "week")
    assert code == 0, output
