"""Message files and the template language: plurals, rendering, complete and matching en/ru."""

from __future__ import annotations

import re

import numpy as np
import pytest

from configs import load_config
from features.catalog import feature_names
from interventions.routing import tiers_and_actions
from interventions.texts import (
    TextsError,
    check_texts_cover,
    parse_texts,
    plural_form,
    render_column,
    render_entry,
    render_one,
)
from pipelines.texts import ScoringError, load_texts

LANGUAGES = ("en", "ru")
LEFTOVER = re.compile(r"\{(?!first_name\})[^{}]*\}")


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture(scope="module", params=LANGUAGES)
def texts(request, config):
    return load_texts(request.param, config)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "дней"),
        (1, "день"),
        (2, "дня"),
        (4, "дня"),
        (5, "дней"),
        (11, "дней"),
        (12, "дней"),
        (21, "день"),
        (22, "дня"),
        (111, "дней"),
        (1.5, "дня"),
    ],
)
def test_russian_plural_forms(n, expected):
    assert plural_form(n, ("день", "дня", "дней")) == expected


@pytest.mark.parametrize(("n", "expected"), [(0, "days"), (1, "day"), (2, "days"), (1.5, "days")])
def test_english_plural_forms(n, expected):
    assert plural_form(n, ("day", "days")) == expected


def test_render_column_fills_numbers_forms_and_keeps_unknown_placeholders():
    texts = load_texts("en")
    out = render_column(
        "Hi {first_name}: {value} {value|day|days}, {share:pct} %, {delta:abspct} %",
        {
            "value": np.array([1.0, 12.4, np.nan]),
            "share": np.array([0.25, 0.5, 0.5]),
            "delta": np.array([-0.7, 0.1, 0.1]),
        },
        3,
        texts,
    )
    assert out[0] == "Hi {first_name}: 1 day, 25 %, 70 %"
    assert out[1] == "Hi {first_name}: 12 days, 50 %, 10 %"
    assert out[2].startswith("Hi {first_name}: n/a ")


def test_render_one_uses_the_languages_decimal_separator():
    texts = load_texts("ru")
    assert render_one("{x:1f} {x|балл|балла|баллов}", {"x": 2.25}, texts) == "2,2 балла"


def test_render_column_renders_each_distinct_value_once_but_maps_all_rows():
    texts = load_texts("en")
    values = np.array([3.0, 5.0, 3.0, 5.0, 3.0])
    out = render_column("{v} left", {"v": values}, 5, texts)
    assert list(out) == ["3 left", "5 left", "3 left", "5 left", "3 left"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-0.7, "activity down 70 % on the week before"),
        (0.5, "activity up 50 % on the week before"),
        (np.nan, "no activity in the week before to compare with"),
    ],
)
def test_signed_and_missing_variants(value, expected):
    texts = load_texts("en")
    entry, _ = texts.reason_entry("events_change_7d")
    assert render_entry(entry, np.array([value]), {}, texts)[0] == expected


def _keys(node, prefix=""):
    """Every key path of a nested mapping (list items are not keys)."""
    if not isinstance(node, dict):
        return set()
    out = set()
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.add(path)
        out |= _keys(value, path)
    return out


def test_en_and_ru_message_files_have_the_same_keys():
    import yaml

    from configs.schema import MESSAGES_DIR

    en = yaml.safe_load((MESSAGES_DIR / "en.yaml").read_text(encoding="utf-8"))
    ru = yaml.safe_load((MESSAGES_DIR / "ru.yaml").read_text(encoding="utf-8"))
    assert _keys(en) - _keys(ru) == set(), "keys in en.yaml missing from ru.yaml"
    assert _keys(ru) - _keys(en) == set(), "keys in ru.yaml missing from en.yaml"


