"""Benchmark of the curator workspace (`make bench-webapp`): the curator's page with a year of
lists in the database.

It publishes `--weeks` weeks (default 52) of `--curators` curators x `--per-curator` listed
students (default 1,300 x 15, the default capacity: 1,014,000 list rows) through
`publish_week`, records a contact with an outcome for `--contact-share` of the entries (history
for the cards), and then times the
curator's page (GET /week, the full app in process through TestClient: session check, queries,
template) for curators of the latest week, plus the lead's page. `--curators 200 --per-curator
100` is the stress variant (100 cards on one page, same total). Students stay with their
curator all year and are listed in a rotating 2/3 of the weeks, so cards carry a long history.

The database is a SQLite file under benchmarks/.data/ (git-ignored), made once and reused when
its size matches; `--fresh` rebuilds it. `--db-url` runs against another database.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

DATA = REPO / "benchmarks" / ".data" / "webapp"
FIRST_WEEK = datetime(2025, 1, 6, tzinfo=UTC)
OUTCOMES = ["replied", "no_answer", "declined_help", "resolved", "technical_support", "mentor"]
REASONS = (
    "no submissions for 20 days (school rule: the curator writes first); "
    "last active 9 days ago; opened no lessons in the last 7 days"
)
MESSAGE = (
    "Hi {first_name}! How is the work in Python for beginners going? If an assignment got stuck, "
    "send me what you have so far. Even a rough draft is a great starting point."
)


def week_ranking(week: int, curators: int, per_curator: int) -> pd.DataFrame:
    pool = per_curator * 3 // 2  # each curator's students; 2/3 of them listed in a week
    rows = {k: [] for k in ("student_id", "curator_id", "rank", "risk")}
    for c in range(curators):
        start = (week * per_curator // 2) % pool
        for rank in range(per_curator):
            s = (start + rank) % pool
            rows["student_id"].append(f"s{c:04d}-{s:04d}")
            rows["curator_id"].append(f"cur-{c:04d}")
            rows["rank"].append(rank + 1)
            rows["risk"].append(0.95 - rank * 0.005)
    n = len(rows["rank"])
    return pd.DataFrame(
        {
            **rows,
            "course_id": ["PY101-2025A"] * n,
            "listed": [True] * n,
            "change": [0.02] * n,
            "reasons": [REASONS] * n,
            "lead_group": ["submissions"] * n,
            "tier": ["curator"] * n,
            "action": ["write_first"] * n,
            "message": [MESSAGE] * n,
            "triggered": [r <= 3 for r in rows["rank"]],
            "triggers": [""] * n,
        }
    )


def build(engine, weeks: int, curators: int, per_curator: int, contact_share: float) -> dict:
    from webapp.db import publish_week
    from webapp.db.models import Contact, ListEntry, Outcome

    rng = random.Random(0)
    publish_seconds = []
    contact_id = 0
    for w in range(weeks):
        as_of = FIRST_WEEK + timedelta(weeks=w)
        ranking = week_ranking(w, curators, per_curator)
        started = time.perf_counter()
        published = publish_week(engine, as_of=as_of, ranking=ranking, model_uri="bench")
        publish_seconds.append(time.perf_counter() - started)
        contacts, outcomes = [], []
        for row in ranking.itertuples(index=False):
            if rng.random() >= contact_share:
                continue
            contact_id += 1
            ts = as_of + timedelta(hours=rng.uniform(1, 120))
            contacts.append(
                {
                    "contact_id": contact_id,
                    "week_id": published.week_id,
                    "student_id": row.student_id,
                    "course_id": row.course_id,
                    "curator_id": row.curator_id,
                    "recorded_by": row.curator_id,
                    "ts": ts,
                    "recorded_at": ts,
                    "channel": "message",
                    "action": "write_first",
                    "message": MESSAGE,
                    "via": "web",
                }
            )
            outcomes.append(
                {
                    "contact_id": contact_id,
                    "outcome": rng.choice(OUTCOMES),
                    "recorded_by": row.curator_id,
                    "recorded_at": ts,
                }
            )
        with engine.begin() as conn:
            if contacts:
                conn.execute(insert(Contact), contacts)
                conn.execute(insert(Outcome), outcomes)
        print(f"  week {w + 1}/{weeks}: {len(ranking):,} rows in {publish_seconds[-1]:.2f} s")
    with engine.connect() as conn:
        entries = conn.execute(select(func.count()).select_from(ListEntry)).scalar_one()
        n_contacts = conn.execute(select(func.count()).select_from(Contact)).scalar_one()
    return {
        "entries": entries,
        "contacts": n_contacts,
        "publish_median_s": statistics.median(publish_seconds),
    }


def time_page(client, url: str, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--curators", type=int, default=1300)
    parser.add_argument("--per-curator", type=int, default=15)
    parser.add_argument("--contact-share", type=float, default=0.4)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--db-url", default=None)
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from configs import load_config
    from webapp import auth
    from webapp.app import create_app
    from webapp.db import open_workspace_db
    from webapp.db.models import ListEntry
    from webapp.settings import AppSettings

    size = f"{args.weeks}w-{args.curators}c-{args.per_curator}"
    home = DATA / size
    if args.fresh and home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    engine = open_workspace_db(args.db_url, home)
    with engine.connect() as conn:
        have = conn.execute(select(func.count()).select_from(ListEntry)).scalar_one()
    expected = args.weeks * args.curators * args.per_curator
    if have != expected:
        print(f"building {expected:,} list rows ({size}) in {engine.url.render_as_string()}")
        started = time.perf_counter()
        built = build(engine, args.weeks, args.curators, args.per_curator, args.contact_share)
        print(f"built in {time.perf_counter() - started:.0f} s: {built}")
    secret = b"bench-secret-" * 3
    app = create_app(
        AppSettings(home=home, config=load_config(), db_url=args.db_url, secret=secret)
    )
    with app.state.engine.connect() as conn:
        entries = conn.execute(select(func.count()).select_from(ListEntry)).scalar_one()
        from webapp.db.models import Contact

        contacts = conn.execute(select(func.count()).select_from(Contact)).scalar_one()

    def session_for(person: str, lead: bool = False) -> TestClient:
        client = TestClient(app)
        link = auth.invite_link(
            app.state.engine,
            secret,
            person,
            lead=lead,
            base_url="http://t",
            expires_in=timedelta(hours=1),
        )
        assert client.post(link.removeprefix("http://t"), follow_redirects=False).status_code == 303
        return client

    results = {}
    curators = [f"cur-{c:04d}" for c in (0, args.curators // 2, args.curators - 1)]
    page_times = []
    for curator in curators:
        client = session_for(curator)
        time_page(client, "/week", 3)  # warm-up (templates compiled, caches)
        page_times += time_page(client, "/week", args.repeats)
    results["curator page"] = page_times
    lead = session_for("lead-bench", lead=True)
    time_page(lead, f"/week?curator={curators[0]}", 3)
    results["curator page, as the lead"] = time_page(
        lead, f"/week?curator={curators[0]}", args.repeats
    )
    time_page(lead, f"/lead?curator={curators[0]}", 2)
    results["lead page, one curator"] = time_page(
        lead, f"/lead?curator={curators[0]}", args.repeats
    )
    results["lead page, all curators"] = time_page(lead, "/lead", max(3, args.repeats // 5))

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(
        f"\nworkspace database: {entries:,} list rows ({args.weeks} weeks x {args.curators} "
        f"curators x {args.per_curator}), {contacts:,} contacts with outcomes; "
        f"{app.state.engine.dialect.name}; {machine}"
    )
    print(f"{'page':<30} {'median ms':>10} {'p95 ms':>10} {'max ms':>10}")
    for name, times in results.items():
        ordered = sorted(times)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        print(
            f"{name:<30} {statistics.median(times) * 1000:>10.1f} {p95 * 1000:>10.1f} "
            f"{max(times) * 1000:>10.1f}"
        )
    median_ms = statistics.median(results["curator page"]) * 1000
    verdict = "meets" if median_ms < 200 else "MISSES"
    print(f"\ncurator page median {median_ms:.1f} ms: {verdict} the 200 ms target")


if __name__ == "__main__":
    main()
