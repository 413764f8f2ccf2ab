"""The week's `report.html` rendered from a Jinja2 template (webapp/templates/report.html).

Same page as `interventions.report.build_report` (which assembles it from strings), with the same
figures and figures' code; no FastAPI or HTTP here, so the scorer can call it.
`build_report_from_template(ranking, ctx, texts)` is a drop-in for `build_report`;
`render_report(context)` renders a context made by `report_context`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from interventions.report import (
    CSS,
    ReportContext,
    _drift_name,
    _psi_text,
    bar_chart,
    per_curator_histogram,
    risk_histogram,
    risk_trend,
)
from interventions.texts import Texts, render_column, render_one

TEMPLATES = Path(__file__).resolve().parent / "templates"
REPORT_TEMPLATE = "report.html"


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _cell(value) -> dict:
    return {"value": value, "num": isinstance(value, int | float | np.number)}


def _table(rows, header) -> dict:
    return {"header": list(header), "rows": [[_cell(v) for v in row] for row in rows]}


def _curators(frame: pd.DataFrame, texts: Texts, ctx: ReportContext) -> list[dict]:
    r = texts.report
    per = frame.groupby("curator_id", sort=True, observed=True).agg(
        active=("risk", "size"),
        listed=("listed", "sum"),
        triggered=("_listed_trigger", "sum"),
        held=("_held_cooldown", "sum"),
    )
    listed = frame[frame["listed"]].sort_values(["curator_id", "rank"], kind="stable")
    fmt = f"{{:.{ctx.decimals}f}}"
    rows_by: dict[str, list[dict]] = {}
    winback_by: dict[str, list[dict]] = {}
    win_back = (
        listed["section"].astype("str").to_numpy(dtype=object, na_value=None) == "win_back"
        if "section" in listed.columns
        else np.zeros(len(listed), dtype=bool)
    )
    for row, back in zip(listed.itertuples(index=False), win_back, strict=True):
        change = float(row.change) if pd.notna(row.change) else float("nan")
        (winback_by if back else rows_by).setdefault(str(row.curator_id), []).append(
            {
                "rank": str(row.rank),
                "student": str(row.student_id),
                "course": str(row.course_id),
                "risk": fmt.format(row.risk),
                "triggered": bool(row.triggered),
                "change": "" if np.isnan(change) else f"{change:+.{ctx.decimals}f}",
                "reasons": "" if pd.isna(row.reasons) else str(row.reasons),
                "tier": texts.tiers.get(row.tier, ""),
                "action": texts.actions.get(row.action, ""),
            }
        )
    ids = per.index.astype("str").to_numpy(dtype=object)
    titles = render_column(r["curator"], {"curator": ids}, len(per), texts)
    summaries = render_column(
        r["curator_summary"],
        {k: per[k].to_numpy(dtype="float64") for k in ("listed", "active", "triggered", "held")},
        len(per),
        texts,
    )
    return [
        {
            "id": cid,
            "title": title,
            "summary": summary,
            "rows": rows_by.get(cid, []),
            "winback_rows": winback_by.get(cid, []),
        }
        for cid, title, summary in zip(ids, titles, summaries, strict=True)
    ]


def _drift(ctx: ReportContext, texts: Texts) -> dict | None:
    if ctx.drift is None:
        return None
    r = texts.report
    drift = ctx.drift
    out = {
        "intro": render_one(r["drift_intro"], {"threshold": f"{ctx.drift_threshold:g}"}, texts),
        "empty": drift.empty,
        "none": not drift.empty and not drift["drifted"].any(),
        "warning": None,
        "table": _table(
            [
                (
                    _drift_name(row, texts),
                    _psi_text(row.psi, texts),
                    _psi_text(row.limit, texts),
                    r["drifted"] if row.drifted else "",
                )
                for row in drift.itertuples(index=False)
            ],
            [r["col_input"], r["col_psi"], r["col_limit"], r["col_drifted"]],
        ),
    }
    if not drift.empty and drift["drifted"].any():
        drifted = drift[drift["drifted"].to_numpy(dtype=bool)]
        out["warning"] = {
            "text": render_one(
                r["drift_warning"],
                {
                    "count": str(len(drifted)),
                    "checked": str(len(drift)),
                    "threshold": f"{ctx.drift_threshold:g}",
                },
                texts,
            ),
            "inputs": [
                {
                    "name": _drift_name(row, texts),
                    "psi": _psi_text(row.psi, texts),
                    "limit": _psi_text(row.limit, texts),
                }
                for row in drifted.itertuples(index=False)
            ],
        }
    return out


def _points(x, separator: str, sign: bool = True) -> str:
    if x is None:
        return ""
    return (f"{x * 100:+.1f}" if sign else f"{x * 100:.1f}").replace(".", separator)


def effect_view(
    result: dict | None, effect_texts: dict, level: float, separator: str = "."
) -> dict | None:
    """The effect measure (`effect_result`'s dict) in a language's words, for the report and
    the lead's page: the arms line, the table (verdicts translated by key) and the plan."""
    if not result or not effect_texts:
        return None
    e = effect_texts
    verdicts, outcomes = e.get("verdicts", {}), e.get("outcomes", {})
    rows = []
    for c in result["comparisons"]:

        def rate(n, r):
            return f"{n}" if r is None else f"{n} ({_points(r, separator, sign=False)} %)"

        interval = ""
        if c.get("effect") is not None:
            interval = (
                f"{_points(c['effect'], separator)} "
                f"[{_points(c['low'], separator)}, {_points(c['high'], separator)}]"
            )
        per = ""
        if c.get("per_contacted") is not None:
            per = (
                f"{_points(c['per_contacted'], separator)} "
                f"[{_points(c['per_contacted_low'], separator)}, "
                f"{_points(c['per_contacted_high'], separator)}]"
            )
        mde = c.get("mde")
        rows.append(
            [
                _cell(outcomes.get(c["outcome"], c["outcome"])),
                _cell(e.get("all", c["band"]) if c["band"] == "all" else c["band"]),
                _cell(rate(c["n_listed"], c.get("rate_listed"))),
                _cell(rate(c["n_control"], c.get("rate_control"))),
                _cell(interval),
                _cell(per),
                _cell(_points(mde, separator, sign=False) if mde is not None and mde < 1 else ""),
                _cell(verdicts.get(c.get("verdict_key") or "", c["verdict"])),
            ]
        )
    level_text = f"{level:.0%}".replace("%", " %")
    header = [
        e["col_outcome"],
        e["col_band"],
        e["col_listed"],
        e["col_control"],
        e["col_difference"].replace("{level}", level_text),
        e["col_per_contacted"],
        e["col_mde"],
        e["col_verdict"],
    ]
    p = result.get("plan") or {}
    plan = ""

    def count(n) -> str:  # thousands: "," in English, a space where "," is the decimal mark
        return f"{n:,}".replace(",", "," if separator == "." else "\u00a0")

    if p:
        fields = {
            "effect": _points(p["effect"], separator, sign=False),
            "base": _points(p["base_rate"], separator, sign=False),
            "per_arm": count(p["per_arm_equal"]),
            "control": count(p["control_needed"]),
            "listed": count(p["listed_needed"]),
            "weeks": count(p["weeks_to_draw"] or 0),
            "total": count(p["weeks_total"] or 0),
        }
        plan = e["plan"] if p.get("weeks_to_draw") is not None else e["plan_never"]
        for k, v in fields.items():
            plan = plan.replace(f"{{{k}}}", v)
    arms = (
        e["arms"]
        .replace("{drawn}", str(result["drawn"]))
        .replace("{control}", str(result["control"]))
        .replace("{as_of}", str(result["as_of"])[:10])
    )
    return {
        "title": e["title"],
        "arms": arms,
        "table": {"header": header, "rows": rows},
        "plan": plan,
    }


def report_context(ranking: pd.DataFrame, ctx: ReportContext, texts: Texts) -> dict:
    """Everything the report template shows, computed as `build_report` does."""
    r = texts.report
    risk = ranking["risk"].to_numpy(dtype="float64")
    listed_mask = ranking["listed"].to_numpy(dtype=bool)
    triggered = ranking["triggered"].to_numpy(dtype=bool)
    hold = ranking["hold_back"].to_numpy(dtype=object, na_value=None)
    frame = ranking.assign(
        _listed_trigger=listed_mask & triggered, _held_cooldown=hold == "cooldown"
    )
    mean_risk = float(np.mean(risk)) if len(risk) else float("nan")
    high_share = float(np.mean(risk >= ctx.high_risk)) if len(risk) else float("nan")
    d = ctx.decimals
    high_label = render_one(r["high_risk"], {"high": f"{ctx.high_risk:g}"}, texts)
    summary_rows = [
        (r["active"], len(ranking)),
        (r["listed"], int(listed_mask.sum())),
        (r["triggered"], int((listed_mask & triggered).sum())),
        (r["held_cooldown"], int((hold == "cooldown").sum())),
        (r["held_capacity"], int((hold == "capacity").sum())),
        (r["curators"], int(ranking["curator_id"].nunique())),
        (r["mean_risk"], round(mean_risk, d)),
        (high_label, f"{high_share:.1%}"),
    ]
    has_trend = ctx.trend is not None and len(ctx.trend) > 0
    if has_trend:
        last = ctx.trend.iloc[-1]
        header = ["", ctx.as_of, f"{r['previous_week']} ({last['week']})"]
        previous = [
            int(last["active"]),
            int(last["listed"]),
            "",
            "",
            "",
            "",
            round(float(last["mean_risk"]), d),
            f"{float(last['high_share']):.1%}",
        ]
        rows = [(k, v, p) for (k, v), p in zip(summary_rows, previous, strict=True)]
    else:
        header, rows = ["", ctx.as_of], summary_rows
    listed = ranking[listed_mask]
    by_tier = listed["tier"].map(texts.tiers).value_counts().sort_values(ascending=False)
    groups = listed["reason_groups"].dropna().str.split(",").explode()
    by_reason = (
        groups[groups != ""]
        .map(lambda g: texts.reason_groups.get(g, g))
        .value_counts()
        .sort_values(ascending=False)
    )
    by_trigger = [
        (
            c.removeprefix("trigger_"),
            int(ranking[c].sum()),
            int((ranking[c] & ranking["listed"]).sum()),
        )
        for c in ranking.columns
        if c.startswith("trigger_")
    ]
    per_curator = frame.groupby("curator_id", observed=True)["listed"].sum()
    figures = [risk_histogram(risk, ctx.previous_risk, ctx, texts)]
    if has_trend:
        now = pd.DataFrame([{"week": ctx.as_of, "mean_risk": mean_risk, "high_share": high_share}])
        figures.append(risk_trend(pd.concat([ctx.trend, now], ignore_index=True), texts))
    if len(by_tier):
        figures.append(bar_chart(by_tier, r["by_tier"]))
    if len(by_reason):
        figures.append(bar_chart(by_reason, r["by_reason"]))
    figures.append(per_curator_histogram(per_curator, texts))
    return {
        "r": r,
        "css": CSS,
        "language": texts.language,
        "as_of": ctx.as_of,
        "heading": render_one(r["heading"], {"as_of": ctx.as_of}, texts),
        "generated": render_one(r["generated"], {"model": ctx.model, "source": ctx.source}, texts),
        "warnings": list(ctx.warnings),
        "summary": _table(rows, header),
        "has_trend": has_trend,
        "figures": figures,  # <img> tags with PNG data URIs, made by interventions.report
        "drift": _drift(ctx, texts),
        "effect": effect_view(ctx.effect, texts.effect, ctx.effect_level, texts.decimal_separator),
        "by_tier": _table(list(by_tier.items()), ["", r["count"]]),
        "by_reason": _table(list(by_reason.items()), ["", r["count"]]),
        "by_trigger": _table(by_trigger, ["", r["fired"], r["listed"]]),
        "curators": _curators(frame, texts, ctx),
        "sectioned": "section" in frame.columns,
        "columns": [
            r[k]
            for k in (
                "col_rank",
                "col_student",
                "col_course",
                "col_risk",
                "col_change",
                "col_reasons",
                "col_tier",
                "col_action",
            )
        ],
    }


def render_report(context: dict) -> str:
    """The report page from a `report_context` dict."""
    return _environment().get_template(REPORT_TEMPLATE).render(**context)


def build_report_from_template(ranking: pd.DataFrame, ctx: ReportContext, texts: Texts) -> str:
    """Drop-in for `interventions.report.build_report`, rendered from the template."""
    return render_report(report_context(ranking, ctx, texts))
