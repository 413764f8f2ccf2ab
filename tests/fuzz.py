"""Hostile sources for the fuzz test: a small clean school, corruptions, and what each must cause.

A `Recipe` says which corruptions hit which tables and how each table is written (a Parquet
file, a CSV file or a folder of Parquet parts).
`build_case` writes the corrupted source (and the same school uncorrupted, for comparisons) and
returns the problems `notalone validate` must report. At most one corruption hits each table, so
an expectation is never hidden by another corruption of the same table; an expectation that needs
another table's keys (an unknown course needs the courses) is asserted only when that table is
intact (`depends_on`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from configs.schema import Config
from features.contract import REQUIRED_TABLES, TABLES, Kind
from tests.sources import random_school

Severity = Literal["error", "warning"]
Format = Literal["parquet", "csv", "parquet_dir"]
FORMATS: tuple[Format, ...] = ("parquet", "csv", "parquet_dir")

# Tiny on purpose: a case must cost well under a second. With 120 events one unknown enrollment
# stays under the default 1 % share (a warning) and two exceed it (an error).
BASE_STUDENTS = 10
BASE_EVENTS = 120
TEXT_IN_NUMBERS = ("yesterday", "n/a", "twelve", "?", "—")
IMPLAUSIBLE_TIMES = ("1970-01-01", "1969-12-31 23:00", "2100-06-01", "2100-01-01")
BAD_SCORES = (-5.0, 1e9, 101.0, -0.5)
BAD_RATINGS = (0.0, 6.0, 1e9)


@dataclass(frozen=True)
class Expect:
    """A problem validate must report: severity, table, column (None: the whole table), check."""

    severity: Severity
    table: str
    column: str | None
    check: str | None  # None: any check (the reader decides how a broken file shows)
    depends_on: tuple[str, ...] = ()  # tables whose keys the check needs
    # A warning about rows that feature building ignores: features equal the clean school's.
    features_unchanged: bool = False
    # The source cannot even be listed (a table twice): validate reports this problem alone.
    hides_others: bool = False


@dataclass(frozen=True)
class Recipe:
    """What a hostile source is made of; drawn by hypothesis, rebuilt deterministically."""

    seed: int
    numeric_ids: bool
    formats: tuple[tuple[str, Format], ...]
    corruptions: tuple[tuple[str, str], ...]  # (table, corruption name), one per table at most
    as_of_week: int | None  # features/score as of course start + this many weeks; None: --all

    def describe(self) -> str:
        hits = ", ".join(f"{t}:{c}" for t, c in self.corruptions) or "none"
        fmts = ",".join(f"{t[:3]}={f}" for t, f in self.formats)
        ids = " numeric-ids" if self.numeric_ids else ""
        return f"seed={self.seed}{ids} [{hits}] ({fmts})"


@dataclass
class Case:
    """A written hostile source and what must happen to it."""

    recipe: Recipe
    source: Path
    clean: Path  # the same school, uncorrupted, written in the same formats
    expects: list[Expect] = field(default_factory=list)
    corrupted_tables: dict[str, Severity | None] = field(default_factory=dict)
    ignorable: list[bool] = field(default_factory=list)  # per corruption: features unchanged

    @property
    def errors(self) -> list[Expect]:
        return [e for e in self.expects if e.severity == "error"]

    @property
    def warnings(self) -> list[Expect]:
        return [e for e in self.expects if e.severity == "warning"]

    @property
    def features_unchanged(self) -> bool:
        """Every corruption is one feature building ignores."""
        return bool(self.ignorable) and all(self.ignorable)

    def intact(self, table: str) -> bool:
        """The table carries no corruption that is an error (its keys are usable)."""
        return self.corrupted_tables.get(table) != "error"

    def must_name(self, expect: Expect) -> bool:
        return all(self.intact(t) for t in expect.depends_on)


# --------------------------------------------------------------------------------------------
# The clean school


def base_school(
    seed: int,
    numeric_ids: bool = False,
    n_students: int = BASE_STUDENTS,
    n_events: int = BASE_EVENTS,
) -> dict[str, pd.DataFrame]:
    """A clean school with every optional column present (so they can be dropped); small by
    default, larger for training the model the fuzzed sources are scored with."""
    frames = random_school(seed, n_students=n_students, n_events=n_events)
    frames["courses"]["title"] = ["Python basics", "Data analysis"]
    enr = frames["enrollments"]
    enr["mentor_id"] = np.where(np.arange(len(enr)) % 3 == 0, None, "m1")
    frames["assignments"]["weight"] = 1.0
    if numeric_ids:
        frames = {name: _numeric_ids(frame) for name, frame in frames.items()}
    return frames


ID_COLUMNS = ("student_id", "course_id", "curator_id", "mentor_id", "assignment_id", "item_id")


def _numeric_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """Ids as integers ("s3" -> 3, "c1" -> 1001): valid, the contract reads integer ids as text."""
    prefix = {"s": 0, "c": 1000, "k": 2000, "m": 3000, "a": 4000}
    out = frame.copy()
    for col in ID_COLUMNS:
        if col in out:
            out[col] = (
                out[col]
                .map(
                    lambda v: None if v is None or v != v else prefix[v[0]] + int(v[1:]),
                    na_action="ignore",
                )
                .astype("Int64")
            )
    return out


def _id_like(frame: pd.DataFrame, column: str, text: str, number: int) -> object:
    """A new id of the column's kind: text ids get `text`, integer ids get `number`."""
    return number if pd.api.types.is_integer_dtype(frame[column]) else text


