"""Frozen pydantic models for every knob; `load_config` reads `default.yaml` plus an override file.

Every section has defaults equal to `default.yaml`, so a user's config file only names what it
changes. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
MESSAGES_DIR = CONFIG_DIR / "messages"


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


DEFAULT_COURSE_TITLES: dict[str, str] = {
    "PY101": "Python for beginners",
    "DA150": "Data analysis with SQL and pandas",
    "WEB110": "Web development basics",
    "UX120": "UX/UI design",
    "QA130": "Software testing",
    "PM140": "Product management",
    "DS201": "Data science career track",
    "ML301": "Machine learning engineer",
}
DEFAULT_AGE_SHARES: dict[str, float] = {"18-24": 0.3, "25-34": 0.4, "35-44": 0.2, "45+": 0.1}
DEFAULT_AGE_HAZARD: dict[str, float] = {"18-24": 0.15, "25-34": 0.0, "35-44": -0.05, "45+": -0.1}
DEFAULT_REGION_SHARES: dict[str, float] = {"capital": 0.3, "city": 0.4, "town": 0.2, "rural": 0.1}
DEFAULT_REGION_TECH: dict[str, float] = {"capital": 0.8, "city": 1.0, "town": 1.2, "rural": 1.8}
DEFAULT_WEEKLY_EVENT_MEANS: dict[str, float] = {
    "login": 7.0,
    "lesson_view": 16.0,
    "lesson_complete": 7.0,
    "quiz_attempt": 3.5,
    "activity": 9.0,
    "question": 0.7,
}


class GeneratorConfig(Section):
    """Synthetic school (`notalone generate`): calendar, groups, student behaviour, output chunks.

    features/synthetic.py describes the simulation these knobs drive. Rates are per week.
    """

    # calendar
    first_start: date = date(2025, 9, 1)
    n_course_runs: int = Field(8, ge=1)
    course_weeks_min: int = Field(8, ge=1)
    course_weeks_max: int = Field(26, ge=1)
    start_spread_weeks: int = Field(30, ge=0)
    start_jitter_weeks: int = Field(1, ge=0)
    data_end_weeks_after_last_start: int = Field(6, ge=1)
    course_titles: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_COURSE_TITLES))
    lessons_per_week: int = Field(3, ge=1)
    final_assignment_weight: float = Field(3.0, gt=0)
    late_submission_grace_days: float = Field(7.0, ge=0)
    # enrolment
    run_size_spread: float = Field(0.3, ge=0, lt=1)
    enrol_lead_days_mean: float = Field(14.0, gt=0)
    enrol_lead_days_max: float = Field(60.0, gt=0)
    late_enrol_share: float = Field(0.15, ge=0, le=1)
    late_enrol_days_max: float = Field(14.0, ge=0)
    second_enrollment_share: float = Field(0.08, ge=0, le=1)
    # curators and mentors
    students_per_curator_min: int = Field(60, ge=1)
    students_per_curator_max: int = Field(120, ge=1)
    students_per_mentor: int = Field(300, ge=1)
    mentor_min_weeks: int = Field(16, ge=1)
    # static attributes (attr_*): shares, and their mild effects
    age_band_shares: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_AGE_SHARES))
    age_band_hazard: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_AGE_HAZARD))
    region_shares: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_REGION_SHARES))
    region_tech_factor: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_REGION_TECH))
    prior_courses_mean: float = Field(0.7, ge=0)
    prior_courses_max: int = Field(5, ge=0)
    prior_course_hazard: float = -0.1
    # latent engagement: AR(1) around the starting level plus a student-specific drift
    engagement_start_mean: float = 1.2
    engagement_start_sd: float = Field(0.9, ge=0)
    engagement_drift_mean: float = -0.06
    engagement_drift_sd: float = Field(0.08, ge=0)
    engagement_reversion: float = Field(0.1, ge=0, le=1)
    engagement_noise_sd: float = Field(0.2, ge=0)
    shock_prob: float = Field(0.01, ge=0, le=1)
    shock_size_min: float = Field(1.0, ge=0)
    shock_size_max: float = Field(2.5, ge=0)
    activity_level_sd: float = Field(0.35, ge=0)
    # weekly events of a fully engaged student (activity level 1)
    weekly_event_means: dict[
        Literal["login", "lesson_view", "lesson_complete", "quiz_attempt", "activity", "question"],
        float,
    ] = Field(default_factory=lambda: dict(DEFAULT_WEEKLY_EVENT_MEANS))
    activity_count_mean: float = Field(3.0, ge=0)
    feedback_prob: float = Field(0.15, ge=0, le=1)
    feedback_mean: float = Field(3.8, ge=1, le=5)
    feedback_sd: float = Field(0.7, ge=0)
    feedback_engagement: float = Field(1.5, ge=0)
    feedback_problem_penalty: float = Field(1.0, ge=0)
    question_struggle_gain: float = Field(1.5, ge=0)
    # assignments and scores
    submit_habit_mean: float = 1.0
    submit_habit_sd: float = Field(0.8, ge=0)
    submit_engagement: float = 1.5
    late_habit_alpha: float = Field(1.0, gt=0)
    late_habit_beta: float = Field(3.0, gt=0)
    late_days_mean_max: float = Field(8.0, ge=0)
    on_time_window_days: float = Field(5.0, gt=0, le=7)
    score_mean: float = 68.0
    score_ability_sd: float = Field(12.0, ge=0)
    score_engagement: float = 6.0
    score_noise_sd: float = Field(10.0, ge=0)
    score_reference: float = 60.0
    # technical problems (support tickets)
    tech_problem_prob: float = Field(0.03, ge=0, le=1)
    tech_resolve_prob: float = Field(0.5, ge=0, le=1)
    tech_engagement_penalty: float = Field(0.3, ge=0)
    tickets_per_problem_week: float = Field(1.0, ge=0)
    # weekly dropout hazard (logit terms)
    hazard_base: float = -5.5
    hazard_disengagement: float = 3.0
    disengagement_threshold: float = 0.5
    hazard_missed: float = 2.0
    hazard_tech: float = 1.5
    hazard_score: float = 0.4
    hazard_early: float = 0.5
    hazard_early_weeks: float = Field(2.0, gt=0)
    hazard_run_sd: float = Field(0.2, ge=0)
    tracker_decay: float = Field(0.6, ge=0, lt=1)
    fade_share: float = Field(0.7, ge=0, le=1)
    fade_weeks_mean: float = Field(2.0, ge=1)
    fade_engagement_drop: float = Field(1.0, ge=0)
    # how a dropout shows: formal unenrolment (maybe after a lag) or silent quitting
    formal_share: float = Field(0.65, ge=0, le=1)
    unenrol_immediate_share: float = Field(0.5, ge=0, le=1)
    unenrol_immediate_hours: float = Field(2.0, ge=0)
    unenrol_lag_days_mean: float = Field(10.0, ge=0)
    unenrol_login_minutes: float = Field(30.0, ge=0)
    ghost_login_prob: float = Field(0.1, ge=0, le=1)
    # past curator contacts (interventions.parquet)
    contact_base_prob: float = Field(0.01, ge=0, le=1)
    contact_missed_prob: float = Field(0.08, ge=0, le=1)
    contact_tech_prob: float = Field(0.15, ge=0, le=1)
    contact_silent_prob: float = Field(0.2, ge=0, le=1)
    contact_reply_bias: float = 0.0
    contact_engagement_boost: float = 0.3
    # A reply calls off a decision to leave that is still fading with this probability (0: a
    # contact never turns back a student already fading; `simulate-term` plants its effect here).
    contact_recovery_prob: float = Field(0.0, ge=0, le=1)
    # output
    block_enrollments: int = Field(2000, ge=1)
    threads: int = Field(2, ge=1)
    chunk_enrollments: int = Field(20_000, ge=1)
    parquet_compression: Literal["zstd", "snappy", "lz4", "none"] = "zstd"

    @model_validator(mode="after")
    def _consistent(self) -> GeneratorConfig:
        if self.course_weeks_min > self.course_weeks_max:
            raise ValueError("generator.course_weeks_min must not exceed course_weeks_max")
        if self.course_weeks_min <= self.data_end_weeks_after_last_start:
            raise ValueError(
                "generator.course_weeks_min must exceed data_end_weeks_after_last_start, "
                "so that the latest course run is still running at the data end"
            )
        if self.students_per_curator_min > self.students_per_curator_max:
            raise ValueError("generator.students_per_curator_min must not exceed ..._max")
        if self.shock_size_min > self.shock_size_max:
            raise ValueError("generator.shock_size_min must not exceed shock_size_max")
        if not self.course_titles:
            raise ValueError("generator.course_titles must name at least one course")
        for name in ("age_band_shares", "region_shares"):
            shares = getattr(self, name)
            if not shares or min(shares.values()) < 0 or sum(shares.values()) <= 0:
                raise ValueError(f"generator.{name} must hold non-negative shares")
        if set(self.age_band_hazard) != set(self.age_band_shares):
            raise ValueError("generator.age_band_hazard must name the same bands as the shares")
        if set(self.region_tech_factor) != set(self.region_shares):
            raise ValueError("generator.region_tech_factor must name the same regions")
        return self


class OuladConfig(Section):
    """OULAD ingest: calendar anchors, curator groups and the mapping of VLE activity types.

    The activity-type mapping lives in `default.yaml` only (the bare model's default is empty, and
    the ingest then names every unmapped type in its error); all other defaults equal the YAML.
    """

    curator_group_size: int = Field(default=100, ge=1)
    b_start_month: int = Field(default=2, ge=1, le=12)
    j_start_month: int = Field(default=10, ge=1, le=12)
    start_day: int = Field(default=1, ge=1, le=28)
    event_hour_utc: int = Field(default=12, ge=1, le=23)
    keep_banked: bool = True
    partial_click_presentations: tuple[str, ...] = ("BBB-2013J",)
    merge_same_day_clicks: bool = True
    click_file_pattern: str = "studentVle*.csv*"
    pre_course_file: str | None = "derived/vle_pre_course_features.csv"
    activity_map: dict[str, str] = Field(default_factory=dict)


class ValidationConfig(Section):
    """Contract check (`notalone validate`): what counts as implausible, what is tolerated."""

    max_days_outside_course: int = 400
    earliest_timestamp: date = date(1990, 1, 1)
    latest_timestamp: date = date(2100, 1, 1)
    max_unknown_enrollment_share: float = 0.01
    example_rows: int = 5
    example_value_chars: int = 80
    duckdb_memory_limit: str = "2GB"
    duckdb_threads: int | None = None


class SnapshotConfig(Section):
    """Weekly as-of times and the dropout label."""

    step_days: int = 7
    first_offset_days: int = 7
    horizon_days: int = 28
    inactivity_is_dropout: bool = False


class FeatureConfig(Section):
    windows_days: tuple[int, ...] = (7, 14, 28)
    support_window_days: int = 14
    include_attrs: bool = True
    duckdb_memory_limit: str = "2GB"
    duckdb_threads: int | None = None
    chunk_grid_rows: int = 1_000_000


class SplitConfig(Section):
    """How labelled snapshots are split by time into training, validation and test rows."""

    method: Literal["course_start", "cutoff"] = "course_start"
    test_share: float = Field(0.3, gt=0, lt=1)
    test_from: str | None = None
    cutoff: str | None = None
    validation_share: float = Field(0.2, gt=0, lt=1)
    embargo: bool = True
    max_test_share: float = Field(0.5, gt=0, lt=1)
    course_start_fallback: Literal["cutoff", "error"] = "cutoff"


class LogisticConfig(Section):
    """The logistic-regression baseline (standardised, imputed features)."""

    C: float = 1.0
    max_iter: int = 1000


DEFAULT_LGB_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
}


DEFAULT_TUNING_SPACE: dict[str, list[Any]] = {
    "learning_rate": [0.01, 0.2, "log"],
    "num_leaves": [7, 63],
    "min_child_samples": [20, 500, "log"],
    "feature_fraction": [0.4, 1.0],
    "lambda_l2": [0.01, 30.0, "log"],
}


class TuningConfig(Section):
    """Optuna search (models/tuning.py): trials, and [low, high(, "log")] per LightGBM param."""

    enabled: bool = False  # `notalone train` tunes before fitting (trials logged to MLflow)
    n_trials: int = Field(20, ge=1)
    study_name: str = "notalone-lightgbm"
    space: dict[str, list[Any]] = Field(default_factory=lambda: dict(DEFAULT_TUNING_SPACE))


class ModelConfig(Section):
    """LightGBM, its imbalance handling and the probability calibration."""

    seed: int = 42
    num_threads: int = Field(1, ge=1)
    num_boost_round: int = 2000
    early_stopping_rounds: int = 100
    early_stopping_metric: str = "average_precision"
    class_weight: Literal["balanced", "none"] = "balanced"
    negatives_per_positive: float = Field(5.0, ge=0)
    exclude_features: tuple[str, ...] = ()
    params: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_LGB_PARAMS))
    calibration_methods: tuple[Literal["isotonic", "sigmoid"], ...] = ("isotonic", "sigmoid")
    calibration_folds: int = Field(5, ge=2)
    served_calibration_folds: int = Field(2, ge=0)
    calibration_select_by: Literal["brier", "log_loss"] = "brier"
    prob_clip: float = Field(1e-6, gt=0, lt=0.5)
    tie_break: float = Field(1e-6, ge=0, lt=1e-3)
    refit_on_validation: bool = True
    allow_logistic_champion: bool = True
    logistic: LogisticConfig = LogisticConfig()
    tuning: TuningConfig = TuningConfig()

    @model_validator(mode="after")
    def _crossfit_folds(self) -> ModelConfig:
        if self.served_calibration_folds == 1:
            raise ValueError(
                "model.served_calibration_folds: 0 (keep the evaluated calibration) or at least 2"
            )
        return self


class EvaluationConfig(Section):
    """Test-period metrics, segment reporting, plots and the promotion rule."""

    top_share: float = Field(0.10, gt=0, lt=1)
    promote_metric: Literal["pr_auc", "roc_auc"] = "pr_auc"
    min_improvement: float = 0.0
    min_segment_size: int = 30
    segment_max_values: int = 12
    segment_numeric_bins: int = 4
    min_week_rows: int = 30
    calibration_bins: int = 10
    shap_sample_rows: int = 2000
    shap_top_features: int = 15
    input_example_rows: int = 5
    rule_recency: tuple[str, ...] = ("days_since_last_activity", "days_since_last_submission")
    rule_fallback: tuple[str, ...] = ("days_since_enrolment", "days_since_start")
    rule_tiebreak: str = "deadlines_missed"


class RegistryConfig(Section):
    """The MLflow registered model and experiment."""

    model_name: str = "notalone-dropout"
    experiment: str = "notalone"
    compare_last: int = 10


ConditionOp = Literal[">=", ">", "<=", "<", "==", "!=", "missing", "present"]
VALUE_OPS = (">=", ">", "<=", "<", "==", "!=")


class ScoringCondition(Section):
    """One test on a student's row, for triggers and routing rules. Exactly one kind:

    - `feature` + `op` (+ `value` for comparisons): the feature's value at T; a missing value
      fails every comparison (use `op: missing` to test for it);
    - `reason`: the reason group is among the student's top reasons from the model;
    - `all_of` / `any_of`: a list of conditions, all / at least one of which hold.
    """

    feature: str | None = None
    op: ConditionOp | None = None
    value: float | None = None
    reason: str | None = None
    all_of: tuple[ScoringCondition, ...] | None = None
    any_of: tuple[ScoringCondition, ...] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ScoringCondition:
        kinds = [
            self.feature is not None,
            self.reason is not None,
            self.all_of is not None,
            self.any_of is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError("a condition has exactly one of: feature, reason, all_of, any_of")
        if self.feature is not None:
            if self.op is None:
                raise ValueError(f"condition on {self.feature!r} needs an op")
            if (self.op in VALUE_OPS) != (self.value is not None):
                raise ValueError(
                    f"condition on {self.feature!r}: op {self.op!r} "
                    + ("needs a value" if self.op in VALUE_OPS else "takes no value")
                )
        elif self.op is not None or self.value is not None:
            raise ValueError("op and value belong to a feature condition")
        for group in (self.all_of, self.any_of):
            if group is not None and not group:
                raise ValueError("all_of / any_of needs at least one condition")
        return self


class RoutingRule(Section):
    """When `when` holds, the student goes to support `tier` with first `action`."""

    name: str
    when: ScoringCondition
    tier: str
    action: str


class TriggerRule(RoutingRule):
    """A rule from the school's playbook: fires whatever the model says and always lists the
    student (within capacity). Its own reason shows `feature`'s value through the trigger's
    template; it stands in for the model's reason group `reason_group` (no duplicate reason)."""

    feature: str
    reason_group: str | None = None
    # Onset semantics (interventions.triggers): the trigger fires when its condition starts (it
    # did not hold at the student's previous scoring), and again only after
    # `scoring.trigger_cooldown_days` and only when `severity` (a feature) grew by `worse_by`
    # since the last firing. Without `severity`, a new onset after the cooldown fires again.
    # `onset: false` fires whenever the condition holds (the old behaviour).
    severity: str | None = None
    worse_by: float = Field(1.0, gt=0)
    # ...and by this factor: 2 = only when it doubled (1, 2, 4, 8 missed deadlines), so a
    # student who keeps missing weekly work is not written to every cooldown.
    worse_ratio: float = Field(1.0, ge=1)
    onset: bool = True


