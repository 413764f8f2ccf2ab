"""Reasons in words, taken from the model's own per-row contributions (TreeSHAP, log-odds).

Related features mean one thing to a curator (`events_7d`, `events_14d` and `active_days_7d` all
say "low activity"), so features are grouped (`scoring.reason_groups`) and a group's weight is the
sum of its features' contributions - SHAP values add up, so this is the group's own contribution.
A student's reasons are the groups with the largest positive weight (at most
`reasons_per_student`), each shown through the template of its strongest feature with the
student's actual values. When no group pushes the risk up, the largest (least negative) ones are
shown and `reasons_fallback` says so.

Static attributes (`attr_*`, `scoring.skip_reason_prefixes`) are never reasons: a curator cannot
act on an age band or a region, and reading "because of your age band" would be unfair to the
student. Their contributions still count in the risk; they are only left out of the words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

import numpy as np
import pandas as pd

from interventions.texts import Texts, render_entry, template_fields

BIAS_COLUMN = "bias"


def reason_columns(k: int) -> list[str]:
    cols = []
    for i in range(1, k + 1):
        cols += [f"reason_{i}_group", f"reason_{i}_feature", f"reason_{i}_contribution"]
    return cols


def group_features(
    feature_names: Sequence[str],
    reason_groups: Mapping[str, Sequence[str]],
    skip_prefixes: Sequence[str] = (),
) -> dict[str, list[str]]:
    """Reason group -> its features (in model order). A feature goes to the first group with a
    matching glob; a feature in no group is a group of its own; skipped prefixes are dropped."""
    groups: dict[str, list[str]] = {name: [] for name in reason_groups}
    for feature in feature_names:
        if feature == BIAS_COLUMN or any(feature.startswith(p) for p in skip_prefixes):
            continue
        for name, patterns in reason_groups.items():
            if any(fnmatchcase(feature, pattern) for pattern in patterns):
                groups[name].append(feature)
                break
        else:
            groups[feature] = [feature]
    return {name: members for name, members in groups.items() if members}


def group_contributions(
    contributions: pd.DataFrame, groups: Mapping[str, Sequence[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """(weights, strongest): an n x G matrix of summed contributions per group and an n x G
    matrix of the index (into the contribution columns) of each group's strongest feature."""
    columns = list(contributions.columns)
    position = {c: i for i, c in enumerate(columns)}
    values = contributions.to_numpy(dtype="float64", copy=False)
    n = len(values)
    weights = np.empty((n, len(groups)), dtype="float64")
    strongest = np.empty((n, len(groups)), dtype=np.int64)
    for g, members in enumerate(groups.values()):
        idx = np.fromiter((position[m] for m in members), dtype=np.int64, count=len(members))
        block = values[:, idx]
        weights[:, g] = block.sum(axis=1)
        strongest[:, g] = idx[np.argmax(block, axis=1)] if n else idx[:0]
    return weights, strongest


def pick_reasons(
    contributions: pd.DataFrame,
    groups: Mapping[str, Sequence[str]],
    k: int,
    min_contribution: float = 0.0,
) -> pd.DataFrame:
    """The top-k reason groups per row, by summed contribution; only groups above
    `min_contribution`, unless none is (then the top-k anyway, `reasons_fallback` = True).

    Columns: reason_{i}_group, reason_{i}_feature (the group's strongest feature),
    reason_{i}_contribution (the group's sum) for i = 1..k (missing when fewer), reasons_fallback,
    reasons_count. Index aligned with `contributions`. Ties keep the configured group order.
    """
    names = np.asarray(list(groups), dtype=object)
    features = np.asarray(list(contributions.columns), dtype=object)
    weights, strongest = group_contributions(contributions, groups)
    n, n_groups = weights.shape
    k_eff = min(k, n_groups)
    order = np.argsort(-weights, axis=1, kind="stable")[:, :k_eff]
    top = np.take_along_axis(weights, order, axis=1)
    positive = top > min_contribution
    fallback = ~positive[:, 0] if k_eff else np.ones(n, dtype=bool)
    keep = positive | fallback[:, None]
    out: dict[str, object] = {}
    for i in range(k):
        if i < k_eff:
            kept = keep[:, i]
            group = np.where(kept, names[order[:, i]], None)
            feat = np.where(
                kept, features[np.take_along_axis(strongest, order[:, i : i + 1], 1)[:, 0]], None
            )
            contrib = np.where(kept, top[:, i], np.nan)
        else:
            group = np.full(n, None, dtype=object)
            feat = np.full(n, None, dtype=object)
            contrib = np.full(n, np.nan)
        out[f"reason_{i + 1}_group"] = pd.Series(group, index=contributions.index, dtype="str")
        out[f"reason_{i + 1}_feature"] = pd.Series(feat, index=contributions.index, dtype="str")
        out[f"reason_{i + 1}_contribution"] = pd.Series(contrib, index=contributions.index)
    out["reasons_fallback"] = pd.Series(fallback, index=contributions.index)
    out["reasons_count"] = pd.Series(keep[:, :k_eff].sum(axis=1), index=contributions.index)
    return pd.DataFrame(out, index=contributions.index)


def typical_values(
    frame: pd.DataFrame, features: Sequence[str], by: str = "course_id"
) -> pd.DataFrame:
    """Median of each feature within each course run at T (`{typical}` in templates): a
    curator reads "12 actions in a week" next to what is usual in that course."""
    cols = [f for f in dict.fromkeys(features) if f in frame.columns]
    if not cols:
        return pd.DataFrame(index=pd.Index([], name=by))
    return frame.groupby(by, sort=True, observed=True)[cols].median()