# --------------------------------------------------------------------------------------------
# Corruptions of one table's frame. Each returns what validate must say (None: nothing).

FrameCorruption = Callable[[dict[str, pd.DataFrame], str, random.Random], Expect | None]


def _columns_of(table: str, kind: Kind | None = None, required: bool | None = None) -> list[str]:
    return [
        c.name
        for c in TABLES[table].columns
        if (kind is None or c.kind is kind) and (required is None or c.required == required)
    ]


def _rows(frame: pd.DataFrame, rng: random.Random, most: int = 2) -> list[int]:
    return rng.sample(range(len(frame)), k=min(len(frame), rng.randint(1, most)))


def text_in_typed_column(frames, table, rng):
    """Strings in a timestamp or number column (e.g. 'yesterday' as ts, 'n/a' as value)."""
    frame = frames[table]
    cols = _columns_of(table, Kind.TIMESTAMP) + _columns_of(table, Kind.NUMBER)
    col = rng.choice([c for c in cols if c in frame])
    values = frame[col].astype(object)
    for i in _rows(frame, rng):
        values.iloc[i] = rng.choice(TEXT_IN_NUMBERS)
    frame[col] = values.map(lambda v: None if v is None or v != v else str(v)).astype(object)
    return Expect("error", table, col, "wrong_type")


def float_ids(frames, table, rng):
    """An id column of floats (1.5, 2.0): ids must be text or integers."""
    frame = frames[table]
    col = rng.choice([c for c in _columns_of(table, Kind.STRING, required=True) if c in frame])
    frame[col] = [float(i) + rng.choice((0.0, 0.5)) for i in range(len(frame))]
    return Expect("error", table, col, "wrong_type")


def null_in_required(frames, table, rng):
    """Nulls or blanks in a column that must have values (keys included)."""
    frame = frames[table]
    col = rng.choice([c.name for c in TABLES[table].columns if not c.nullable and c.name in frame])
    is_text = frame[col].dtype == object or pd.api.types.is_string_dtype(frame[col])
    for i in _rows(frame, rng):
        frame.loc[frame.index[i], col] = rng.choice((None, "", "   ")) if is_text else None
    return Expect("error", table, col, "null")


def exact_duplicates(frames, table, rng):
    """Exact copies of a few rows: dropped with a warning."""
    frame = frames[table]
    rows = frame.iloc[_rows(frame, rng, most=3)]
    frames[table] = pd.concat([frame, rows], ignore_index=True)
    return Expect("warning", table, None, "duplicate_row", features_unchanged=True)


KEY_CONFLICT_CHANGE = {
    "courses": ("end_at", pd.Timedelta(days=1)),
    "enrollments": ("enrolled_at", pd.Timedelta(hours=1)),
    "assignments": ("due_at", pd.Timedelta(days=2)),
}