def _cond(feature: str, op: str, value: float | None = None) -> ScoringCondition:
    return ScoringCondition(feature=feature, op=op, value=value)


DEFAULT_TRIGGERS: tuple[TriggerRule, ...] = (
    TriggerRule(
        name="stopped_submitting",
        feature="deadlines_missed_28d",
        reason_group="deadlines",
        tier="curator",
        action="write_first",
        when=ScoringCondition(
            all_of=(
                _cond("deadlines_missed_28d", ">=", 1),
                _cond("submissions_14d", "==", 0),
                # "none in 14 days" needs 14 days in the course (a late first submission is not
                # a stop)
                _cond("days_since_enrolment", ">=", 14),
                _cond("days_since_start", ">=", 14),
            )
        ),
        severity="deadlines_missed",
        worse_ratio=2.0,
    ),
    TriggerRule(
        name="many_questions",
        feature="questions_14d",
        reason_group="questions",
        tier="mentor",
        action="offer_consultation",
        when=_cond("questions_14d", ">=", 5),
        severity="questions_14d",
        worse_ratio=2.0,
    ),
)

DEFAULT_ROUTING_RULES: tuple[RoutingRule, ...] = (
    RoutingRule(
        name="technical_problem",
        tier="technical_support",
        action="fix_technical_problem",
        when=ScoringCondition(
            any_of=(
                ScoringCondition(reason="technical"),
                _cond("support_tickets_14d", ">=", 2),
                ScoringCondition(
                    all_of=(_cond("logins_7d", ">=", 3), _cond("lesson_views_7d", "==", 0))
                ),
            )
        ),
    ),
    RoutingRule(
        name="mentor_consultation",
        tier="mentor",
        action="offer_consultation",
        when=ScoringCondition(
            all_of=(
                _cond("course_length_days", ">=", 112),
                ScoringCondition(
                    any_of=(
                        ScoringCondition(reason="questions"),
                        ScoringCondition(reason="scores"),
                        ScoringCondition(reason="falling_scores"),
                        _cond("score_trend", "<=", -10),
                    )
                ),
            )
        ),
    ),
    RoutingRule(
        name="missed_deadlines",
        tier="curator",
        action="plan_deadlines",
        when=ScoringCondition(reason="deadlines"),
    ),
)

