"""`notalone simulate-term`: a term of weekly lists on the synthetic school with simulated
curators, and the hold-out's effect measure against the known truth.

    school       the synthetic school without any contact from our lists
    model        a model trained on it, on snapshots whose horizon ends before the term (or
                 `--model-uri`)
    week 1..W    the school regenerated with the contacts decided so far, scored with the real
                 score steps (hold-out, capacity, cooldown, report), and simulated curators
                 writing to `contact_rate` of the week's listed students (never to control ones)
    measure      the effect measure of `notalone effect` on the final school
    truth        the counterfactual: the same term with the listed arm not contacted from its
                 draw on (every other contact kept; same seed). The true intention-to-treat
                 effect is the listed arm's dropout within the horizon in the final school minus
                 in the counterfactual; the control arm's must be the same in both.

Why this is exact: the generator with outside contacts is causal (features/synthetic.py: every
random number is drawn up front or from its own course week's stream), so the school regenerated
with the contacts up to week w is the very school the earlier weeks saw, continued; and with the
same seed, the counterfactual differs from it only through the contacts. Contacts act like the
school's own curators' (reply probability, engagement lift, a row in `interventions` that the
cooldown sees).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from configs.schema import Config
from features.catalog import LABEL_COLUMN
from features.sources import atomic_dir, read_table
from features.synthetic import plan_school, write_school
from interventions.effect import DROPOUT, OVERALL, outcomes
from interventions.holdout import ARM_CONTROL, ARM_LISTED
from pipelines import mlflow_store, workspace_store
from pipelines.runner import Steps
from pipelines.score_steps import effect_result, horizon_days, score_steps
from pipelines.settings import Workspace
from pipelines.train_steps import features_step, fit_step, refit_step, split_step

SIMULATION_FILE = "simulation.json"
CONTACT_COLUMNS = ["student_id", "course_id", "ts"]
SCHOOL, COUNTERFACTUAL = "school", "counterfactual"
WeekCallback = Callable[[int, int, dict[str, Any]], None]  # (weeks done, weeks, that week)


def simulation_config(config: Config) -> Config:
    """The config the simulated term runs with: the planted effect in the generator, the
    simulation's control share, a draw seed of its own per school seed, nothing published into
    a curator workspace."""
    sim = config.simulation
    generator = type(config.generator).model_validate(
        {**config.generator.model_dump(), **sim.generator}
    )
    # The draw's seed moves with the school's: the synthetic schools reuse student, course and
    # curator ids and dates, so with one draw seed every school seed got the same hash per
    # student and the same block coins (62 % of the controls drawn in both seeds 21 and 22 among
    # the enrolments drawn in both, 30 % if independent): not independent replications.
    experiment = config.experiment.model_copy(update={"seed": config.experiment.seed + sim.seed})
    if sim.control_share is not None:
        experiment = experiment.model_copy(update={"control_share": sim.control_share})
    app = config.workspace_app.model_copy(update={"publish": False})
    return config.model_copy(
        update={"generator": generator, "experiment": experiment, "workspace_app": app}
    )


def term_weeks(data_end: datetime, weeks: int, horizon: int) -> list[datetime]:
    """The term's as-of times: weekly, the last one a whole horizon before the data end (every
    outcome of the term is then known)."""
    last = data_end - timedelta(weeks=math.ceil(horizon / 7))
    return [last - timedelta(weeks=weeks - 1 - k) for k in range(weeks)]


def simulation_workspace(root: Path) -> Workspace:
    """A workspace of its own (outputs, feature cache, a SQLite database for the arms)."""
    workspace = Workspace(root=root, db_url=f"sqlite:///{root / 'workspace.db'}")
    for folder in (workspace.outputs, workspace.cache, workspace.tmp):
        folder.mkdir(parents=True, exist_ok=True)
    return workspace


def write_world(folder: Path, config: Config, contacts: pd.DataFrame) -> Path:
    """The synthetic school with `contacts` from our lists (atomically replacing `folder`)."""
    sim = config.simulation
    with atomic_dir(folder) as tmp:
        write_school(tmp, sim.students, sim.seed, config.generator, extra_contacts=contacts)
    return folder


def train_before(
    source: Path, config: Config, workspace: Workspace, before: datetime, progress
) -> Any:
    """A LightGBM model fitted on the snapshots whose horizon ends by `before` (the term's
    first week): it never learns from the term it scores. Not registered anywhere."""
    frame = features_step(source, config, False, workspace, progress)
    ends = pd.to_datetime(frame["as_of"], utc=True) + pd.Timedelta(days=horizon_days(config))
    frame = frame[(ends <= pd.Timestamp(before)).to_numpy() & frame[LABEL_COLUMN].notna()]
    frame = frame.reset_index(drop=True)
    split = split_step(frame, config)
    fitted = fit_step(frame, split, config)
    return refit_step(frame, fitted, split, config).model


def curators_contact(ranking: pd.DataFrame, as_of: datetime, config: Config, week: int):
    """The simulated curators: each listed student (control students are on no list) is written
    to with probability `contact_rate`, `contact_delay_days` after the list."""
    sim = config.simulation
    listed = ranking[ranking["listed"].to_numpy(dtype=bool)]
    rng = np.random.default_rng([sim.curator_seed, week])
    reached = listed[rng.random(len(listed)) < sim.contact_rate]
    return pd.DataFrame(
        {
            "student_id": reached["student_id"].astype("str").to_numpy(),
            "course_id": reached["course_id"].astype("str").to_numpy(),
            "ts": pd.Timestamp(as_of) + pd.Timedelta(days=sim.contact_delay_days),
        }
    )


def without_listed_arm(contacts: pd.DataFrame, arms: pd.DataFrame) -> pd.DataFrame:
    """The contacts minus those made to the listed arm from its draw on (the counterfactual)."""
    keys = ["student_id", "course_id"]
    listed = arms.loc[arms["arm"] == ARM_LISTED, [*keys, "assigned_at"]].astype(
        {"student_id": "str", "course_id": "str"}
    )
    m = contacts.merge(listed, on=keys, how="left")
    drawn = pd.to_datetime(m["assigned_at"], utc=True)
    after = drawn.notna() & (pd.to_datetime(m["ts"], utc=True) >= drawn)
    return contacts[~after.to_numpy()].reset_index(drop=True)


def truth(
    arms: pd.DataFrame,
    with_lists: Path,
    without: Path,
    contacts: pd.DataFrame,
    as_of: datetime,
    config: Config,
) -> dict[str, Any]:
    """The true effect on the listed arm: its dropout within the horizon with the lists'
    contacts minus without its own (the same students, the same seed); and the control arm's
    difference, which must be 0 (its contacts are the same in both)."""
    horizon = horizon_days(config)
    courses = read_table(with_lists, "courses")
    worlds = {
        name: outcomes(arms, read_table(folder, "enrollments"), courses, contacts, as_of, horizon)
        for name, folder in (("with", with_lists), ("without", without))
    }
    out: dict[str, Any] = {}
    for arm in (ARM_LISTED, ARM_CONTROL):
        rates = {}
        for name, table in worlds.items():
            rows = table[(table["arm"] == arm).to_numpy() & table["dropout_matured"].to_numpy()]
            rates[name] = float(rows["dropout"].mean()) if len(rows) else None
        diff = None if None in rates.values() else rates["with"] - rates["without"]
        out[arm] = {"rate_with_lists": rates["with"], "rate_without": rates["without"]}
        out[arm]["effect"] = diff
    listed = worlds["with"][worlds["with"]["arm"] == ARM_LISTED]
    rate = float(listed["contacted"].mean()) if len(listed) else None
    effect = out[ARM_LISTED]["effect"]
    out["contact_rate"] = rate
    out["per_contacted"] = effect / rate if effect is not None and rate else None
    return out


def verdict_line(measured: dict[str, Any], true: dict[str, Any]) -> dict[str, Any]:
    """The overall dropout comparison beside the truth: is the truth inside the intervals?"""
    overall = next(
        c for c in measured["comparisons"] if c["outcome"] == DROPOUT and c["band"] == OVERALL
    )
    effect, per = true[ARM_LISTED]["effect"], true["per_contacted"]

    def inside(low, high, value):
        return None if None in (low, high, value) else bool(low <= value <= high)

    return {
        **overall,
        "true_effect": effect,
        "true_per_contacted": per,
        "truth_in_interval": inside(overall["low"], overall["high"], effect),
        "truth_in_per_contacted_interval": inside(
            overall["per_contacted_low"], overall["per_contacted_high"], per
        ),
    }


def simulate_term_steps(
    *,
    config: Config,
    root: Path,
    steps: Steps,
    model_uri: str | None = None,
    on_week: WeekCallback | None = None,
) -> dict[str, Any]:
    """Run the term (module docstring) in the simulation folder `root` (replaced); returns what
    `notalone simulate-term --json` prints."""
    started = time.perf_counter()
    config = simulation_config(config)
    sim = config.simulation
    if root.exists():
        shutil.rmtree(root)
    workspace = simulation_workspace(root)
    plan = plan_school(sim.students, sim.seed, config.generator)
    data_end = datetime.fromtimestamp(int(plan.calendar.data_end_s), UTC)
    weeks = term_weeks(data_end, sim.weeks, horizon_days(config))

    contacts = pd.DataFrame({k: pd.Series(dtype="str") for k in CONTACT_COLUMNS[:2]})
    contacts["ts"] = pd.Series(dtype="datetime64[us, UTC]")
    without = steps(
        "school",
        f"the school: {sim.students:,} students, no contacts from the lists",
        write_world,
        root / SCHOOL,
        config,
        contacts,
        io=True,
    )
    if model_uri:
        model = steps("model", f"model {model_uri}", mlflow_store.load_model, model_uri, io=True)
    else:
        model = steps(
            "train",
            f"training on the weeks before {weeks[0].date()}",
            train_before,
            without,
            config,
            workspace,
            weeks[0],
            steps.say,
        )

    rows: list[dict[str, Any]] = []
    source = without
    for k, as_of in enumerate(weeks):
        week_started = time.perf_counter()
        if k and len(contacts):  # the school as it went on with the lists' contacts so far
            source = write_world(root / SCHOOL, config, contacts)
        scored = score_steps(
            source=source,
            as_of=as_of,
            config=config,
            workspace=workspace,
            steps=Steps(progress=steps.progress),
            model=model,
            duplicate_events=False,
            record=False,
        )
        ranking = scored.ranking
        new = curators_contact(ranking, as_of, config, k)
        contacts = pd.concat([contacts, new], ignore_index=True) if len(new) else contacts
        arms = workspace_store.experiment_arms(workspace)
        drawn_now = pd.to_datetime(arms["assigned_at"], utc=True) == pd.Timestamp(as_of)
        row = {
            "as_of": as_of.date().isoformat(),
            "active": int(len(ranking)),
            "listed": int(ranking["listed"].sum()),
            "control_out": int((ranking["hold_back"] == "control").sum()),
            "drawn_listed": int((drawn_now & (arms["arm"] == ARM_LISTED)).sum()),
            "drawn_control": int((drawn_now & (arms["arm"] == ARM_CONTROL)).sum()),
            "contacted": len(new),
            "seconds": round(time.perf_counter() - week_started, 1),
            "score_seconds": round(sum(scored.result["timings"].values()), 1),
        }
        rows.append(row)
        if on_week is not None:
            on_week(k + 1, len(weeks), row)

    final = steps(
        "school",
        "the school after the last week's contacts",
        write_world,
        root / SCHOOL,
        config,
        contacts,
        io=True,
    )
    measured = steps(
        "measure",
        "the effect measure",
        effect_result,
        final,
        config,
        workspace,
        data_end,
        contacts,
        io=True,
    )
    arms = workspace_store.experiment_arms(workspace)
    counterfactual = steps(
        "counterfactual",
        "the same term, the listed arm not contacted",
        write_world,
        root / COUNTERFACTUAL,
        config,
        without_listed_arm(contacts, arms),
        io=True,
    )
    true = steps(
        "truth",
        "the truth",
        truth,
        arms,
        final,
        counterfactual,
        contacts,
        data_end,
        config,
        io=True,
    )
    return {
        "students": sim.students,
        "seed": sim.seed,
        "weeks": rows,
        "contact_rate": sim.contact_rate,
        "planted": dict(sim.generator),
        "control_share": config.experiment.control_share,
        "confidence": config.experiment.confidence,
        "outcomes_as_of": data_end.isoformat(),
        "effect": measured,
        "truth": true,
        "overall": verdict_line(measured, true),
        "folder": str(root),
        "seconds": round(time.perf_counter() - started, 1),
    }
