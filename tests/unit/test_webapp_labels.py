"""Page labels and small helpers of the workspace app."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs import load_config
from configs.schema import ConfigError
from interventions.messages import fill_message
from webapp.app import card_anchor, load_labels
from webapp.db.engine import database_url


def keys(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out.add(prefix + key)
        if isinstance(value, dict):
            out |= keys(value, prefix + key + ".")
    return out


def test_en_and_ru_labels_have_the_same_keys():
    labels = load_labels()
    assert {"en", "ru"} <= set(labels)
    assert keys(labels["en"]) == keys(labels["ru"])


def test_labels_name_every_configured_word():
    wa = load_config().workspace_app
    for lang, labels in load_labels().items():
        for kind, words in (
            ("channels", wa.channels),
            ("outcomes", wa.outcomes),
            ("verdicts", wa.verdicts),
        ):
            assert set(words) <= set(labels[kind]), (lang, kind)
        assert lang in wa.feedback_question


@pytest.mark.parametrize(
    ("message", "name", "expected"),
    [
        ("Hi {first_name}!", "Anna Petrova", "Hi Anna!"),
        ("Hi {first_name}!", None, "Hi {first_name}!"),
        ("Hi {first_name}!", "  ", "Hi {first_name}!"),
    ],
)
def test_fill_message(message, name, expected):
    assert fill_message(message, name) == expected


def test_card_anchor_is_a_safe_html_id():
    assert card_anchor('s 1"<x>', "PY101") == "card-s_1__x_-PY101"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h:5/db", "postgresql+psycopg://u@h:5/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////x/y.db", "sqlite:////x/y.db"),
    ],
)
def test_database_url(url, expected, monkeypatch):
    monkeypatch.delenv("NOTALONE_DB_URL", raising=False)
    assert database_url(url, Path("/home")) == expected


def test_database_url_defaults_to_the_workspace(monkeypatch):
    monkeypatch.delenv("NOTALONE_DB_URL", raising=False)
    assert database_url(None, Path("/w")) == "sqlite:////w/workspace.db"


def test_wrong_verdict_must_be_a_verdict():
    with pytest.raises(ConfigError, match="wrong_verdict"):
        load_config(overrides={"workspace_app": {"wrong_verdict": "nope"}})