DEFAULT_REASON_GROUPS: dict[str, tuple[str, ...]] = {
    "inactivity": ("days_since_last_activity", "days_since_last_login"),
    "activity": (
        "events_[0-9]*d",
        "active_days_*d",
        "logins_[0-9]*d",
        "events_total",
        "events_*_pct_in_run",
    ),
    "study": (
        "lesson_views_[0-9]*d",
        "lesson_completions_[0-9]*d",
        "quiz_attempts_[0-9]*d",
        "days_since_last_content_view",
    ),
    "activity_drop": ("*_change_7d", "events_slope_28d"),
    "submissions": (
        "days_since_last_submission",
        "submissions_[0-9]*d",
        "submissions_*_pct_in_run",
        "submission_streak",
    ),
    "deadlines": (
        "deadlines_*",
        "on_time_share",
        "days_to_next_deadline",
        "next_deadline_weight",
        "latest_deadline_missed",
        "days_since_missed_deadline",
        "missed_streak",
    ),
    "scores": ("score_mean", "score_last", "score_*_pct_in_run"),
    "falling_scores": ("score_trend",),
    "questions": ("questions_*d",),
    "technical": ("support_tickets_*d",),
    "feedback": ("feedback_last",),
    "course_stage": (
        "days_since_start",
        "course_elapsed_share",
        "days_since_enrolment",
        "course_length_days",
        "registration_lead_days",
    ),
}


