"""When the weekly job runs and what it runs on: the as-of time, the latest complete week, and
whether the champion is due for retraining."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from configs.schema import Config
from features.errors import NotaloneError
from features.sources import active_enrollment_count, first_course_start

if TYPE_CHECKING:  # MLflow costs ~1.3 s of imports; `notalone features` needs none of it
    from pipelines.mlflow_store import ChampionInfo


def parse_as_of(value: str | datetime) -> datetime:
    """An ISO date/datetime or a datetime, as UTC; naive values are taken as UTC."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise NotaloneError(f"--as-of {value!r} is not an ISO date like 2026-03-02") from exc
    if pd.isna(ts):
        raise NotaloneError(f"--as-of {value!r} is not an ISO date like 2026-03-02")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def week_start(moment: datetime, weekday: int) -> datetime:
    """00:00 UTC of the latest `weekday` (0 = Monday) at or before `moment`."""
    moment = moment.astimezone(UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=(midnight.weekday() - weekday) % 7)


def latest_week(source: str | Path, config: Config, now: datetime | None = None) -> datetime:
    """The as-of time of the latest complete week: the last week start (00:00 UTC of
    `schedule.week_starts_on`) at or before both `now` and the end of the data, at which some
    enrollment is active (in a run at least `snapshots.first_offset_days` old). Features at T
    read only rows before T, so the week before is complete.

    The data is taken to cover the whole day of its last record (a source exported on Sunday
    night covers Sunday), so its end is the next midnight after the last timestamp.
    """
    from features.build import data_end, open_source

    now = now or datetime.now(UTC)
    con = open_source(source, config)
    try:
        last = datetime.fromtimestamp(data_end(con), UTC)
        end = last.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        first_start = first_course_start(con)
        if first_start is None:
            raise NotaloneError(f"the source {source} has no course runs")
        candidate = week_start(min(now, end), config.schedule.week_starts_on)
        earliest = datetime.fromtimestamp(first_start, UTC)
        while candidate >= earliest:
            if active_enrollment_count(con, candidate, config.snapshots.first_offset_days):
                return candidate
            candidate -= timedelta(days=7)
    finally:
        con.close()
    raise NotaloneError(
        f"no week of {source} up to {min(now, end).date()} has active enrollments to score"
    )


def retrain_reason(
    champion: ChampionInfo | None, config: Config, now: datetime, force: bool = False
) -> str | None:
    """Why the weekly run must retrain first, or None to score with the current champion."""
    if force:
        return "retraining was requested"
    if champion is None:
        return "there is no champion yet"
    age = now - champion.registered_at
    limit = timedelta(days=config.schedule.retrain_after_days)
    if age > limit:
        return (
            f"the champion (version {champion.version}) is {age.days} days old "
            f"(schedule.retrain_after_days = {config.schedule.retrain_after_days})"
        )
    return None
