"""A suggested first message per student: warm, human, chosen by action and lead reason.

The message files hold several variants per action (and per reason group within an action);
each student gets one variant, picked by a hash of (student, course, week) - the same inputs give
the same message, and a student contacted week after week does not read the same words. The
course title is filled in; `{first_name}` stays a placeholder for the curator's mail tool (the
source holds no names).
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from interventions.texts import Texts, render_column


def variant_index(keys: pd.Series, counts: np.ndarray) -> np.ndarray:
    """A stable choice in [0, counts) per row, from the CRC32 of the row's key string."""
    codes = np.fromiter(
        (zlib.crc32(k.encode("utf-8")) for k in keys.astype("str").to_numpy(dtype=object)),
        dtype=np.int64,
        count=len(keys),
    )
    return codes % np.maximum(np.asarray(counts, dtype=np.int64), 1)


def choose_messages(
    student_id: pd.Series,
    course_id: pd.Series,
    week: str,
    action: pd.Series,
    lead_group: pd.Series,
    course_title: pd.Series,
    texts: Texts,
) -> pd.DataFrame:
    """Columns `message` and `message_variant` ("<action>/<group or default>/<i>") per row;
    missing where `action` is missing. All inputs share one index."""
    index = action.index
    n = len(action)
    actions = action.to_numpy(dtype=object, na_value=None)
    groups = lead_group.reindex(index).to_numpy(dtype=object, na_value=None)
    keys = student_id.astype("str") + "|" + course_id.astype("str") + "|" + week
    message = np.full(n, None, dtype=object)
    variant = np.full(n, None, dtype=object)
    has_action = pd.notna(actions)
    # Resolve which variant list each row uses: (action, group) when the file has it, else the
    # action's default list.
    list_key = np.full(n, None, dtype=object)
    for act in pd.unique(actions[has_action]):
        rows = actions == act
        per_action = texts.messages[act]
        specific = np.isin(groups, list(per_action)) & rows & pd.notna(groups)
        list_key[rows] = "default"
        list_key[specific] = groups[specific]
    pick = np.zeros(n, dtype=np.int64)
    counts = np.ones(n, dtype=np.int64)
    used = sorted(set(zip(actions[has_action], list_key[has_action], strict=True)))
    for act, key in used:
        counts[(actions == act) & (list_key == key)] = len(texts.messages[act][key])
    if has_action.any():
        pick[has_action] = variant_index(keys[has_action], counts[has_action])
    titles = course_title.reindex(index).to_numpy(dtype=object, na_value=None)
    for act, key in used:
        variants = texts.messages[act][key]
        for i, template in enumerate(variants):
            rows = np.flatnonzero((actions == act) & (list_key == key) & (pick == i))
            if len(rows) == 0:
                continue
            message[rows] = render_column(template, {"course": titles[rows]}, len(rows), texts)
            variant[rows] = f"{act}/{key}/{i + 1}"
    return pd.DataFrame(
        {
            "message": pd.Series(message, index=index, dtype="str"),
            "message_variant": pd.Series(variant, index=index, dtype="str"),
        },
        index=index,
    )


def first_name(display_name: str | None) -> str | None:
    """The first word of a display name (None when there is none)."""
    parts = (display_name or "").split()
    return parts[0] if parts else None


def fill_message(message: str, display_name: str | None) -> str:
    """The suggested message with the student's first name when a display name is known; the
    `{first_name}` placeholder stays for the curator's mail tool otherwise."""
    name = first_name(display_name)
    return message.replace("{first_name}", name) if name else message


def with_first_names(lists: pd.DataFrame, names: pd.DataFrame | None) -> pd.DataFrame:
    """Curator lists (`student`, `message` columns) with first names filled in from
    `names` (student_id, display_name): for curator-facing files only, never MLflow."""
    if names is None or lists.empty:
        return lists
    by_student = dict(zip(names["student_id"], names["display_name"], strict=True))
    out = lists.copy()
    out["message"] = [
        fill_message(m, by_student.get(s))
        for s, m in zip(out["student"], out["message"], strict=True)
    ]
    return out