class ScoringConfig(Section):
    """The weekly scorer (`notalone score`): capacity, cooldown, reasons, triggers and routing.

    `triggers` and `rules` refer to feature names of the feature frame and to reason groups (keys
    of `reason_groups`); tiers and actions are keys of the message files
    (configs/messages/<language>.yaml), which hold their labels and first messages.
    """

    capacity: int = Field(15, ge=0)
    curator_capacity: dict[str, int] = Field(default_factory=dict)
    cooldown_days: int = Field(14, ge=0)
    risk_jump: float = Field(0.15, ge=0)
    cooldown_applies_to_triggers: bool = True
    language: Literal["en", "ru"] = "en"
    reasons_per_student: int = Field(3, ge=1)
    min_reason_contribution: float = 0.0
    reason_groups: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_REASON_GROUPS)
    )
    skip_reason_prefixes: tuple[str, ...] = ("attr_",)
    explain: Literal["listed", "all"] = "listed"
    triggers: tuple[TriggerRule, ...] = DEFAULT_TRIGGERS
    rules: tuple[RoutingRule, ...] = DEFAULT_ROUTING_RULES
    default_tier: str = "curator"
    default_action: str = "write_first"
    risk_decimals: int = Field(3, ge=1, le=6)
    csv_encoding: str = "utf-8-sig"
    report_high_risk: float = Field(0.3, gt=0, lt=1)
    report_trend_weeks: int = Field(8, ge=1)
    report_histogram_bins: int = Field(20, ge=2)
    lock_wait_seconds: float = Field(300.0, ge=0)
    num_threads: int | None = Field(None, ge=1)
    # Rule triggers fire again only this many days after their last firing (null: cooldown_days).
    trigger_cooldown_days: int | None = Field(None, ge=0)
    # Win-back section (interventions.winback): students silent for the whole horizon, or never
    # active after their first weeks, get their own capped part of each list.
    winback_capacity: int = Field(5, ge=0)
    winback_inactive_days: int | None = Field(None, ge=1)  # null: snapshots.horizon_days
    winback_first_weeks_days: int = Field(14, ge=1)
    winback_tier: str = "curator"
    winback_action: str = "win_back"

    @model_validator(mode="after")
    def _consistent(self) -> ScoringConfig:
        names = [t.name for t in self.triggers] + [r.name for r in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"trigger/rule names must be unique: {', '.join(duplicates)}")
        unknown = [
            t.reason_group
            for t in self.triggers
            if t.reason_group is not None and t.reason_group not in self.reason_groups
        ]
        if unknown:
            raise ValueError(f"trigger reason_group not in reason_groups: {', '.join(unknown)}")
        if any(v < 0 for v in self.curator_capacity.values()):
            raise ValueError("curator_capacity values must be >= 0")
        return self