def conflicting_duplicate(frames, table, rng):
    """Two rows with the same key and different contents: which one is right? An error."""
    frame = frames[table]
    column, shift = KEY_CONFLICT_CHANGE[table]
    copy = frame.iloc[_rows(frame, rng, most=1)].copy()
    if rng.random() < 0.5 or table != "enrollments":
        copy[column] = copy[column] + shift
    else:
        copy["curator_id"] = _id_like(frame, "curator_id", "k9", 2009)
    frames[table] = pd.concat([frame, copy], ignore_index=True)
    return Expect("error", table, ", ".join(TABLES[table].key), "duplicate_key")


def unknown_ids(frames, table, rng, config: Config | None = None):
    """Rows that refer to ids the other tables do not know."""
    config = config or Config()
    frame = frames[table]
    if table == "events":
        n = rng.choice((1, 1, 2, 3))
        ghosts = frame.iloc[rng.sample(range(len(frame)), k=n)].copy()
        ghosts["student_id"] = _id_like(frame, "student_id", "ghost", 999)
        frames[table] = pd.concat([frame, ghosts], ignore_index=True)
        share = n / len(frames[table])
        severity = "error" if share > config.validation.max_unknown_enrollment_share else "warning"
        return Expect(
            severity,
            table,
            "student_id, course_id",
            "unknown_enrollment",
            depends_on=("enrollments",),
            features_unchanged=True,
        )
    # enrollments or assignments of a course that does not exist
    extra = frame.iloc[_rows(frame, rng, most=1)].copy()
    extra["course_id"] = _id_like(frame, "course_id", "c404", 1404)
    if table == "enrollments":
        extra["student_id"] = _id_like(frame, "student_id", "newcomer", 998)
    else:
        extra["assignment_id"] = _id_like(frame, "assignment_id", "a404", 4404)
    frames[table] = pd.concat([frame, extra], ignore_index=True)
    severity = "error" if table == "enrollments" else "warning"
    return Expect(
        severity,
        table,
        "course_id",
        "unknown_course",
        depends_on=("courses",),
        features_unchanged=severity == "warning",
    )


def implausible_timestamp(frames, table, rng):
    """A timestamp in 1970 or 2100."""
    frame = frames[table]
    col = rng.choice([c for c in _columns_of(table, Kind.TIMESTAMP) if c in frame])
    when = pd.Timestamp(rng.choice(IMPLAUSIBLE_TIMES), tz="UTC")
    for i in _rows(frame, rng, most=1):
        frame.loc[frame.index[i], col] = when
    return Expect("error", table, col, "implausible_timestamp")


def out_of_range_score(frames, table, rng):
    """A score of -5 or 1e9 (or a rating of 0 or 6)."""
    frame = frames[table]
    i = _rows(frame, rng, most=1)[0]
    kind = rng.choice(("assignment_submit", "quiz_attempt", "feedback"))
    frame.loc[frame.index[i], "event_type"] = kind
    bad = rng.choice(BAD_RATINGS if kind == "feedback" else BAD_SCORES)
    frame.loc[frame.index[i], "value"] = bad
    return Expect("error", table, "value", "value_out_of_range")


def empty_table(frames, table, rng):
    """No rows, header kept: an error where rows are needed, a warning for assignments."""
    frames[table] = frames[table].iloc[0:0]
    severity = "warning" if table == "assignments" else "error"
    return Expect(severity, table, None, "empty_table")


RENAMES = {
    "student_id": "student",
    "course_id": "course",
    "ts": "timestamp",
    "event_type": "type",
    "start_at": "start",
    "end_at": "finish",
    "enrolled_at": "enrolled",
    "unenrolled_at": "left_at",
    "curator_id": "tutor",
    "assignment_id": "id",
    "due_at": "deadline",
    "value": "score",
    "item_id": "item",
    "title": "name",
    "mentor_id": "mentor",
    "weight": "points",
}


def rename_column(frames, table, rng):
    """A column under another name: missing if required, ignored (with a warning) if optional."""
    frame = frames[table]
    col = rng.choice([c.name for c in TABLES[table].columns if c.name in frame])
    frames[table] = frame.rename(columns={col: RENAMES[col]})
    if TABLES[table].column(col).required:
        return Expect("error", table, col, "missing_column")
    return Expect("warning", table, RENAMES[col], "unknown_column")


