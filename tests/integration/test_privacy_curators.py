"""Who sees what: each `curators/<id>.csv` and each curator section of report.html holds only that
curator's students (a school with many curators, some with awkward ids), and no MLflow artifact
of the training run holds a raw student id or a student's attr_* value."""

from __future__ import annotations

import io
import json
import re
import shutil
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest
from typer.testing import CliRunner

from configs import load_config
from features.synthetic import read_school_info, write_school
from pipelines.cli import app
from pipelines.outputs_store import curator_file_names

STUDENTS = 600
SEED = 23
MIN_CURATORS = 30
MODEL = "notalone-dropout"
# Ids a file system or a web page could mix up: a path separator, two ids equal but for case,
# markup, non-ASCII. They replace some generated curator ids.
AWKWARD_IDS = ("cur/7", "Cur-X", "cur-x", 'a"<b>&c', "куратор 10", "cur-y ", ".cur-z")
TOKEN = re.compile(rb"[A-Za-z0-9_.+\-]+")
# Artifacts allowed to name attr_* *categories* (not any student's value): the logged config
# (the generator's settings list them) and the pickled model (LightGBM needs the category list to
# encode its inputs). Both are still searched for student ids.
CATEGORY_LISTS = ("config.yaml", "python_model.pkl")


Pair = tuple[str, str]


@pytest.fixture(scope="module")
def many_curators(tmp_path_factory) -> Path:
    """A small school whose course runs are split among many small curator groups."""
    config = load_config(
        overrides={"generator": {"students_per_curator_min": 4, "students_per_curator_max": 7}}
    )
    folder = tmp_path_factory.mktemp("many_curators")
    write_school(folder, STUDENTS, SEED, config.generator)
    # Rename curators of course runs still running at the end of the data (they get scored).
    enrollments = pd.read_parquet(folder / "enrollments.parquet")
    courses = pd.read_parquet(folder / "courses.parquet")
    end = pd.Timestamp(read_school_info(folder)["data_end"])
    running = courses.loc[courses["end_at"] > end, "course_id"]
    active = enrollments.loc[enrollments["course_id"].isin(running), "curator_id"]
    rename = dict(zip(sorted(active.unique())[: len(AWKWARD_IDS)], AWKWARD_IDS, strict=True))
    for table in ("enrollments", "interventions"):
        path = folder / f"{table}.parquet"
        if path.is_file():
            frame = pd.read_parquet(path)
            frame["curator_id"] = frame["curator_id"].replace(rename)
            frame.to_parquet(path, index=False)
    return folder


@pytest.fixture(scope="module")
def scored(many_curators, trained_school, tmp_path_factory) -> dict:
    """The school scored by the demo champion (a copy of its registry) at its latest week."""
    demo_home, _, _ = trained_school
    home = tmp_path_factory.mktemp("privacy_home")
    for name in ("mlflow.db", "secret.key"):
        if (demo_home / name).is_file():
            shutil.copy2(demo_home / name, home / name)
    as_of = pd.Timestamp(read_school_info(many_curators)["data_end"]).date().isoformat()
    out = home / "week"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOTALONE_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        # without the hold-out: the checks below need the students the ranking would list (the
        # hold-out's own privacy check is tests/integration/test_holdout_scoring.py)
        no_holdout = home / "no-holdout.yaml"
        no_holdout.write_text("experiment:\n  control_share: 0\n", encoding="utf-8")
        args = ["score", "--source", str(many_curators), "--as-of", as_of, "--out", str(out)]
        args += ["--config", str(no_holdout)]
        result = CliRunner().invoke(app, [*args, "--no-prefect"])
    assert result.exit_code == 0, result.output
    return {
        "home": home,
        "out": out,
        "ranking": pd.read_parquet(out / "ranking.parquet"),
        "printed": result.output,
    }


def enrolled_pairs(source: Path) -> dict[str, set[Pair]]:
    """curator id -> the (student, course) enrollments that curator accompanies."""
    enrollments = pd.read_parquet(source / "enrollments.parquet")
    pairs: dict[str, set[Pair]] = defaultdict(set)
    for cid, sid, course in enrollments[["curator_id", "student_id", "course_id"]].itertuples(
        index=False
    ):
        pairs[str(cid)].add((str(sid), str(course)))
    return pairs


