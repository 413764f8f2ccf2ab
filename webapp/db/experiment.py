"""The hold-out's arms in the workspace database: stored once per enrolment, read back whole."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine, insert, select

from interventions.holdout import ARM_COLUMNS
from webapp.db.engine import as_utc, utcnow
from webapp.db.models import ExperimentArm

# `notalone effect` leaves its latest result here, in the workspace home; the lead's page shows it
# (the outcomes come from the school's source, which the app does not read).
EFFECT_FILE = "effect.json"

ARM_FIELDS = ARM_COLUMNS  # one list of the arm columns, the draw's own


def read_arms(engine: Engine) -> pd.DataFrame:
    """Every stored arm (ARM_FIELDS; times UTC), in the order drawn."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(*(getattr(ExperimentArm, f) for f in ARM_FIELDS)).order_by(
                ExperimentArm.assigned_at, ExperimentArm.student_id, ExperimentArm.course_id
            )
        ).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=ARM_FIELDS)
    for col in ("student_id", "course_id", "arm", "curator_id", "risk_band"):
        frame[col] = frame[col].astype("str")
    for col in ("assigned_at", "release_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
    frame["risk"] = frame["risk"].astype("float64")
    return frame


def assign_arms(engine: Engine, arms: pd.DataFrame) -> int:
    """Store new arms in one transaction; an enrolment that already has an arm keeps it (its row
    here is skipped: append-only). Returns how many were stored."""
    if arms is None or arms.empty:
        return 0
    now = utcnow()
    with engine.begin() as conn:
        existing = {
            (s, c)
            for s, c in conn.execute(
                select(ExperimentArm.student_id, ExperimentArm.course_id)
            ).all()
        }
        rows = []
        for r in arms[ARM_FIELDS].itertuples(index=False):
            key = (str(r.student_id), str(r.course_id))
            if key in existing:
                continue
            existing.add(key)
            rows.append(
                {
                    "student_id": key[0],
                    "course_id": key[1],
                    "arm": str(r.arm),
                    "assigned_at": as_utc(pd.Timestamp(r.assigned_at).to_pydatetime()),
                    "release_at": as_utc(pd.Timestamp(r.release_at).to_pydatetime()),
                    "curator_id": str(r.curator_id),
                    "risk_band": str(r.risk_band),
                    "risk": None if pd.isna(r.risk) else float(r.risk),
                    "recorded_at": now,
                }
            )
        if rows:
            conn.execute(insert(ExperimentArm), rows)
    return len(rows)


def arm_counts(engine: Engine, now) -> dict[str, int]:
    """Drawn, in control, and in control and still out at `now` (for the lead's page)."""
    arms = read_arms(engine)
    control = arms["arm"] == "control"
    out = control & (arms["release_at"] > pd.Timestamp(as_utc(now)))
    return {"drawn": len(arms), "control": int(control.sum()), "out_now": int(out.sum())}
