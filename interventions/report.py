"""The week's report as one self-contained HTML page (plots embedded as PNG data URIs).

For product leads: a warning box on top when this week's inputs drifted from the training data,
the summary (how many active, listed, triggered, held back), the drift check, the risk
distribution against the previous scoring, the risk trend over earlier weeks, listed students by
support tier and by reason, and how many students each curator got. Then one collapsible section
per curator with their list. The page loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from interventions.texts import Texts, render_column, render_one

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIG_SIZE = (6.4, 3.2)
FIG_DPI = 96
COLORS = ("#3b6ea8", "#c8553d", "#6a994e", "#bc8a2c", "#7b5ea7")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:72rem;padding:0 1rem;color:#222;line-height:1.4}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.muted{color:#666}.warn{background:#fff3cd;border:1px solid #e0b100;padding:.6rem 1rem;
border-radius:4px}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:1rem}.grid img{max-width:100%;border:1px solid #eee}
details{margin:.4rem 0}summary{cursor:pointer}.badge{background:#c8553d;color:#fff;
border-radius:3px;padding:0 .3rem;font-size:.8em;margin-left:.3rem}
"""


@dataclass(frozen=True)
class ReportContext:
    """What the report shows besides the ranking itself."""

    as_of: str
    model: str
    source: str
    high_risk: float
    decimals: int = 3
    histogram_bins: int = 20
    previous_risk: np.ndarray | None = None
    trend: pd.DataFrame | None = None  # week, active, listed, mean_risk, high_share (oldest first)
    warnings: Sequence[str] = field(default_factory=tuple)
    # The drift check (models.drift): name, kind, psi, limit, drifted per checked input; empty
    # when the model has no training reference; None: no drift section at all.
    drift: pd.DataFrame | None = None
    drift_threshold: float | None = None
    # The win-back section (interventions.winback), shown when the ranking has `section`.
    winback_days: int | None = None
    winback_capacity: int | None = None
    # The hold-out's effect measure as of the week (`pipelines.score_steps.effect_result`:
    # drawn, control, comparisons, plan); None: no hold-out yet, no section. Rendered by the
    # template report (webapp/report.py).
    effect: dict | None = None
    effect_level: float = 0.90  # the confidence of the intervals shown


def _esc(value: object) -> str:
    return html.escape("" if value is None or value is pd.NA else str(value), quote=True)


def _png(fig: Figure) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIG_DPI, bbox_inches="tight", metadata={"Software": None})
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{data}">'


def _figure() -> tuple[Figure, object]:
    # matplotlib (~1 s to import) only when a plot is drawn, not for every command importing this.
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIG_SIZE)
    ax = fig.add_subplot(1, 1, 1)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def risk_histogram(risk: np.ndarray, previous: np.ndarray | None, ctx: ReportContext, t: Texts):
    fig, ax = _figure()
    bins = np.linspace(0.0, 1.0, ctx.histogram_bins + 1)
    ax.hist(risk, bins=bins, color=COLORS[0], alpha=0.8, label=t.report["this_week"])
    if previous is not None and len(previous):
        ax.hist(
            previous,
            bins=bins,
            histtype="step",
            color=COLORS[1],
            linewidth=1.5,
            label=t.report["previous_week"],
        )
    ax.axvline(ctx.high_risk, color="#888", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel(t.report["col_risk"])
    ax.set_ylabel(t.report["students"])
    ax.legend(frameon=False)
    ax.set_title(t.report["risk_distribution"])
    return _png(fig)


def risk_trend(trend: pd.DataFrame, t: Texts) -> str:
    fig, ax = _figure()
    x = np.arange(len(trend))
    ax.plot(x, trend["mean_risk"], marker="o", color=COLORS[0], label=t.report["mean_risk"])
    ax.plot(x, trend["high_share"], marker="s", color=COLORS[1], label=t.report["share_high"])
    ax.set_xticks(x, trend["week"], rotation=30, ha="right")
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False)
    ax.set_title(t.report["risk_trend"])
    return _png(fig)


def bar_chart(counts: pd.Series, title: str) -> str:
    fig, ax = _figure()
    y = np.arange(len(counts))
    ax.barh(y, counts.to_numpy(), color=COLORS[2])
    ax.set_yticks(y, [str(i) for i in counts.index])
    ax.invert_yaxis()
    ax.set_title(title)
    return _png(fig)


