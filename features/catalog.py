"""The catalogue of behavioural features: names, what they mean, and which way is risky.

Feature building (`features.build`) produces these columns (plus static `attr_*` columns when
enabled); reasons in words (`interventions.reasons`) and the model read their meaning from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from configs.schema import FeatureConfig

# Columns that identify a snapshot and carry routing information; never model inputs.
KEY_COLUMNS = ("student_id", "course_id", "as_of")
META_COLUMNS = ("curator_id", "mentor_id", "course_start", "course_end", "enrolled_at")
LABEL_COLUMN = "label"  # 1.0 dropout in [t, t + horizon), 0.0 stayed, NaN unlabelled


# Event types whose week-on-week change is a feature (`<stem>_change_7d`), and the scores ranked
# within the course run and week (`<score>_pct_in_run`).
CHANGE_TYPES = ("lesson_views", "lesson_completions", "quiz_attempts", "logins", "submissions")
PERCENTILE_SCORES = ("score_mean", "score_last")


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    group: str  # recency, frequency, trend, deadlines, scores, support, progress, cohort
    description: str


def _windowed(windows: tuple[int, ...]) -> list[FeatureSpec]:
    specs = []
    per_type = (
        ("events", "events of any kind"),
        ("active_days", "days with any activity"),
        ("lesson_views", "lesson views"),
        ("lesson_completions", "lessons completed"),
        ("submissions", "assignment submissions"),
        ("quiz_attempts", "quiz attempts"),
        ("logins", "logins"),
    )
    for w in windows:
        for stem, what in per_type:
            specs.append(FeatureSpec(f"{stem}_{w}d", "frequency", f"{what} in the last {w} days"))
    return specs


def feature_specs(config: FeatureConfig) -> list[FeatureSpec]:
    """Every numeric feature the builder produces, in column order."""
    s = config.support_window_days
    return [
        FeatureSpec("days_since_last_activity", "recency", "days since any event (null: never)"),
        FeatureSpec("days_since_last_submission", "recency", "days since the last submission"),
        FeatureSpec("days_since_last_login", "recency", "days since the last login"),
        FeatureSpec(
            "days_since_last_content_view",
            "recency",
            "days since the last lesson (content) view (null: never, or no views in the run)",
        ),
        *_windowed(config.windows_days),
        FeatureSpec("events_total", "frequency", "events since enrolment"),
        FeatureSpec(
            "events_change_7d",
            "trend",
            "relative change of events, last 7 days vs the 7 before (null: none before)",
        ),
        FeatureSpec("events_slope_28d", "trend", "slope of weekly events over the last 4 weeks"),
        *(
            FeatureSpec(
                f"{stem}_change_7d",
                "trend",
                f"relative change of {stem.replace('_', ' ')}, last 7 days vs the 7 before "
                "(null: none before, or none in the run)",
            )
            for stem in CHANGE_TYPES
        ),
        FeatureSpec("deadlines_due", "deadlines", "assignments due so far"),
        FeatureSpec("deadlines_missed", "deadlines", "assignments due so far and not submitted"),
        FeatureSpec("deadlines_late", "deadlines", "assignments submitted after their deadline"),
        FeatureSpec("on_time_share", "deadlines", "share of due assignments submitted on time"),
        FeatureSpec("deadlines_due_28d", "deadlines", "assignments due in the last 28 days"),
        FeatureSpec(
            "deadlines_missed_28d",
            "deadlines",
            "assignments due in the last 28 days, not submitted",
        ),
        FeatureSpec(
            "days_to_next_deadline",
            "deadlines",
            "days until the next assignment deadline of the course run (null: none left)",
        ),
        FeatureSpec(
            "next_deadline_weight", "deadlines", "weight of the next deadline (null: none/unknown)"
        ),
        FeatureSpec(
            "latest_deadline_missed",
            "deadlines",
            "1 when the most recent deadline passed with no submission before t, 0 when it was "
            "submitted (null: no deadline passed yet)",
        ),
        FeatureSpec(
            "days_since_missed_deadline",
            "deadlines",
            "days since the most recent deadline still unsubmitted at t (null: none missed)",
        ),
        FeatureSpec(
            "submission_streak",
            "deadlines",
            "consecutive most recent due assignments submitted (0 before the first deadline)",
        ),
        FeatureSpec(
            "missed_streak",
            "deadlines",
            "consecutive most recent due assignments not submitted (0 before the first deadline)",
        ),
        FeatureSpec("score_mean", "scores", "mean assignment score so far (null: none)"),
        FeatureSpec("score_last", "scores", "latest assignment score"),
        FeatureSpec(
            "score_trend", "scores", "mean score of the last 28 days minus the mean before them"
        ),
        FeatureSpec(f"questions_{s}d", "support", f"questions asked in the last {s} days"),
        FeatureSpec(
            f"support_tickets_{s}d", "support", f"technical support tickets in the last {s} days"
        ),
        FeatureSpec("feedback_last", "support", "latest feedback rating 1-5 (null: none)"),
        FeatureSpec("days_since_start", "progress", "days since the course run started"),
        FeatureSpec("course_elapsed_share", "progress", "share of the course run elapsed"),
        FeatureSpec("days_since_enrolment", "progress", "days since the student enrolled"),
        FeatureSpec("course_length_days", "progress", "length of the course run in days"),
        FeatureSpec(
            "registration_lead_days",
            "progress",
            "days between enrolment and the course start (negative: enrolled after the start)",
        ),
        FeatureSpec(
            "events_28d_pct_in_run", "cohort", "percentile of 28-day events within the course run"
        ),
        FeatureSpec(
            "submissions_28d_pct_in_run",
            "cohort",
            "percentile of 28-day submissions within the course run",
        ),
        *(
            FeatureSpec(
                f"{score}_pct_in_run",
                "cohort",
                f"percentile of {score} among the scored students of the course run and week",
            )
            for score in PERCENTILE_SCORES
        ),
    ]


def feature_names(config: FeatureConfig) -> list[str]:
    return [spec.name for spec in feature_specs(config)]
