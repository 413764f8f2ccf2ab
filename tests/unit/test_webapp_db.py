"""The workspace database: publishing (atomic, re-publish keeps records), accounts, contacts as
the interventions table."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import func, select

from tests.workspace_data import NEXT_WEEK, WEEK, tiny_ranking
from webapp.db import (
    AccountError,
    PublishError,
    create_credential,
    create_invite,
    create_person,
    export_interventions,
    open_workspace_db,
    publish_week,
    recorded_contacts,
    records,
    revoke_person,
)
from webapp.db.accounts import KIND_API, account_for_secret, consume_invite
from webapp.db.models import ListEntry, Week
from webapp.db.records import INTERVENTION_COLUMNS


@pytest.fixture
def engine(tmp_path):
    return open_workspace_db(None, tmp_path)


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def test_open_uses_env_url(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere.db"
    monkeypatch.setenv("NOTALONE_DB_URL", f"sqlite:///{target}")
    open_workspace_db(None, tmp_path / "home")
    assert target.is_file()
    assert not (tmp_path / "home" / "workspace.db").exists()


def test_open_twice_is_idempotent(tmp_path):
    open_workspace_db(None, tmp_path)
    engine = open_workspace_db(None, tmp_path)
    assert count(engine, Week) == 0


def test_publish_lists_only_listed_in_rank_order(engine):
    published = publish_week(engine, as_of=WEEK, ranking=tiny_ranking(), model_uri="models:/m@c")
    assert (published.listed, published.publications) == (5, 1)
    cards = records.curator_cards(engine, published.week_id, "cur-a")
    assert [c.entry["student_id"] for c in cards] == ["s1", "s2", "s3"]
    assert cards[0].entry["triggered"] and not cards[1].entry["triggered"]
    assert cards[1].entry["change"] is None  # NaN becomes missing
    assert cards[0].entry["reason_group"] == "submissions"


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        # a ranking scored without sections: all early warning, in rank order
        (None, [("s1", "early_warning"), ("s2", "early_warning"), ("s3", "early_warning")]),
        # win-back entries after the early-warning ones
        (
            ["win_back", "early_warning", "early_warning"],
            [("s2", "early_warning"), ("s3", "early_warning"), ("s1", "win_back")],
        ),
    ],
)
def test_publish_keeps_each_entry_s_section(engine, sections, expected):
    ranking = tiny_ranking({"cur-a": ["s1", "s2", "s3"]})
    if sections is not None:
        listed = ranking["listed"].to_numpy(dtype=bool)
        ranking["section"] = "early_warning"
        ranking.loc[listed, "section"] = sections
    week = publish_week(engine, as_of=WEEK, ranking=ranking)
    cards = records.curator_cards(engine, week.week_id, "cur-a")
    assert [(c.entry["student_id"], c.entry["section"]) for c in cards] == expected


def test_publish_labels_and_display_names(engine):
    ranking = tiny_ranking()
    lists = pd.DataFrame(
        {
            "curator_id": ["cur-a"],
            "student": ["s1"],
            "course": ["PY101-2026A"],
            "tier": ["Curator"],
            "action": ["Write first"],
        }
    )
    names = pd.DataFrame({"student_id": ["s1"], "display_name": ["Anna Petrova"]})
    week = publish_week(engine, as_of=WEEK, ranking=ranking, lists=lists, display_names=names)
    first = records.curator_cards(engine, week.week_id, "cur-a")[0].entry
    assert (first["tier_label"], first["action_label"]) == ("Curator", "Write first")
    assert first["display_name"] == "Anna Petrova"


@pytest.mark.parametrize("column", ["curator_id", "rank", "message", "listed"])
def test_publish_missing_column_is_a_clear_error(engine, column):
    with pytest.raises(PublishError, match=column):
        publish_week(engine, as_of=WEEK, ranking=tiny_ranking().drop(columns=[column]))
    assert count(engine, Week) == 0


def test_publish_is_atomic(engine):
    """A failing re-publication leaves the earlier list whole."""
    first = publish_week(engine, as_of=WEEK, ranking=tiny_ranking())
    broken = tiny_ranking({"cur-a": ["s1", "s9"], "cur-b": ["s4"]})
    broken.loc[broken["student_id"] == "s9", "rank"] = None  # listed without a rank: fails
    with pytest.raises((TypeError, ValueError)):
        publish_week(engine, as_of=WEEK, ranking=broken)
    dupes = pd.concat([tiny_ranking(), tiny_ranking().head(1)])
    with pytest.raises(PublishError, match="twice"):
        publish_week(engine, as_of=WEEK, ranking=dupes)
    assert count(engine, ListEntry) == first.listed
    assert [c.entry["student_id"] for c in records.curator_cards(engine, 1, "cur-a")] == [
        "s1",
        "s2",
        "s3",
    ]


def test_failed_insert_rolls_back_the_whole_week(engine, monkeypatch):
    publish_week(engine, as_of=WEEK, ranking=tiny_ranking())
    from webapp.db import publish as publish_module

    real_rows = publish_module.list_rows

    def rows_with_a_bad_one(*args, **kwargs):
        rows = real_rows(*args, **kwargs)
        rows[-1]["rank"] = None  # NOT NULL: the insert fails after the delete
        return rows

    monkeypatch.setattr(publish_module, "list_rows", rows_with_a_bad_one)
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        publish_module.publish_week(engine, as_of=WEEK, ranking=tiny_ranking({"cur-a": ["s7"]}))
    assert count(engine, ListEntry) == 5
    with engine.connect() as conn:
        assert conn.execute(select(Week.publications)).scalar_one() == 1


def test_republish_replaces_list_and_keeps_records(engine):
    week = publish_week(engine, as_of=WEEK, ranking=tiny_ranking())
    entry = records.find_entry(engine, "s1", "PY101-2026A", week.week_id)
    contact = records.record_contact(
        engine, entry, recorded_by="cur-a", channel="email", outcome="no_answer"
    )
    records.record_verdict(engine, entry, "useful", recorded_by="cur-a")
    records.record_feedback(engine, entry, "the mentor calls", question="Q?", recorded_by="cur-a")
    again = publish_week(
        engine, as_of=WEEK, ranking=tiny_ranking({"cur-a": ["s2", "s1"], "cur-b": ["s4"]})
    )
    assert (again.week_id, again.publications, again.listed) == (week.week_id, 2, 3)
    cards = records.curator_cards(engine, week.week_id, "cur-a")
    assert [c.entry["student_id"] for c in cards] == ["s2", "s1"]
    s1 = cards[1]
    assert [c["contact_id"] for c in s1.contacts] == [contact]
    assert s1.contacts[0]["outcome"] == "no_answer"
    assert s1.verdict["verdict"] == "useful"
    assert [a["answer"] for a in s1.answers] == ["the mentor calls"]
    assert len(recorded_contacts(engine)) == 1


def test_later_outcome_supersedes(engine):
    week = publish_week(engine, as_of=WEEK, ranking=tiny_ranking())
    entry = records.find_entry(engine, "s2", "PY101-2026A", week.week_id)
    contact = records.record_contact(
        engine, entry, recorded_by="cur-a", channel="phone", outcome="no_answer"
    )
    records.record_outcome(engine, contact, "replied", recorded_by="cur-a")
    table = recorded_contacts(engine)
    assert table["outcome"].tolist() == ["replied"]


def test_recorded_contacts_has_the_interventions_shape(engine, tmp_path):
    publish_week(engine, as_of=WEEK, ranking=tiny_ranking())
    for sid, outcome in (("s1", "replied"), ("s4", None)):
        entry = records.find_entry(engine, sid, "PY101-2026A")
        records.record_contact(
            engine,
            entry,
            recorded_by=entry.curator_id,
            channel="message",
            outcome=outcome,
            ts=WEEK + timedelta(days=1),
        )
    table = recorded_contacts(engine)
    assert list(table.columns) == INTERVENTION_COLUMNS
    assert str(table["ts"].dtype) == "datetime64[us, UTC]"
    assert table["student_id"].tolist() == ["s1", "s4"]
    assert table["curator_id"].tolist() == ["cur-a", "cur-b"]
    assert table["action"].tolist() == ["write_first", "write_first"]
    assert table["outcome"].isna().tolist() == [False, True]
    assert recorded_contacts(engine, since=NEXT_WEEK).empty
    path = export_interventions(engine, tmp_path / "export")
    back = pd.read_parquet(path)
    assert back["student_id"].tolist() == ["s1", "s4"]
    assert (back["ts"] == WEEK + timedelta(days=1)).all()


def test_empty_recorded_contacts_still_has_columns(engine):
    table = recorded_contacts(engine)
    assert table.empty and list(table.columns) == INTERVENTION_COLUMNS


def test_accounts_tokens_are_hashed_and_revocable(engine):
    create_person(engine, "cur-a")
    raw = create_credential(engine, "cur-a", KIND_API, timedelta(days=1))
    assert account_for_secret(engine, raw, KIND_API).person_id == "cur-a"
    from webapp.db.models import Credential

    with engine.connect() as conn:
        stored = conn.execute(select(Credential.token_hash)).scalars().all()
    assert raw not in stored and len(stored[0]) == 64
    nonce = create_invite(engine, "cur-a", timedelta(hours=1))
    ended = revoke_person(engine, "cur-a")
    assert ended == {"credentials": 1, "invites": 1}
    assert account_for_secret(engine, raw, KIND_API) is None
    assert consume_invite(engine, nonce, "cur-a") is None
    with pytest.raises(AccountError):
        revoke_person(engine, "nobody")


def test_expired_credential_and_invite_refused(engine):
    create_person(engine, "cur-a")
    raw = create_credential(engine, "cur-a", KIND_API, timedelta(seconds=-1))
    assert account_for_secret(engine, raw, KIND_API) is None
    nonce = create_invite(engine, "cur-a", timedelta(seconds=-1))
    assert consume_invite(engine, nonce, "cur-a") is None


def test_invite_is_single_use(engine):
    create_person(engine, "cur-a")
    nonce = create_invite(engine, "cur-a", timedelta(hours=1))
    assert consume_invite(engine, nonce, "cur-a").person_id == "cur-a"
    assert consume_invite(engine, nonce, "cur-a") is None


def test_lead_summary_counts(engine):
    week_ref = publish_week(engine, as_of=WEEK, ranking=tiny_ranking())
    week = records.get_week(engine, WEEK)
    assert week.week_id == week_ref.week_id
    s1 = records.find_entry(engine, "s1", "PY101-2026A")
    s2 = records.find_entry(engine, "s2", "PY101-2026A")
    records.record_contact(engine, s1, recorded_by="cur-a", channel="email", outcome="replied")
    records.record_contact(engine, s1, recorded_by="cur-a", channel="phone", outcome="resolved")
    records.record_verdict(engine, s1, "useful", recorded_by="cur-a")
    records.record_verdict(engine, s2, "wrongly_flagged", recorded_by="cur-a", reason="on leave")
    summary = records.lead_summary(engine, week, "cur-a", wrong_verdict="wrongly_flagged")
    assert (summary.listed, summary.contacted) == (3, 1)
    assert summary.outcomes == {"replied": 1, "resolved": 1}
    assert summary.verdicts_by_group == {
        "inactivity": {"wrongly_flagged": 1},
        "submissions": {"useful": 1},
    }
    assert summary.wrongly_flagged_share == {"inactivity": 1.0, "submissions": 0.0}
    assert summary.median_hours_to_first_contact is not None
    everyone = records.lead_summary(engine, week, None, wrong_verdict="wrongly_flagged")
    assert everyone.listed == 5
    assert [r["contacted"] for r in everyone.per_curator] == [1, 0]