class DriftConfig(Section):
    """Drift guard: PSI of the model's top features and of the score against training data."""

    psi_threshold: float = Field(0.2, gt=0)
    top_features: int = Field(10, ge=0)
    bins: int = Field(10, ge=1)
    psi_floor: float = Field(1e-4, gt=0, lt=1)
    skip_features: list[str] = Field(
        default_factory=lambda: [
            "course_elapsed_share",
            "days_since_start",
            "days_since_enrolment",
            "course_length_days",
            "*_pct_in_run",
            "deadlines_due*",
            "days_to_next_deadline",
            "next_deadline_weight",
            "score_trend",
        ]
    )
    stage_feature: str | None = "days_since_start"
    stage_width_days: int | None = Field(7, ge=1)  # exact weeks of course; null: quantile bins
    stage_bins: int = Field(5, ge=1)
    noise_by_run: bool = True
    run_column: str = "course_id"
    min_run_rows: int = Field(20, ge=1)
    max_stage_runs: int = Field(200, ge=2)
    run_centred_features: list[str] = Field(
        default_factory=lambda: [
            "days_since_last_submission",
            "days_since_last_activity",
            "days_since_missed_deadline",
        ]
    )
    min_score_runs: int = Field(10, ge=1)
    score_stage_feature: str | None = None
    score_stage_width: float | None = Field(0.05, gt=0)
    score_end_weeks: int | None = Field(4, ge=1)
    course_length_feature: str | None = "course_length_days"
    score_nil_risk: float | None = Field(0.001, gt=0, lt=1)
    min_validation_stage_rows: int = Field(200, ge=0)
    noise_quantile: float | None = Field(0.99, gt=0, lt=1)
    noise_draws: int = Field(1000, ge=1)


