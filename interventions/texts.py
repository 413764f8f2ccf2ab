"""Message files (configs/messages/<language>.yaml) and the small template language they use.

A template is plain text with placeholders:

- `{name}`: a field's value; numbers are rounded to whole numbers, missing ones shown as the
  file's `missing_value`;
- `{name:fmt}`: a number formatted as `int`, `abs` (absolute value), `pct` (x 100), `abspct`
  (absolute value x 100) or `1f` (one decimal);
- `{name|form|form}` (English: one, other) or `{name|form|form|form}` (Russian: one, few, many):
  the word form agreeing with the number the field shows (`{days:abs|day|days}`).

Placeholders naming no field (e.g. `{first_name}` in first messages) are left as they are, for
the curator's mail tool to fill. Rendering is vectorised: each distinct combination of the
displayed values is rendered once, so a million rows cost as much as their distinct values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z0-9]+))?((?:\|[^{}|]*)+)?\}")
NUMBER_FORMATS = ("int", "abs", "pct", "abspct", "1f")
# Which template of a reason entry a value uses (first present wins, `text` always exists).
VARIANT_MISSING, VARIANT_ZERO, VARIANT_NEGATIVE, VARIANT_POSITIVE, VARIANT_TEXT = (
    "missing",
    "zero",
    "negative",
    "positive",
    "text",
)
ENTRY_KEYS = (VARIANT_TEXT, VARIANT_MISSING, VARIANT_ZERO, VARIANT_NEGATIVE, VARIANT_POSITIVE)
WINDOW_PART = re.compile(r"_(\d+)d(?=_|$)")  # events_7d, events_28d_pct_in_run
GENERIC_REASON = "_other"  # template for a feature the message file does not know
DEFAULT_VARIANTS = "default"  # message variants used when no reason-specific list exists


class TextsError(ValueError):
    """A message file is incomplete or malformed."""


@dataclass(frozen=True)
class Placeholder:
    token: str
    name: str
    fmt: str | None
    forms: tuple[str, ...]


def placeholders(template: str) -> list[Placeholder]:
    found = []
    for m in PLACEHOLDER.finditer(template):
        forms = tuple(m.group(3)[1:].split("|")) if m.group(3) else ()
        found.append(Placeholder(m.group(0), m.group(1), m.group(2), forms))
    return found


def template_fields(template: str) -> set[str]:
    return {p.name for p in placeholders(template)}


def plural_form(number: float, forms: tuple[str, ...]) -> str:
    """English (2 forms: one, other) or Russian (3 forms: one, few, many) agreement."""
    if len(forms) == 1:
        return forms[0]
    n_abs = abs(number)
    whole = float(n_abs).is_integer()
    if len(forms) == 2:
        return forms[0] if whole and n_abs == 1 else forms[1]
    if not whole:  # "1,5 дня": a fraction takes the genitive singular
        return forms[1]
    n = int(n_abs)
    if n % 10 == 1 and n % 100 != 11:
        return forms[0]
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return forms[1]
    return forms[2]


def display_numbers(values: np.ndarray, fmt: str | None) -> np.ndarray:
    """The number a placeholder shows (rounded as displayed), NaN where missing."""
    x = np.asarray(values, dtype="float64")
    if fmt in ("abs", "abspct"):
        x = np.abs(x)
    if fmt in ("pct", "abspct"):
        x = x * 100.0
    x = np.round(x, 1) if fmt == "1f" else np.round(x)
    return x + 0.0  # no "-0"


@dataclass(frozen=True)
class Texts:
    """One language's message file: reason and trigger templates, tier and action labels, first
    message variants per action (and per reason group), report wording."""

    language: str
    decimal_separator: str
    missing_value: str
    reasons: dict[str, dict[str, str]]
    triggers: dict[str, dict[str, str]]
    tiers: dict[str, str]
    actions: dict[str, str]
    messages: dict[str, dict[str, tuple[str, ...]]]
    report: dict[str, str]
    reason_groups: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # The hold-out's effect wording: labels, `outcomes`, `verdicts` (by VERDICT_KEYS), `plan`.
    effect: dict[str, Any] = field(default_factory=dict)

    def number(self, value: float, fmt: str | None) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self.missing_value
        text = f"{value:.1f}" if fmt == "1f" else f"{int(value)}"
        return text.replace(".", self.decimal_separator)

    def reason_entry(self, feature: str) -> tuple[dict[str, str], int | None]:
        """The template entry for a feature: its own key, else its windowed stem `<stem>_Nd`
        (with the window in days), else the generic one."""
        m = WINDOW_PART.search(feature)
        window = int(m.group(1)) if m else None
        if feature in self.reasons:
            return self.reasons[feature], window
        if m:
            stem = feature[: m.start()] + "_Nd" + feature[m.end() :]
            if stem in self.reasons:
                return self.reasons[stem], window
        return self.reasons[GENERIC_REASON], window

    def has_reason(self, feature: str) -> bool:
        entry, _ = self.reason_entry(feature)
        return entry is not self.reasons[GENERIC_REASON]

    def message_variants(self, action: str, group: str | None) -> tuple[str, ...]:
        per_action = self.messages[action]
        if group is not None and group in per_action:
            return per_action[group]
        return per_action[DEFAULT_VARIANTS]


def _entry(raw: Any, where: str) -> dict[str, str]:
    if isinstance(raw, str):
        return {VARIANT_TEXT: raw}
    if not isinstance(raw, dict) or VARIANT_TEXT not in raw:
        raise TextsError(f"{where}: needs a `text` template (or be a string)")
    unknown = set(raw) - set(ENTRY_KEYS)
    if unknown:
        raise TextsError(f"{where}: unknown keys {sorted(unknown)}; allowed: {list(ENTRY_KEYS)}")
    return {k: str(v) for k, v in raw.items()}


def parse_texts(data: Mapping[str, Any], language: str) -> Texts:
    """Check and normalise one parsed message file."""
    required = ("reasons", "triggers", "tiers", "actions", "messages", "report")
    missing = [k for k in required if k not in data]
    if missing:
        raise TextsError(f"message file for {language!r} lacks sections: {', '.join(missing)}")
    reasons = {k: _entry(v, f"reasons.{k}") for k, v in data["reasons"].items()}
    if GENERIC_REASON not in reasons:
        raise TextsError(f"message file for {language!r}: reasons.{GENERIC_REASON} is required")
    triggers = {k: _entry(v, f"triggers.{k}") for k, v in data["triggers"].items()}
    messages: dict[str, dict[str, tuple[str, ...]]] = {}
    for action, per_group in data["messages"].items():
        if not isinstance(per_group, dict) or DEFAULT_VARIANTS not in per_group:
            raise TextsError(f"messages.{action}: needs a `{DEFAULT_VARIANTS}` list of variants")
        messages[action] = {}
        for group, variants in per_group.items():
            if isinstance(variants, str):
                variants = [variants]
            if not variants or not all(isinstance(v, str) and v.strip() for v in variants):
                raise TextsError(f"messages.{action}.{group}: needs non-empty text variants")
            messages[action][group] = tuple(str(v).strip() for v in variants)
    return Texts(
        language=language,
        decimal_separator=str(data.get("decimal_separator", ".")),
        missing_value=str(data.get("missing_value", "-")),
        reasons=reasons,
        triggers=triggers,
        tiers={k: str(v) for k, v in data["tiers"].items()},
        actions={k: str(v) for k, v in data["actions"].items()},
        messages=messages,
        report={k: str(v) for k, v in data["report"].items()},
        reason_groups={k: str(v) for k, v in data.get("reason_groups", {}).items()},
        effect=dict(data.get("effect") or {}),
    )


def check_texts_cover(texts: Texts, tiers: set[str], actions: set[str], triggers: set[str]) -> None:
    """Every tier, action and trigger the config can produce has its wording; raises otherwise."""
    problems = []
    for name in sorted(tiers - set(texts.tiers)):
        problems.append(f"tiers.{name}")
    for name in sorted(actions - set(texts.actions)):
        problems.append(f"actions.{name}")
    for name in sorted(actions - set(texts.messages)):
        problems.append(f"messages.{name}")
    for name in sorted(triggers - set(texts.triggers)):
        problems.append(f"triggers.{name}")
    if problems:
        raise TextsError(
            f"message file for {texts.language!r} lacks entries the scoring config uses: "
            + ", ".join(problems)
        )


def render_one(template: str, values: Mapping[str, Any], texts: Texts) -> str:
    """Render a template for one row (`values`: field -> number or text)."""
    fields = {
        k: np.asarray([v], dtype=object if isinstance(v, str) else "float64")
        for k, v in values.items()
    }
    return str(render_column(template, fields, 1, texts)[0])


def render_column(template: str, fields: Mapping[str, Any], n: int, texts: Texts) -> np.ndarray:
    """Render `template` for `n` rows; `fields` maps a field to an array of n values (numbers or
    strings) or to one scalar. Each distinct combination of displayed values renders once."""
    used = [p for p in placeholders(template) if p.name in fields]
    if not used or n == 0:
        return np.full(n, template, dtype=object)
    keys: dict[str, Any] = {}
    for i, ph in enumerate(used):
        raw = fields[ph.name]
        if np.ndim(raw) == 0:
            raw = np.repeat(np.asarray([raw]), n)
        if isinstance(raw, pd.Series):
            raw = raw.to_numpy()
        arr = np.asarray(raw)
        if arr.dtype.kind in "biuf":
            keys[f"k{i}"] = display_numbers(arr, ph.fmt)
        else:
            keys[f"k{i}"] = pd.Series(arr, dtype="object").fillna(texts.missing_value).to_numpy()
    frame = pd.DataFrame(keys)
    codes = frame.groupby(list(keys), dropna=False, sort=False).ngroup().to_numpy()
    firsts = frame.drop_duplicates().itertuples(index=False, name=None)
    rendered = []
    for row in firsts:
        out = template
        for ph, value in zip(used, row, strict=True):
            if isinstance(value, str):
                shown = value
            elif ph.forms:
                shown = "" if math.isnan(value) else plural_form(value, ph.forms)
            else:
                shown = texts.number(value, ph.fmt)
            out = out.replace(ph.token, shown, 1)
        rendered.append(out)
    # drop_duplicates keeps first occurrences in row order, as ngroup(sort=False) numbers them.
    return np.asarray(rendered, dtype=object)[codes]


def entry_variant(entry: dict[str, str], values: np.ndarray) -> np.ndarray:
    """Which template of `entry` each value uses: missing / zero / negative / positive / text."""
    x = np.asarray(values, dtype="float64")
    choice = np.full(len(x), VARIANT_TEXT, dtype=object)
    for variant, mask in (
        (VARIANT_POSITIVE, x > 0),
        (VARIANT_NEGATIVE, x < 0),
        (VARIANT_ZERO, x == 0),
        (VARIANT_MISSING, np.isnan(x)),
    ):
        if variant in entry:
            choice[mask] = variant
    return choice


def render_entry(
    entry: dict[str, str],
    value: np.ndarray,
    fields: Mapping[str, Any],
    texts: Texts,
) -> np.ndarray:
    """Render a reason/trigger entry for rows whose shown value is `value`; `fields` gives the
    other placeholders (e.g. related features, `window`, `typical`)."""
    value = np.asarray(value, dtype="float64")
    n = len(value)
    out = np.empty(n, dtype=object)
    variants = entry_variant(entry, value)
    for variant in pd.unique(variants):
        rows = np.flatnonzero(variants == variant)
        sub = {
            k: (v if np.ndim(v) == 0 else np.asarray(v)[rows])
            for k, v in {**fields, "value": value}.items()
        }
        out[rows] = render_column(entry[variant], sub, len(rows), texts)
    return out