def drop_column(frames, table, rng):
    """A column left out: an error if required, nothing if optional."""
    frame = frames[table]
    col = rng.choice([c.name for c in TABLES[table].columns if c.name in frame])
    frames[table] = frame.drop(columns=[col])
    if TABLES[table].column(col).required:
        return Expect("error", table, col, "missing_column")
    return None


def extra_column(frames, table, rng):
    """A column outside the contract: ignored with a warning."""
    frames[table]["notes"] = "free text"
    return Expect("warning", table, "notes", "unknown_column", features_unchanged=True)


def missing_table(frames, table, rng):
    """The table is not in the source at all."""
    del frames[table]
    return Expect("error", table, None, "missing_table")


FRAME_CORRUPTIONS: dict[str, FrameCorruption] = {
    "text_in_typed_column": text_in_typed_column,
    "float_ids": float_ids,
    "null_in_required": null_in_required,
    "exact_duplicates": exact_duplicates,
    "conflicting_duplicate": conflicting_duplicate,
    "unknown_ids": unknown_ids,
    "implausible_timestamp": implausible_timestamp,
    "out_of_range_score": out_of_range_score,
    "empty_table": empty_table,
    "rename_column": rename_column,
    "drop_column": drop_column,
    "extra_column": extra_column,
    "missing_table": missing_table,
}
# Corruptions of the written file, with the formats they apply to (the first when the recipe's
# format is not one of them).
FILE_CORRUPTIONS: dict[str, tuple[Format, ...]] = {
    "truncated_parquet": ("parquet", "parquet_dir"),
    "zero_byte_file": ("csv",),
    "latin1_csv": ("csv",),
    "stray_delimiter_csv": ("csv",),
    "table_twice": FORMATS,  # e.g. events.parquet next to an older events.csv
}
NOT_FOR: dict[str, set[str]] = {  # corruptions that make no sense for a table
    "conflicting_duplicate": {"events"},  # events have no key
    "unknown_ids": {"courses"},
    "out_of_range_score": {"courses", "enrollments", "assignments"},
}


def corruptions_for(table: str) -> list[str]:
    names = [*FRAME_CORRUPTIONS, *FILE_CORRUPTIONS]
    return [n for n in names if table not in NOT_FOR.get(n, set())]


# --------------------------------------------------------------------------------------------
# Writing


def write_table_file(folder: Path, name: str, frame: pd.DataFrame, fmt: Format) -> Path:
    """One table as NAME.parquet, NAME.csv (ISO timestamps, empty cells for nulls) or a folder
    NAME/ of two Parquet parts; returns the file written (the first part for a folder)."""
    if fmt == "parquet":
        path = folder / f"{name}.parquet"
        frame.to_parquet(path, index=False)
    elif fmt == "csv":
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
    else:
        (folder / name).mkdir()
        half = len(frame) // 2
        path = folder / name / "part-0.parquet"
        frame.iloc[half:].to_parquet(path, index=False)
        frame.iloc[:half].to_parquet(folder / name / "part-1.parquet", index=False)
    return path