class ScheduleConfig(Section):
    """The weekly flow: when it runs (`notalone serve`), when it retrains, how its tasks retry."""

    cron: str = "0 6 * * 1"
    timezone: str = "Europe/London"
    retrain_after_days: int = Field(28, ge=0)
    week_starts_on: int = Field(0, ge=0, le=6)
    deployment_name: str = "notalone-weekly"
    server_port: int = Field(4200, ge=0, le=65535)
    server_startup_timeout_seconds: float = Field(120.0, gt=0)
    server_poll_seconds: float = Field(0.5, gt=0)
    task_retries: int = Field(2, ge=0)
    task_retry_delay_seconds: float = Field(2.0, ge=0)
    feature_cache_entries: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _known_timezone(self) -> ScheduleConfig:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"schedule.timezone {self.timezone!r} is not a known time zone"
            ) from exc
        if len(self.cron.split()) != 5:
            raise ValueError(f"schedule.cron {self.cron!r} needs 5 fields (min hour day month dow)")
        return self


class DemoConfig(Section):
    """`notalone demo`: the synthetic school it generates into the workspace."""

    students: int = Field(5000, ge=1)
    seed: int = 7
    folder: str = "demo-school"


class WorkspaceAppConfig(Section):
    """`notalone app`: the curator workspace (web pages, JSON API, invite links)."""

    publish: bool = True  # `notalone score` and the weekly flow publish each week's lists here
    language: str | None = None  # labels of the pages; None: scoring.language
    invite_expiry_hours: float = Field(72.0, gt=0)
    session_days: float = Field(14.0, gt=0)
    api_token_days: float | None = Field(365.0, gt=0)  # None: API tokens never expire
    cookie_secure: bool = False  # True when the app is served over HTTPS only
    channels: list[str] = ["message", "email", "phone", "video_call", "messenger"]
    outcomes: list[str] = [
        "replied",
        "no_answer",
        "declined_help",
        "resolved",
        "technical_support",
        "mentor",
    ]
    no_reply_outcomes: list[str] = ["no_answer"]  # shown again, marked, the next week
    verdicts: list[str] = ["useful", "already_known", "not_applicable", "wrongly_flagged"]
    wrong_verdict: str = "wrongly_flagged"  # needs a reason; its share is shown per reason group
    feedback_question: dict[str, str] = {
        "en": "What helps you keep going?",
        "ru": "Что помогает вам продолжать учёбу?",
    }
    max_text_chars: int = Field(4000, ge=1)  # messages, reasons and answers are cut to this
    card_history: int = Field(6, ge=1)  # latest contacts shown on a card (the rest counted)

    @model_validator(mode="after")
    def _known_words(self) -> WorkspaceAppConfig:
        if self.wrong_verdict not in self.verdicts:
            raise ValueError(f"workspace_app.wrong_verdict {self.wrong_verdict!r} not in verdicts")
        unknown = set(self.no_reply_outcomes) - set(self.outcomes)
        if unknown:
            raise ValueError(f"workspace_app.no_reply_outcomes not in outcomes: {sorted(unknown)}")
        return self


