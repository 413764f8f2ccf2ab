"""Frozen pydantic models for every knob; `load_config` reads `default.yaml` plus an override file.

Every section has defaults equal to `default.yaml`, so a user's config file only names what it
changes. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
MESSAGES_DIR = CONFIG_DIR / "messages"


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GeneratorConfig(Section):
    """Synthetic school: shape of the course catalogue and of student behaviour."""

    first_start: str = "2025-09-01"
    n_course_runs: int = 8
    course_weeks_min: int = 8
    course_weeks_max: int = 26
    start_spread_weeks: int = 30
    students_per_curator_min: int = 60
    students_per_curator_max: int = 120
    students_per_mentor: int = 300
    events_per_active_week: float = 25.0
    chunk_students: int = 20_000


class OuladConfig(Section):
    """OULAD ingest: calendar anchors and the mapping of VLE activity types to event types."""

    curator_group_size: int = 100
    b_start_month: int = 2
    j_start_month: int = 10
    activity_map: dict[str, str] = Field(default_factory=dict)


class ValidationConfig(Section):
    max_days_outside_course: int = 400
    example_rows: int = 5


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
    duckdb_memory_limit: str = "3GB"
    duckdb_threads: int | None = None


class SplitConfig(Section):
    method: Literal["course_start", "cutoff"] = "course_start"
    test_share: float = 0.3
    cutoff: str | None = None
    validation_share: float = 0.2


class ModelConfig(Section):
    seed: int = 42
    num_boost_round: int = 2000
    early_stopping_rounds: int = 100
    params: dict[str, Any] = Field(default_factory=dict)
    calibration_methods: tuple[Literal["isotonic", "sigmoid"], ...] = ("isotonic", "sigmoid")


class EvaluationConfig(Section):
    top_share: float = 0.10
    promote_metric: str = "pr_auc"


class RegistryConfig(Section):
    model_name: str = "notalone-dropout"
    experiment: str = "notalone"


class ScoringConfig(Section):
    capacity: int = 15
    cooldown_days: int = 14
    risk_jump: float = 0.15
    language: Literal["en", "ru"] = "en"
    reasons_per_student: int = 3
    rules: dict[str, Any] = Field(default_factory=dict)


class DriftConfig(Section):
    psi_threshold: float = 0.2
    top_features: int = 10
    bins: int = 10


class ScheduleConfig(Section):
    cron: str = "0 6 * * 1"
    timezone: str = "Europe/London"
    retrain_after_days: int = 28


class DemoConfig(Section):
    students: int = 5000
    seed: int = 7


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


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
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
