"""Contacts from outside the synthetic school (our lists' simulated curators): they act like the
school's own, and the causal school regenerated with later contacts keeps the same past."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs.schema import GeneratorConfig
from features.synthetic import ACTION_LISTED, EVENTS_DIR, plan_school, write_school

STUDENTS = 600
SEED = 5
CONFIG = GeneratorConfig(block_enrollments=250, threads=1)


def _school(folder: Path, contacts: pd.DataFrame | None, **overrides) -> dict[str, pd.DataFrame]:
    folder.mkdir(parents=True)
    write_school(
        folder, STUDENTS, SEED, CONFIG.model_copy(update=overrides), extra_contacts=contacts
    )
    events = pd.concat(
        [pd.read_parquet(p) for p in sorted((folder / EVENTS_DIR).glob("*.parquet"))],
        ignore_index=True,
    )
    return {
        "events": events,
        "enrollments": pd.read_parquet(folder / "enrollments.parquet"),
        "interventions": pd.read_parquet(folder / "interventions.parquet"),
        "truth": pd.read_parquet(folder / "truth.parquet"),
    }


def _contacts(week: pd.Timestamp, share: float, seed: int) -> pd.DataFrame:
    """A contact on the Tuesday of `week` for a random `share` of the enrolments then running."""
    plan = plan_school(STUDENTS, SEED, CONFIG)
    start = pd.to_datetime(plan.calendar.start_s[plan.run], unit="s", utc=True)
    end = pd.to_datetime(plan.calendar.end_s[plan.run], unit="s", utc=True)
    running = np.flatnonzero((start <= week) & (end > week + pd.Timedelta(days=7)))
    rng = np.random.default_rng(seed)
    chosen = running[rng.random(len(running)) < share]
    return pd.DataFrame(
        {
            "student_id": plan.student_ids[plan.student[chosen]].astype(str),
            "course_id": np.array(plan.calendar.course_ids)[plan.run[chosen]].astype(str),
            "ts": week + pd.Timedelta(days=1),
        }
    )


def _before(table: pd.DataFrame, column: str, when: pd.Timestamp) -> pd.DataFrame:
    times = pd.to_datetime(table[column], utc=True)
    keep = table[(times < when).to_numpy(dtype=bool)]
    return keep.sort_values(list(keep.columns)).reset_index(drop=True)


@pytest.fixture(scope="module")
def weeks() -> list[pd.Timestamp]:
    plan = plan_school(STUDENTS, SEED, CONFIG)
    end = pd.Timestamp(int(plan.calendar.data_end_s), unit="s", tz="UTC")
    return [end - pd.Timedelta(weeks=k) for k in (10, 7)]


def test_the_past_does_not_depend_on_later_contacts(tmp_path, weeks):
    early, late = weeks
    first = _contacts(early, 0.5, seed=1)
    both = pd.concat([first, _contacts(late, 0.5, seed=2)], ignore_index=True)
    none = _school(tmp_path / "none", first.iloc[:0])
    a = _school(tmp_path / "a", first)
    b = _school(tmp_path / "b", both)
    for world, cut in ((none, early), (a, late)):
        other = a if world is none else b
        for name, column in (("events", "ts"), ("interventions", "ts")):
            pd.testing.assert_frame_equal(
                _before(world[name], column, cut), _before(other[name], column, cut)
            )
        quit_before = pd.to_datetime(world["truth"]["quit_at"], utc=True) < cut
        pd.testing.assert_frame_equal(world["truth"][quit_before], other["truth"][quit_before])
    # ... and the later contacts changed something after them
    assert not a["events"].equals(b["events"])


def test_outside_contacts_are_recorded_and_work_like_the_schools_own(tmp_path, weeks):
    early, _ = weeks
    contacts = _contacts(early, 0.6, seed=3)
    strong = _school(tmp_path / "strong", contacts, contact_engagement_boost=1.5)
    same = _school(tmp_path / "same", contacts.iloc[:0], contact_engagement_boost=1.5)
    none = _school(tmp_path / "none", contacts, contact_engagement_boost=0.0)
    alone = _school(tmp_path / "alone", contacts.iloc[:0], contact_engagement_boost=0.0)

    listed = strong["interventions"][strong["interventions"]["action"] == ACTION_LISTED]
    assert 0 < len(listed) <= len(contacts)
    assert set(listed["outcome"]) == {"replied", "no_reply"}
    assert (pd.to_datetime(listed["ts"], utc=True) == early + pd.Timedelta(days=1)).all()
    # with no boost the contacts change nothing but their own rows
    own = none["interventions"][none["interventions"]["action"] != ACTION_LISTED]
    pd.testing.assert_frame_equal(own.reset_index(drop=True), alone["interventions"])
    pd.testing.assert_frame_equal(none["truth"], alone["truth"])
    # with a boost, the contacted enrolments quit less often after the contact
    keys = ["student_id", "course_id"]
    contacted = contacts[keys].drop_duplicates()

    def quit_after(world):
        t = world["truth"].merge(contacted, on=keys)
        quit = pd.to_datetime(t["quit_at"], utc=True)
        return int((quit > early).sum())

    assert quit_after(strong) < quit_after(same)


def test_unknown_enrolments_are_refused(tmp_path):
    bad = pd.DataFrame(
        {"student_id": ["nobody"], "course_id": ["X"], "ts": [pd.Timestamp.now("UTC")]}
    )
    with pytest.raises(ValueError, match="does not have"):
        _school(tmp_path / "bad", bad)