def render_reason_column(
    features: pd.Series,
    frame: pd.DataFrame,
    texts: Texts,
    typical: pd.DataFrame | None = None,
    by: str = "course_id",
) -> pd.Series:
    """Text of one reason slot: each row's feature (name in `features`, missing = no reason)
    rendered with that row's values in `frame` (same index)."""
    out = np.full(len(features), None, dtype=object)
    names = features.to_numpy(dtype=object, na_value=None)
    for feature in pd.unique(names[pd.notna(names)]):
        rows = np.flatnonzero(names == feature)
        entry, window = texts.reason_entry(feature)
        out[rows] = render_entry(
            entry,
            frame[feature].to_numpy(dtype="float64", na_value=np.nan)[rows],
            entry_fields(entry, feature, window, frame, rows, typical, by),
            texts,
        )
    return pd.Series(out, index=features.index, dtype="str")


def entry_fields(
    entry: Mapping[str, str],
    feature: str,
    window: int | None,
    frame: pd.DataFrame,
    rows: np.ndarray,
    typical: pd.DataFrame | None,
    by: str = "course_id",
) -> dict[str, object]:
    """Values for the placeholders an entry uses, for the given rows of `frame`."""
    wanted = set().union(*(template_fields(t) for t in entry.values()))
    fields: dict[str, object] = {"window": float(window) if window is not None else np.nan}
    fields["name"] = feature
    for name in wanted:
        if name in ("value", "window", "name"):
            continue
        if name == "typical":
            if typical is not None and feature in typical.columns:
                medians = typical[feature]
                keys = frame[by].to_numpy(dtype=object)[rows]
                fields["typical"] = pd.Series(keys).map(medians).to_numpy(dtype="float64")
            else:
                fields["typical"] = np.full(len(rows), np.nan)
        elif name in frame.columns and frame[name].dtype.kind in "biuf":
            fields[name] = frame[name].to_numpy(dtype="float64", na_value=np.nan)[rows]
    return fields


def render_reasons(
    picks: pd.DataFrame,
    frame: pd.DataFrame,
    texts: Texts,
    k: int,
    typical: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """reason_{i}_text for i = 1..k, for the rows of `picks` (values from `frame`, same index)."""
    return pd.DataFrame(
        {
            f"reason_{i}_text": render_reason_column(
                picks[f"reason_{i}_feature"], frame, texts, typical
            )
            for i in range(1, k + 1)
        },
        index=picks.index,
    )


REASON_SEPARATOR = "; "


def combine_reasons(
    model: pd.DataFrame,
    triggers: Sequence[tuple[pd.Series, str | None]],
    k: int,
) -> pd.DataFrame:
    """A student's final reasons: the reasons of the rule triggers that fired (in trigger order)
    first, then the model's reasons, minus any model reason whose group a fired trigger stands
    for; at most `k`.

    `model` has reason_{i}_text and reason_{i}_group (i = 1..k); each trigger is (its reason text,
    missing where it did not fire; the reason group it stands for). Returns `reasons` (joined),
    `reasons_count` and `lead_group` (group of the first reason: picks the first message).
    """
    n = len(model)
    texts_cols, groups_cols = [], []
    fired_groups = []
    for text, group in triggers:
        text_arr = text.reindex(model.index).to_numpy(dtype=object, na_value=None)
        texts_cols.append(text_arr)
        groups_cols.append(np.where(pd.notna(text_arr), group, None))
        fired_groups.append((pd.notna(text_arr), group))
    for i in range(1, k + 1):
        if f"reason_{i}_text" not in model.columns:
            continue
        text_arr = model[f"reason_{i}_text"].to_numpy(dtype=object, na_value=None)
        group_arr = model[f"reason_{i}_group"].to_numpy(dtype=object, na_value=None)
        replaced = np.zeros(n, dtype=bool)
        for fired, group in fired_groups:
            if group is not None:
                replaced |= fired & (group_arr == group)
        text_arr = np.where(replaced, None, text_arr)
        texts_cols.append(text_arr)
        groups_cols.append(np.where(replaced, None, group_arr))
    if not texts_cols:
        empty = pd.Series([None] * n, index=model.index, dtype="str")
        return pd.DataFrame(
            {"reasons": empty, "reasons_count": 0, "reason_groups": empty, "lead_group": empty},
            index=model.index,
        )
    texts_m = np.column_stack(texts_cols)
    groups_m = np.column_stack(groups_cols)
    absent = pd.isna(texts_m) | (texts_m == "")
    order = np.argsort(absent, axis=1, kind="stable")[:, :k]
    texts_m = np.take_along_axis(texts_m, order, axis=1)
    groups_m = np.take_along_axis(groups_m, order, axis=1)
    present = ~np.take_along_axis(absent, order, axis=1)
    joined = [
        REASON_SEPARATOR.join(t for t, p in zip(row, ok, strict=True) if p) or None
        for row, ok in zip(texts_m, present, strict=True)
    ]
    joined_groups = [
        ",".join(g for g, p in zip(row, ok, strict=True) if p and g) or None
        for row, ok in zip(groups_m, present, strict=True)
    ]
    return pd.DataFrame(
        {
            "reasons": pd.Series(joined, index=model.index, dtype="str"),
            "reasons_count": present.sum(axis=1),
            "reason_groups": pd.Series(joined_groups, index=model.index, dtype="str"),
            "lead_group": pd.Series(
                np.where(present[:, 0], groups_m[:, 0], None), index=model.index, dtype="str"
            ),
        },
        index=model.index,
    )