class MoodleConfig(Section):
    """Moodle ingest (`notalone ingest moodle`, docs/moodle.md): table prefix, roles, event map.

    The event map lives in `configs/moodle.yaml` (loaded by the command under the user's
    --config); the bare model's map is empty, and every event name then counts as `activity`.
    """

    prefix: str = Field("mdl_", pattern=r"^[a-z0-9_]*$")
    student_roles: tuple[str, ...] = ("student",)
    curator_role: str = "teacher"  # Moodle's non-editing teacher; "editingteacher" also works
    mentor_role: str | None = "mentor"  # a role the school creates; absent: no mentor_id
    missing_curator_id: str = "unassigned"  # curator_id of students whose course has no curator
    default_event_type: str = "activity"  # event names not in the map
    event_map: dict[str, str] = Field(default_factory=dict)
    prefetch_batches: int = Field(4, ge=0)  # log batches read ahead by a thread (0: none)


class ExperimentConfig(Section):
    """The randomised hold-out (docs/holdout.md): a share of the students who would be listed is
    drawn into a control arm that is shown on no list, and the effect measure comparing arms."""

    control_share: float = Field(0.10, ge=0, lt=1)  # 0 turns the hold-out off
    seed: int = 20261
    weeks_out: int = Field(4, ge=1)  # a control student is on no list for this many weeks
    risk_bands: list[float] = Field(default_factory=lambda: [0.3, 0.6])  # cut points, ascending
    exempt_tiers: list[str] = Field(default_factory=lambda: ["technical_support"])
    exempt_triggers: bool = False  # true: rule triggers are never held out either
    horizon_days: int | None = Field(None, ge=1)  # dropout within; null: snapshots.horizon_days
    confidence: float = Field(0.90, gt=0, lt=1)  # the interval shown
    claim_alpha: float = Field(0.05, gt=0, lt=1)  # an effect is claimed at this two-sided level
    power: float = Field(0.80, gt=0, lt=1)  # for the minimum detectable effect and the plan
    plan_effect: float = Field(0.05, gt=0, lt=1)  # the effect to detect (absolute dropout drop)
    plan_base_rate: float = Field(0.30, gt=0, lt=1)  # dropout without lists, until measured
    plan_new_share: float = Field(0.5, gt=0, le=1)  # share of a week's list that is new
    min_per_arm: int = Field(30, ge=1)  # below this in an arm: "not enough evidence yet"
    # The effect is a stratified estimate over these strata of the draw (docs/holdout.md): a
    # stratum without a control or without a listed enrolment is dropped (and counted).
    strata: list[Literal["risk_band", "week", "curator"]] = Field(
        default_factory=lambda: ["risk_band", "week"]
    )

    @model_validator(mode="after")
    def _bands_ascending(self) -> ExperimentConfig:
        bands = self.risk_bands
        if any(not 0 < b < 1 for b in bands) or sorted(set(bands)) != list(bands):
            raise ValueError(f"experiment.risk_bands must ascend strictly inside (0, 1): {bands}")
        return self