class CuratorSections(HTMLParser):
    """(student, course) of every list row, per `<details id="curator-<id>">` section."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, list[Pair]] = {}
        self.current: str | None = None
        self.row: list[str] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "details" and (attrs.get("id") or "").startswith("curator-"):
            self.current = attrs["id"].removeprefix("curator-")
            self.sections[self.current] = []
        elif self.current is not None and tag == "tr":
            self.row = []
        elif self.row is not None and tag == "td":
            self.cell = []

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.row.append("".join(self.cell))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            if self.row:  # header rows have <th> cells only; columns: rank, student, course, ...
                self.sections[self.current].append((self.row[1], self.row[2]))
            self.row = None
        elif tag == "details":
            self.current = None


def report_sections(html: str) -> dict[str, list[Pair]]:
    parser = CuratorSections()
    parser.feed(html)
    parser.close()
    return parser.sections


def csv_pairs(path: Path) -> list[Pair]:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    return list(zip(table["student"], table["course"], strict=True))


def foreign(found: dict[str, list[Pair]], allowed: dict[str, set[Pair]]) -> dict[str, list]:
    """Per curator, the rows that are not that curator's enrollments."""
    return {
        cid: bad
        for cid, rows in found.items()
        if (bad := [row for row in rows if row not in allowed.get(cid, set())])
    }


def test_school_has_many_curators_and_awkward_ids(many_curators, scored):
    ranking = scored["ranking"]
    curators = set(ranking["curator_id"])
    assert len(curators) >= MIN_CURATORS
    assert set(AWKWARD_IDS) <= curators  # every awkward id is active in the scored week
    listed = ranking[ranking["listed"]]
    assert listed["curator_id"].nunique() >= MIN_CURATORS
    assert set(AWKWARD_IDS) <= set(listed["curator_id"])
    # A student listed for two curators (two course runs): each sees only their own course.
    assert (listed.groupby("student_id")["curator_id"].nunique() > 1).any()


def test_each_curator_csv_holds_only_that_curators_students(many_curators, scored):
    allowed = enrolled_pairs(many_curators)
    ranking = scored["ranking"]
    names = curator_file_names(sorted(set(ranking["curator_id"])))
    folder = scored["out"] / "curators"
    assert sorted(p.name for p in folder.iterdir()) == sorted(names.values())
    found = {cid: csv_pairs(folder / name) for cid, name in names.items()}
    assert foreign(found, allowed) == {}
    # Complete, too: every listed student is in exactly their curator's file.
    listed = ranking[ranking["listed"]]
    expected = {
        cid: sorted(zip(rows["student_id"], rows["course_id"], strict=True))
        for cid, rows in listed.groupby("curator_id")
    }
    assert {cid: sorted(rows) for cid, rows in found.items() if rows} == expected
    # The check can fail: files swapped between two curators are caught.
    a, b = sorted(expected)[:2]
    assert set(foreign({a: found[b], b: found[a]}, allowed)) == {a, b}


def test_each_report_section_holds_only_that_curators_students(many_curators, scored):
    allowed = enrolled_pairs(many_curators)
    ranking = scored["ranking"]
    html = (scored["out"] / "report.html").read_text(encoding="utf-8")
    sections = report_sections(html)
    assert set(sections) == set(ranking["curator_id"])  # the parser finds every section
    assert foreign(sections, allowed) == {}
    listed = ranking[ranking["listed"]]
    expected = {
        cid: sorted(zip(rows["student_id"], rows["course_id"], strict=True))
        for cid, rows in listed.groupby("curator_id")
    }
    assert {cid: sorted(rows) for cid, rows in sections.items() if rows} == expected
    # The check can fail: a report whose section ids are exchanged is caught.
    a, b = sorted(expected)[:2]
    ida, idb = (f'id="curator-{escape(c)}"' for c in (a, b))
    assert html.count(ida) == 1 and html.count(idb) == 1
    swapped = html.replace(ida, "\0").replace(idb, ida).replace("\0", idb)
    assert set(foreign(report_sections(swapped), allowed)) == {a, b}


def escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


# --- MLflow artifacts of the training run -------------------------------------------------------


