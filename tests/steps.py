"""Running the pipelines' step sequences directly in tests, as the commands do (plain runner)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from configs.schema import Config
from pipelines.runner import Steps
from pipelines.schedule import parse_as_of
from pipelines.score_steps import score_steps
from pipelines.settings import Workspace


def score_week(
    source: str | Path, as_of: str | datetime, *, config: Config, **options: Any
) -> dict[str, Any]:
    """`score_steps` in this test's workspace; returns what `notalone score` returns."""
    return score_steps(
        source=source,
        as_of=parse_as_of(as_of),
        config=config,
        workspace=Workspace.resolve().activate(),
        steps=Steps(),
        **options,
    ).result


def train_source(source: str | Path, config: Config) -> dict[str, Any]:
    """`train_steps` in this test's workspace; returns what `notalone train --json` prints."""
    from pipelines.train_steps import train_steps

    return train_steps(
        source=source, config=config, workspace=Workspace.resolve().activate(), steps=Steps()
    )