class SimulationConfig(Section):
    """`notalone simulate-term` (docs/holdout.md): the weekly loop over a term of the synthetic
    school, with simulated curators contacting listed students, against the known truth."""

    students: int = Field(4000, ge=1)  # size of the simulated school
    seed: int = 11  # the school's seed (the same seed: the same world, with or without lists)
    weeks: int = Field(8, ge=1)  # weekly scorings in the term (the last ones the horizon before
    # the school's data end, so every outcome is known)
    contact_rate: float = Field(0.9, ge=0, le=1)  # share of each week's listed students written to
    contact_delay_days: float = Field(1.0, ge=0, lt=7)  # ...this long after the list's as-of time
    # The planted effect: generator knobs set for the run, merged over the generator section. A
    # reply (logit z + contact_reply_bias) lifts engagement by contact_engagement_boost and calls
    # off a fading decision to leave with contact_recovery_prob; both 0: contacts do nothing.
    generator: dict[str, Any] = Field(
        default_factory=lambda: {
            "contact_engagement_boost": 2.0,
            "contact_recovery_prob": 1.0,
            "contact_reply_bias": 3.0,
        }
    )
    control_share: float | None = Field(0.3, gt=0, lt=1)  # null: experiment.control_share
    curator_seed: int = 7  # which listed students the simulated curators reach

    @model_validator(mode="after")
    def _generator_knobs(self) -> SimulationConfig:
        unknown = sorted(set(self.generator) - set(GeneratorConfig.model_fields))
        if unknown:
            raise ValueError(f"simulation.generator: not generator settings: {unknown}")
        return self


class DaskConfig(Section):
    """The Dask cluster of `--dask` (pipelines/dask_store.py); scheduler null: no Dask.

    scheduler: "tcp://HOST:PORT" (an existing cluster) or "local:N" (N one-thread workers).
    """

    scheduler: str | None = None
    # Distributed LightGBM only pays off on large tables; below this many training rows the
    # model is fitted on the client as without Dask.
    train_min_rows: int = Field(1_000_000, ge=0)
    # Course runs per feature partition: a partition is a task that builds whole runs.
    runs_per_partition: int = Field(4, ge=1)
    # Memory each worker of a `local:N` cluster may use (Dask's memory_limit).
    local_memory_limit: str = "2GiB"
    # Seconds to wait for the cluster's workers to appear.
    connect_timeout_s: float = Field(60.0, gt=0)
    # Ports LightGBM listens on between the workers while training: each worker takes a free
    # port of [lightgbm_port_base, + lightgbm_port_count) (a range a firewall can open; a port
    # just used stays busy for a while, so a range, not one port). None: random free ports.
    lightgbm_port_base: int | None = Field(None, ge=1024, le=65000)
    lightgbm_port_count: int = Field(64, ge=1, le=500)


class Config(Section):
    generator: GeneratorConfig = GeneratorConfig()
    oulad: OuladConfig = OuladConfig()
    validation: ValidationConfig = ValidationConfig()
    snapshots: SnapshotConfig = SnapshotConfig()
    features: FeatureConfig = FeatureConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    registry: RegistryConfig = RegistryConfig()
    scoring: ScoringConfig = ScoringConfig()
    drift: DriftConfig = DriftConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    demo: DemoConfig = DemoConfig()
    workspace_app: WorkspaceAppConfig = WorkspaceAppConfig()
    experiment: ExperimentConfig = ExperimentConfig()
    simulation: SimulationConfig = SimulationConfig()
    moodle: MoodleConfig = MoodleConfig()
    dask: DaskConfig = DaskConfig()


class ConfigError(ValueError):
    """A config file is missing, unreadable or does not match the schema."""


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# libyaml's safe loader where PyYAML was built with it: the same documents, about 10x faster
# (default.yaml is parsed on every command).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str) -> Any:
    """`yaml.safe_load`, with libyaml's parser when available."""
    return yaml.load(text, Loader=_SAFE_LOADER)  # CSafeLoader or SafeLoader: no arbitrary objects


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load `default.yaml`, then the user's file on top of it, then in-code overrides."""
    data = _read_yaml(DEFAULT_CONFIG)
    if path is not None:
        data = _deep_merge(data, _read_yaml(Path(path)))
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid config{f' {path}' if path else ''}:\n{exc}") from exc
