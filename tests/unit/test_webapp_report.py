"""The week's report rendered from the Jinja2 template shows what the string-built one shows."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from interventions.report import ReportContext, build_report
from pipelines.texts import load_texts
from webapp.report import build_report_from_template


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.texts, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(sorted((k, v) for k, v in attrs if k != "src"))))

    def handle_data(self, data):
        if data.strip():
            self.texts.append(" ".join(data.split()))


def parsed(page: str) -> Collect:
    collector = Collect()
    collector.feed(page)
    return collector


def ranking() -> pd.DataFrame:
    n = 7
    listed = np.array([True, True, False, True, False, True, False])
    return pd.DataFrame(
        {
            "student_id": [f"s{i}" for i in range(n)],
            "course_id": ["PY101-A"] * n,
            "curator_id": ["cur-a", "cur-a", "cur-a", "cur-b", "cur-b", "cur-<c>", "cur-d"],
            "risk": np.linspace(0.9, 0.1, n),
            "change": [0.1, np.nan, 0.0, -0.05, 0.2, np.nan, 0.0],
            "listed": listed,
            "rank": pd.array([1, 2, None, 1, None, 1, None], dtype="Int64"),
            "triggered": [True, False, False, False, True, False, False],
            "trigger_stopped_submitting": [True, False, False, False, True, False, False],
            "hold_back": pd.array([None, None, "cooldown", None, "capacity", None, "capacity"]),
            "tier": [
                "curator",
                "mentor",
                "curator",
                "technical_support",
                "curator",
                "curator",
                "curator",
            ],
            "action": [
                "write_first",
                "offer_consultation",
                "write_first",
                "fix_technical_problem",
                "write_first",
                "plan_deadlines",
                "write_first",
            ],
            "reasons": [
                "no submissions for 20 days & more",
                "asked <3> questions",
                None,
                "support tickets",
                None,
                "deadlines missed",
                None,
            ],
            "reason_groups": [
                "submissions",
                "questions",
                None,
                "technical",
                None,
                "deadlines",
                None,
            ],
        }
    )


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("with_history", [False, True])
def test_template_report_matches_the_string_report(language, with_history):
    texts = load_texts(language)
    trend = pd.DataFrame(
        {
            "week": ["2026-05-04"],
            "active": [6],
            "listed": [3],
            "mean_risk": [0.4],
            "high_share": [0.5],
        }
    )
    drift = pd.DataFrame(
        {
            "name": ["events_7d", "score"],
            "kind": ["feature", "score"],
            "psi": [0.31, 0.05],
            "limit": [0.2, 0.2],
            "drifted": [True, False],
        }
    )
    ctx = ReportContext(
        as_of="2026-05-11",
        model="models:/notalone@champion",
        source="/data/<school>",
        high_risk=0.3,
        previous_risk=np.linspace(0.8, 0.2, 5) if with_history else None,
        trend=trend if with_history else None,
        warnings=("a warning",) if with_history else (),
        drift=drift if with_history else None,
        drift_threshold=0.2,
    )
    old = parsed(build_report(ranking(), ctx, texts))
    new = parsed(build_report_from_template(ranking(), ctx, texts))
    assert new.texts == old.texts
    assert new.tags == old.tags
    assert "cur-&lt;c&gt;" in build_report_from_template(ranking(), ctx, texts)
