"""Publishing a scored week: its curator lists replace the week's earlier ones, in one
transaction, so readers see the old week or the new one, never a mix."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, delete, insert, select, update

from features.errors import NotaloneError
from interventions.winback import EARLY_WARNING
from webapp.db.engine import as_utc, utcnow
from webapp.db.models import ListEntry, Week

REQUIRED_COLUMNS = (
    "student_id",
    "course_id",
    "curator_id",
    "listed",
    "rank",
    "risk",
    "change",
    "reasons",
    "tier",
    "action",
    "message",
    "triggered",
)
KEYS = ["student_id", "course_id"]


class PublishError(NotaloneError):
    """The ranking cannot be published (missing columns, duplicate enrolments)."""


@dataclass(frozen=True)
class PublishedWeek:
    week_id: int
    as_of: datetime
    listed: int
    publications: int  # 1 on the first publication, +1 on every re-publication


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return str(value)


def _number(value) -> float | None:
    if value is None or value is pd.NA:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def list_rows(
    ranking: pd.DataFrame,
    lists: pd.DataFrame | None = None,
    display_names: pd.DataFrame | None = None,
    course_titles: pd.Series | dict | None = None,
) -> list[dict]:
    """The listed rows of a ranking as `list_entries` rows (without week_id).

    `lists` (interventions.ranking.curator_lists: curator_id, student, course, tier, action as
    labels) gives the tier and action labels; `display_names` (student_id, display_name) and
    `course_titles` (course_id -> title) are optional."""
    missing = [c for c in REQUIRED_COLUMNS if c not in ranking.columns]
    if missing:
        raise PublishError(
            f"ranking to publish lacks column(s) {', '.join(missing)} "
            f"(has: {', '.join(map(str, ranking.columns[:12]))}...)"
        )
    listed = ranking[ranking["listed"].fillna(False).astype(bool)]
    frame = pd.DataFrame(
        {
            "student_id": listed["student_id"].astype("str"),
            "course_id": listed["course_id"].astype("str"),
            "curator_id": listed["curator_id"].astype("str"),
            "rank": listed["rank"].astype("int64"),
            "risk": listed["risk"].astype("float64"),
            "change": listed["change"].astype("float64"),
            "reasons": listed["reasons"],
            "reason_group": listed.get("lead_group", ""),
            "tier": listed["tier"],
            "action": listed["action"],
            "message": listed["message"],
            "triggered": listed["triggered"].fillna(False).astype(bool),
            "trigger_names": listed.get("triggers", ""),
            # A ranking scored without win-back sections is all early warning.
            "section": listed.get("section", EARLY_WARNING),
        }
    )
    dupes = frame[frame.duplicated(KEYS, keep=False)]
    if not dupes.empty:
        raise PublishError(
            "ranking to publish lists an enrolment twice (student_id, course_id): "
            + ", ".join(f"{r.student_id}/{r.course_id}" for r in dupes.head(5).itertuples())
        )
    labels = {}
    if lists is not None and not lists.empty:
        for row in lists.itertuples(index=False):
            labels[(str(row.student), str(row.course))] = (str(row.tier), str(row.action))
    names = {}
    if display_names is not None and not display_names.empty:
        clean = display_names.dropna(subset=["display_name"])
        names = dict(
            zip(clean["student_id"].astype("str"), clean["display_name"].astype("str"), strict=True)
        )
    titles = dict(course_titles) if course_titles is not None else {}
    rows = []
    for r in frame.itertuples(index=False):
        tier_label, action_label = labels.get((r.student_id, r.course_id), ("", ""))
        rows.append(
            {
                "curator_id": r.curator_id,
                "student_id": r.student_id,
                "course_id": r.course_id,
                "course_title": _text(titles.get(r.course_id, "")),
                "display_name": names.get(r.student_id),
                "rank": int(r.rank),
                "risk": _number(r.risk),
                "change": _number(r.change),
                "reasons": _text(r.reasons),
                "reason_group": _text(r.reason_group),
                "tier": _text(r.tier),
                "tier_label": tier_label or _text(r.tier),
                "action": _text(r.action),
                "action_label": action_label or _text(r.action),
                "message": _text(r.message),
                "triggered": bool(r.triggered),
                "trigger_names": _text(r.trigger_names),
                "section": _text(r.section) or EARLY_WARNING,
            }
        )
    return rows


def publish_week(
    engine: Engine,
    *,
    as_of: datetime,
    ranking: pd.DataFrame,
    lists: pd.DataFrame | None = None,
    model_uri: str = "",
    language: str = "en",
    display_names: pd.DataFrame | None = None,
    course_titles: pd.Series | dict | None = None,
) -> PublishedWeek:
    """Publish (or re-publish) the week `as_of`: its lists replace the earlier ones in one
    transaction. Contacts, outcomes, verdicts and answers point at the week's id, which stays."""
    rows = list_rows(ranking, lists, display_names, course_titles)
    when = as_utc(pd.Timestamp(as_of).to_pydatetime())
    now = utcnow()
    with engine.begin() as conn:
        found = conn.execute(
            select(Week.week_id, Week.publications).where(Week.as_of == when).with_for_update()
        ).first()
        if found is None:
            week_id = conn.execute(
                insert(Week)
                .values(
                    as_of=when,
                    first_published_at=now,
                    published_at=now,
                    publications=1,
                    model_uri=model_uri,
                    language=language,
                    listed=len(rows),
                )
                .returning(Week.week_id)
            ).scalar_one()
            publications = 1
        else:
            week_id, publications = found.week_id, found.publications + 1
            conn.execute(delete(ListEntry).where(ListEntry.week_id == week_id))
            conn.execute(
                update(Week)
                .where(Week.week_id == week_id)
                .values(
                    published_at=now,
                    publications=publications,
                    model_uri=model_uri,
                    language=language,
                    listed=len(rows),
                )
            )
        if rows:
            conn.execute(insert(ListEntry), [{**row, "week_id": week_id} for row in rows])
    return PublishedWeek(week_id, when, len(rows), publications)