@pytest.mark.parametrize("value", [np.nan, 0.0, -3.0, 1.0, 2.0, 14.0, 0.35])
def test_every_feature_has_its_own_template_that_renders_fully(texts, config, value):
    features = feature_names(config.features)
    frame_fields = {f: np.array([3.0]) for f in features}
    for feature in features:
        assert texts.has_reason(feature), f"{texts.language}: no reason template for {feature}"
        entry, window = texts.reason_entry(feature)
        fields = {
            **frame_fields,
            "window": np.array([float(window or 0)]),
            "typical": np.array([4.0]),
            "name": feature,
        }
        text = render_entry(entry, np.array([value]), fields, texts)[0]
        assert text.strip(), f"{texts.language}: empty reason for {feature}={value}"
        assert not LEFTOVER.search(text), f"{texts.language}: unfilled placeholder in {text!r}"


def test_config_tiers_actions_and_triggers_have_wording(texts, config):
    tiers, actions = tiers_and_actions(config.scoring)
    assert tiers <= set(texts.tiers)
    assert actions <= set(texts.actions) and actions <= set(texts.messages)
    for trigger in config.scoring.triggers:
        entry = texts.triggers[trigger.name]
        for value in (np.nan, 20.0, 1.0):
            _, window = texts.reason_entry(trigger.feature)
            fields = {"window": float(window or 0), "deadlines_due_28d": np.array([3.0])}
            text = render_entry(entry, np.array([value]), fields, texts)
            assert text[0].strip() and not LEFTOVER.search(text[0])
    assert set(config.scoring.reason_groups) <= set(texts.reason_groups)


def test_messages_have_several_variants_name_and_course_placeholders(texts):
    for action, per_group in texts.messages.items():
        assert len(per_group["default"]) >= 3, f"{texts.language}: {action} needs 3+ variants"
        for group, variants in per_group.items():
            assert len(set(variants)) == len(variants), f"duplicate variant in {action}.{group}"
            for message in variants:
                assert "{first_name}" in message and "{course}" in message, message


PRESSURE = {
    "en": ("must", "failed", "lazy", "immediately", "urgent", "disappoint", "why haven't"),
    "ru": ("обязан", "немедленно", "срочно", "должны", "разочар", "почему вы не"),
}


def test_messages_avoid_pressure_and_guilt(texts):
    for per_group in texts.messages.values():
        for variants in per_group.values():
            for message in variants:
                low = message.lower()
                assert not any(word in low for word in PRESSURE[texts.language]), message
                assert "!!" not in message


def test_missing_wording_is_reported_by_name():
    texts = load_texts("en")
    with pytest.raises(TextsError, match="actions.call_parents"):
        check_texts_cover(texts, {"curator"}, {"call_parents"}, set())


def test_malformed_message_file_is_a_clear_error():
    with pytest.raises(TextsError, match="messages.write_first"):
        parse_texts(
            {
                "reasons": {"_other": "x"},
                "triggers": {},
                "tiers": {},
                "actions": {},
                "messages": {"write_first": {"inactivity": ["hi"]}},
                "report": {},
            },
            "xx",
        )
    with pytest.raises(ScoringError, match="not found"):
        load_texts("xx")


@pytest.mark.parametrize("language", ["en", "ru"])
def test_every_effect_verdict_and_outcome_has_its_words_in_every_language(language):
    """The hold-out's verdicts are shown on the report and the lead's page in its language."""
    from interventions.effect import DROPOUT, ENROLLED_AT_END, VERDICT_KEYS
    from pipelines.texts import load_texts

    effect = load_texts(language).effect
    assert set(VERDICT_KEYS.values()) <= set(effect["verdicts"])
    assert all(effect["verdicts"][k].strip() for k in VERDICT_KEYS.values())
    assert {DROPOUT, ENROLLED_AT_END} <= set(effect["outcomes"])
    for key in ("title", "arms", "plan", "plan_never", "col_verdict", "col_difference"):
        assert effect[key].strip(), key
    if language != "en":
        english = load_texts("en").effect["verdicts"]
        assert all(effect["verdicts"][k] != english[k] for k in VERDICT_KEYS.values())