def per_curator_histogram(listed_per_curator: pd.Series, t: Texts) -> str:
    fig, ax = _figure()
    values = listed_per_curator.to_numpy()
    top = int(values.max()) if len(values) else 0
    ax.hist(values, bins=np.arange(-0.5, top + 1.5, 1.0), color=COLORS[3])
    ax.set_xlabel(t.report["listed_per_curator"])
    ax.set_ylabel(t.report["curator_count"])
    ax.set_title(t.report["per_curator"])
    return _png(fig)


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for v in row:
            cls = ' class="num"' if isinstance(v, int | float | np.number) else ""
            cells.append(f"<td{cls}>{_esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _esc_series(s: pd.Series) -> pd.Series:
    s = s.astype("str").fillna("")
    for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;")):
        s = s.str.replace(raw, safe, regex=False)
    return s


def curator_sections(ranking: pd.DataFrame, t: Texts, ctx: ReportContext) -> str:
    """One collapsible section per curator: counts and their list (only their own students)."""
    r = t.report
    per = ranking.groupby("curator_id", sort=True, observed=True).agg(
        active=("risk", "size"),
        listed=("listed", "sum"),
        triggered=("_listed_trigger", "sum"),
        held=("_held_cooldown", "sum"),
    )
    sectioned = "section" in ranking.columns
    listed = ranking[ranking["listed"]].assign(_win_back=lambda f: _win_back(f))
    listed = listed.sort_values(["curator_id", "_win_back", "rank"], kind="stable")
    fmt = f"{{:.{ctx.decimals}f}}"
    change = listed["change"].astype("float64")
    change_text = change.map(lambda v: "" if np.isnan(v) else f"{v:+.{ctx.decimals}f}")
    badge = np.where(
        listed["triggered"].to_numpy(dtype=bool),
        f'<span class="badge">{_esc(r["rule_trigger"])}</span>',
        "",
    )
    rows = (
        "<tr><td class=num>"
        + listed["rank"].astype("str")
        + "</td><td>"
        + _esc_series(listed["student_id"])
        + "</td><td>"
        + _esc_series(listed["course_id"])
        + "</td><td class=num>"
        + listed["risk"].map(fmt.format).astype("str")
        + badge
        + "</td><td class=num>"
        + change_text.astype("str")
        + "</td><td>"
        + _esc_series(listed["reasons"])
        + "</td><td>"
        + _esc_series(listed["tier"].map(t.tiers))
        + "</td><td>"
        + _esc_series(listed["action"].map(t.actions))
        + "</td></tr>"
    )
    win_back = listed["_win_back"].to_numpy(dtype=bool)
    curator_of = listed["curator_id"].to_numpy()
    body_by_curator = rows[~win_back].groupby(curator_of[~win_back], sort=True).agg("".join)
    winback_by_curator = rows[win_back].groupby(curator_of[win_back], sort=True).agg("".join)
    header = "".join(
        f"<th>{_esc(r[k])}</th>"
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
    )
    ids = per.index.astype("str").to_numpy(dtype=object)
    titles = render_column(r["curator"], {"curator": ids}, len(per), t)
    summaries = render_column(
        r["curator_summary"],
        {k: per[k].to_numpy(dtype="float64") for k in ("listed", "active", "triggered", "held")},
        len(per),
        t,
    )
    parts = []
    for cid, title, summary in zip(ids, titles, summaries, strict=True):
        title, summary = _esc(title), _esc(summary)
        body = body_by_curator.get(cid)
        table = f"<table><tr>{header}</tr>{body}</table>" if body else f"<p>{_esc(r['nobody'])}</p>"
        if sectioned:
            back = winback_by_curator.get(cid)
            back_table = (
                f"<table><tr>{header}</tr>{back}</table>"
                if back
                else f"<p>{_esc(r['nobody_win_back'])}</p>"
            )
            table = (
                f"<h4>{_esc(r['early_warning_heading'])}</h4>{table}"
                f'<h4 class="win-back">{_esc(r["win_back"])}</h4>{back_table}'
            )
        anchor = _esc(f"curator-{cid}")
        parts.append(
            f'<details id="{anchor}"><summary><b>{title}</b> '
            f'<span class="muted">{summary}</span></summary>{table}</details>'
        )
    return "\n".join(parts)


def _win_back(ranking: pd.DataFrame) -> np.ndarray:
    if "section" not in ranking.columns:
        return np.zeros(len(ranking), dtype=bool)
    return ranking["section"].astype("str").to_numpy(dtype=object, na_value=None) == "win_back"


def winback_section(ranking: pd.DataFrame, ctx: ReportContext, t: Texts) -> str:
    """The win-back overview (its own heading): who is in it and why, per curator and reason.
    Empty when the ranking has no sections."""
    if "section" not in ranking.columns:
        return ""
    r = t.report
    back = _win_back(ranking)
    listed = ranking["listed"].to_numpy(dtype=bool)
    intro = render_one(
        r["win_back_intro"],
        {
            "days": "" if ctx.winback_days is None else str(ctx.winback_days),
            "capacity": "" if ctx.winback_capacity is None else str(ctx.winback_capacity),
        },
        t,
    )
    rows = [(r["active"], int(back.sum())), (r["win_back_listed"], int((back & listed).sum()))]
    if "winback_reason" in ranking.columns:
        reasons = ranking.loc[back, "winback_reason"].astype("str").value_counts().sort_index()
        rows += [(str(k), int(v)) for k, v in reasons.items()]
    return f'<h2 id="win-back">{_esc(r["win_back"])}</h2><p class=muted>{_esc(intro)}</p>' + _table(
        rows, ["", r["count"]]
    )


def _psi_text(value: float, t: Texts) -> str:
    return t.missing_value if value is None or np.isnan(value) else f"{value:.3f}"


def _drift_name(row, t: Texts) -> str:
    return t.report["drift_score"] if row.kind == "score" else str(row.name)


def drift_warning(ctx: ReportContext, t: Texts) -> str:
    """The warning box on top of the page: the drifted inputs with their PSI and limit."""
    if ctx.drift is None or not ctx.drift["drifted"].any():
        return ""
    r = t.report
    drifted = ctx.drift[ctx.drift["drifted"].to_numpy(dtype=bool)]
    text = render_one(
        r["drift_warning"],
        {
            "count": str(len(drifted)),
            "checked": str(len(ctx.drift)),
            "threshold": f"{ctx.drift_threshold:g}",
        },
        t,
    )
    items = "".join(
        f"<li><b>{_esc(_drift_name(row, t))}</b>: {_esc(r['col_psi'])} "
        f"{_psi_text(row.psi, t)} &gt; {_psi_text(row.limit, t)}</li>"
        for row in drifted.itertuples(index=False)
    )
    return f'<div class="warn" id="drift-warning"><b>{_esc(text)}</b><ul>{items}</ul></div>'


def drift_section(ctx: ReportContext, t: Texts) -> str:
    """The drift table, shown every week so that readers see the check ran."""
    if ctx.drift is None:
        return ""
    r = t.report
    intro = render_one(r["drift_intro"], {"threshold": f"{ctx.drift_threshold:g}"}, t)
    parts = [f'<h2 id="drift">{_esc(r["drift"])}</h2>', f"<p class=muted>{_esc(intro)}</p>"]
    if ctx.drift.empty:
        parts.append(f"<p>{_esc(r['drift_unchecked'])}</p>")
        return "\n".join(parts)
    if not ctx.drift["drifted"].any():
        parts.append(f"<p>{_esc(r['drift_none'])}</p>")
    rows = [
        (
            _drift_name(row, t),
            _psi_text(row.psi, t),
            _psi_text(row.limit, t),
            r["drifted"] if row.drifted else "",
        )
        for row in ctx.drift.itertuples(index=False)
    ]
    parts.append(_table(rows, [r["col_input"], r["col_psi"], r["col_limit"], r["col_drifted"]]))
    return "\n".join(parts)


def build_report(ranking: pd.DataFrame, ctx: ReportContext, texts: Texts) -> str:
    """The HTML page. `ranking` has the scorer's columns (risk, listed, rank, triggered,
    hold_back, tier, action, reasons, reason_groups, student_id, course_id, curator_id, change)."""
    r = texts.report
    risk = ranking["risk"].to_numpy(dtype="float64")
    listed_mask = ranking["listed"].to_numpy(dtype=bool)
    early_listed = listed_mask & ~_win_back(ranking)
    triggered = ranking["triggered"].to_numpy(dtype=bool)
    hold = ranking["hold_back"].to_numpy(dtype=object, na_value=None)
    frame = ranking.assign(
        _listed_trigger=listed_mask & triggered, _held_cooldown=hold == "cooldown"
    )
    n_curators = int(ranking["curator_id"].nunique())
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
        (r["curators"], n_curators),
        (r["mean_risk"], round(mean_risk, d)),
        (high_label, f"{high_share:.1%}"),
    ]
    if "section" in ranking.columns:
        summary_rows.insert(2, (r["win_back_listed"], int((listed_mask & ~early_listed).sum())))
    if ctx.trend is not None and len(ctx.trend):
        last = ctx.trend.iloc[-1]
        summary_header = ["", ctx.as_of, f"{r['previous_week']} ({last['week']})"]
        previous_values = [
            int(last["active"]),
            int(last["listed"]),
            "",
            "",
            "",
            "",
            round(float(last["mean_risk"]), d),
            f"{float(last['high_share']):.1%}",
        ]
        if "section" in ranking.columns:
            previous_values.insert(2, "")
        rows = [(k, v, p) for (k, v), p in zip(summary_rows, previous_values, strict=True)]
    else:
        summary_header = ["", ctx.as_of]
        rows = summary_rows

    listed = ranking[listed_mask]
    by_tier = listed["tier"].map(texts.tiers).value_counts().sort_values(ascending=False)
    groups = listed["reason_groups"].dropna().str.split(",").explode()
    by_reason = (
        groups[groups != ""]
        .map(lambda g: texts.reason_groups.get(g, g))
        .value_counts()
        .sort_values(ascending=False)
    )
    trigger_cols = [c for c in ranking.columns if c.startswith("trigger_")]
    by_trigger = [
        (
            c.removeprefix("trigger_"),
            int(ranking[c].sum()),
            int((ranking[c] & ranking["listed"]).sum()),
        )
        for c in trigger_cols
    ]
    per_curator = frame.groupby("curator_id", observed=True)["listed"].sum()

    figures = [risk_histogram(risk, ctx.previous_risk, ctx, texts)]
    trend_html = f"<p class=muted>{_esc(r['no_previous'])}</p>"
    if ctx.trend is not None and len(ctx.trend):
        now = pd.DataFrame([{"week": ctx.as_of, "mean_risk": mean_risk, "high_share": high_share}])
        trend_html = ""
        figures.append(risk_trend(pd.concat([ctx.trend, now], ignore_index=True), texts))
    if len(by_tier):
        figures.append(bar_chart(by_tier, r["by_tier"]))
    if len(by_reason):
        figures.append(bar_chart(by_reason, r["by_reason"]))
    figures.append(per_curator_histogram(per_curator, texts))

    warnings = ""
    if ctx.warnings:
        items = "".join(f"<li>{_esc(w)}</li>" for w in ctx.warnings)
        warnings = f'<div class="warn"><b>{_esc(r["warnings"])}</b><ul>{items}</ul></div>'
    heading = render_one(r["heading"], {"as_of": ctx.as_of}, texts)
    generated = render_one(r["generated"], {"model": ctx.model, "source": ctx.source}, texts)
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{_esc(texts.language)}"><head><meta charset="utf-8">',
        f"<title>{_esc(r['title'])}: {_esc(ctx.as_of)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_esc(r['title'])}</h1><p><b>{_esc(heading)}</b><br>",
        f"<span class=muted>{_esc(generated)}</span></p>",
        drift_warning(ctx, texts),
        warnings,
        f"<h2>{_esc(r['summary'])}</h2>",
        _table(rows, summary_header),
        trend_html,
        '<div class="grid">' + "".join(figures) + "</div>",
        drift_section(ctx, texts),
        f"<h2>{_esc(r['by_tier'])}</h2>",
        _table(list(by_tier.items()), ["", r["count"]]),
        f"<h2>{_esc(r['by_reason'])}</h2>",
        _table(list(by_reason.items()), ["", r["count"]]),
        f"<h2>{_esc(r['by_trigger'])}</h2>",
        _table(by_trigger, ["", r["fired"], r["listed"]]),
        winback_section(ranking, ctx, texts),
        f"<h2>{_esc(r['curator_lists'])}</h2>",
        curator_sections(frame, texts, ctx),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)