def artifact_folders(home: Path) -> list[Path]:
    """The champion's training-run artifacts and its logged model's artifacts (local folders)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias(MODEL, "champion")
    run = client.get_run(version.run_id)
    model_id = getattr(version, "model_id", None) or version.source.removeprefix("models:/")
    folders = [run.info.artifact_uri, client.get_logged_model(model_id).artifact_location]
    paths = [Path(unquote(urlparse(f).path)) for f in folders]
    assert all(p.is_dir() for p in paths), folders
    return paths


def leaks(path: Path, ids: set[str], categories: set[str]) -> dict[str, set[str]]:
    """Student ids and attr_* values found in one artifact file."""
    data = path.read_bytes()
    values: set[str] = set()
    attr_columns: set[str] = set()
    if path.suffix == ".parquet":
        table = pd.read_parquet(io.BytesIO(data))
        frames = [table]
    elif path.suffix == ".csv":
        frames = [pd.read_csv(io.BytesIO(data), dtype=str)]
    elif path.name.endswith("input_example.json"):
        raw = json.loads(data)
        raw = raw.get("dataframe_split", raw)
        frames = [pd.DataFrame(raw["data"], columns=raw["columns"])]
    else:
        frames = []
    for frame in frames:
        values |= {str(v) for col in frame.columns for v in frame[col].dropna().unique()}
        for col in frame.columns:
            if str(col).startswith("attr_") and set(frame[col].dropna().astype(str)) - {"<masked>"}:
                attr_columns.add(str(col))
    values |= {t.decode("utf-8", "replace") for t in TOKEN.findall(data)}
    found = {"ids": values & ids, "attr_columns": attr_columns}
    found["attr_values"] = set() if path.name in CATEGORY_LISTS else values & categories
    return {k: v for k, v in found.items() if v}


def test_training_artifacts_hold_no_student_id_and_no_attr_value(trained_school, scored, tmp_path):
    _, source, _ = trained_school  # the school the champion learnt from
    enrollments = pd.read_parquet(source / "enrollments.parquet")
    ids = set(enrollments["student_id"].astype(str))
    attr = [c for c in enrollments.columns if c.startswith("attr_")]
    assert attr
    categories = {
        str(v)
        for c in attr
        if not pd.api.types.is_numeric_dtype(enrollments[c])
        for v in enrollments[c].dropna().unique()
    }
    assert categories

    files = [p for folder in artifact_folders(scored["home"]) for p in folder.rglob("*")]
    files = [p for p in files if p.is_file()]
    names = {p.name for p in files}
    for expected in ("contributions_sample.parquet", "segments.csv", "input_example.json"):
        assert expected in names  # the tables with one row per student or per attr value
    assert "python_model.pkl" in names
    found = {str(p): hit for p in files if (hit := leaks(p, ids, categories))}
    assert found == {}

    # The search can fail: planted ids and attr values are found, in text and in Parquet.
    student = sorted(ids)[0]
    region = sorted(categories)[0]
    planted = tmp_path / "planted.parquet"
    pd.DataFrame({"who": [student], "attr_x": [region]}).to_parquet(planted)
    assert leaks(planted, ids, categories) == {
        "ids": {student},
        "attr_columns": {"attr_x"},
        "attr_values": {region},
    }
    text = tmp_path / "plot.json"
    text.write_text(json.dumps({"label": f"risk of {student}"}))
    assert leaks(text, ids, categories) == {"ids": {student}}


def test_the_pseudonymisation_secret_is_never_written_or_printed(scored):
    """The key behind the pseudonyms stays in `secret.key` (mode 0600): not in MLflow (database,
    run and model artifacts), not in the week's outputs, not in what the scorer prints."""
    home = scored["home"]
    key_file = home / "secret.key"
    assert key_file.is_file() and (key_file.stat().st_mode & 0o077) == 0
    secret = key_file.read_bytes().strip()
    assert len(secret) >= 32
    places = [home / "mlflow.db", *artifact_folders(home), scored["out"]]
    files = [p for place in places for p in ([place] if place.is_file() else place.rglob("*"))]
    files = [p for p in files if p.is_file()]
    assert len(files) > 10
    holding = [str(p) for p in files if secret in p.read_bytes()]
    assert holding == []
    assert secret.decode() not in scored["printed"]