def corrupt_file(root: Path, name: str, fmt: Format, how: str, frame: pd.DataFrame, rng) -> None:
    """Damage the file just written for table `name` in the source folder `root`."""
    path = {
        "parquet": root / f"{name}.parquet",
        "csv": root / f"{name}.csv",
        "parquet_dir": root / name / "part-0.parquet",
    }[fmt]
    data = path.read_bytes()
    if how == "truncated_parquet":
        path.write_bytes(data[: rng.randint(len(data) // 4, len(data) * 3 // 4)])
    elif how == "zero_byte_file":
        path.write_bytes(b"")
    elif how == "latin1_csv":
        # A Latin-1 export: 'é' as the single byte 0xE9, invalid in UTF-8, inside a data line.
        lines = data.split(b"\n")
        i = rng.randint(1, max(1, len(lines) - 2))
        lines[i] = lines[i].replace(b",", "é,".encode("latin-1"), 1)
        path.write_bytes(b"\n".join(lines))
    elif how == "stray_delimiter_csv":
        lines = data.split(b"\n")
        i = rng.randint(1, max(1, len(lines) - 2))
        cut = lines[i].find(b",") + 1
        lines[i] = lines[i][:cut] + b"x," + lines[i][cut:]
        path.write_bytes(b"\n".join(lines))
    elif how == "table_twice":
        write_table_file(root, name, frame, "parquet" if fmt == "csv" else "csv")
    else:  # pragma: no cover - a typo in a recipe
        raise ValueError(how)


def file_expect(table: str, how: str) -> Expect:
    if how == "zero_byte_file":
        # Not even a header: no columns to read, so an error for every required table.
        return Expect("error", table, None, "empty_table")
    if how == "stray_delimiter_csv":
        # DuckDB either rejects the ragged line (`unreadable`) or reads it shifted by one column,
        # which puts text into a timestamp column: an error on this table either way.
        return Expect("error", table, None, None)
    if how == "table_twice":
        return Expect("error", table, None, "unreadable", hides_others=True)
    return Expect("error", table, None, "unreadable")


def build_case(recipe: Recipe, folder: Path) -> Case:
    """Write the corrupted source (`folder/source`) and the clean one (`folder/clean`)."""
    rng = random.Random(recipe.seed)
    clean = base_school(recipe.seed, recipe.numeric_ids)
    frames = {name: frame.copy() for name, frame in clean.items()}
    formats = dict(recipe.formats)
    case = Case(recipe, folder / "source", folder / "clean")
    file_hits: dict[str, str] = {}
    for table, name in recipe.corruptions:
        if name in FILE_CORRUPTIONS:
            allowed = FILE_CORRUPTIONS[name]
            formats[table] = formats.get(table) if formats.get(table) in allowed else allowed[0]
            file_hits[table] = name
            expect = file_expect(table, name)
        else:
            expect = FRAME_CORRUPTIONS[name](frames, table, rng)
        if expect is not None:
            case.expects.append(expect)
        case.ignorable.append(expect is not None and expect.features_unchanged)
        case.corrupted_tables[table] = expect.severity if expect else None
    for root, tables in ((case.source, frames), (case.clean, clean)):
        root.mkdir(parents=True)
        for name, frame in tables.items():
            fmt = formats.get(name, "parquet")
            write_table_file(root, name, frame, fmt)
            if root == case.source and name in file_hits:
                corrupt_file(root, name, fmt, file_hits[name], frame, rng)
    return case


# --------------------------------------------------------------------------------------------
# The hypothesis strategy

SOURCE_TABLES = tuple(REQUIRED_TABLES)


# Corruptions that are often only warnings, so that correct runs (b) are exercised as well.
MILD = ("exact_duplicates", "extra_column", "unknown_ids", "drop_column", "rename_column")
MILD_SHARE = 0.35
NUMERIC_IDS_SHARE = 0.2
MAX_TABLES_HIT = 3
WEEKS = (None, 1, 2, 3, 4, 5, 6)  # as-of week after the course start; None: every snapshot


def recipe_from_seed(seed: int) -> Recipe:
    """A recipe drawn with Python's generator from one seed: every corruption about equally often
    (hypothesis' own draws favour the first choice of a list)."""
    rng = random.Random(seed)
    hit = rng.sample(SOURCE_TABLES, k=rng.randint(1, MAX_TABLES_HIT))
    mild = rng.random() < MILD_SHARE
    corruptions = []
    for table in sorted(hit, key=SOURCE_TABLES.index):
        names = corruptions_for(table)
        if mild:
            names = [n for n in names if n in MILD]
        # A corruption that fits few tables is drawn more often for each: all about equally often.
        weights = [
            len(SOURCE_TABLES) / (len(SOURCE_TABLES) - len(NOT_FOR.get(n, ()))) for n in names
        ]
        corruptions.append((table, rng.choices(names, weights)[0]))
    formats = tuple((t, rng.choice(FORMATS)) for t in SOURCE_TABLES)
    numeric_ids = rng.random() < NUMERIC_IDS_SHARE
    return Recipe(seed, numeric_ids, formats, tuple(corruptions), rng.choice(WEEKS))


def recipes() -> st.SearchStrategy[Recipe]:
    """Hypothesis draws the seed (reproducible with `derandomize`); the seed draws the recipe."""
    return st.integers(0, 2**32 - 1).map(recipe_from_seed)
