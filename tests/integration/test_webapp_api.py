"""The workspace app through TestClient: access control on every route, invite links, CSRF,
revocation, and the JSON API."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from configs import load_config
from tests.workspace_data import WEEK, csrf_of, tiny_ranking
from webapp import auth
from webapp.app import create_app, load_labels
from webapp.db import publish_week, recorded_contacts, records, revoke_person
from webapp.db.accounts import KIND_API, create_credential, create_person
from webapp.db.models import Contact, FeedbackAnswer, Outcome, Verdict
from webapp.settings import AppSettings

SECRET = b"test-secret-" * 4
COURSE = "PY101-2026A"
RECORD_TABLES = (Contact, Outcome, Verdict, FeedbackAnswer)


@pytest.fixture
def app(tmp_path):
    application = create_app(AppSettings(home=tmp_path, config=load_config(), secret=SECRET))
    publish_week(application.state.engine, as_of=WEEK, ranking=tiny_ranking(), model_uri="m")
    return application


@pytest.fixture
def engine(app):
    return app.state.engine


def link_path(
    engine, person: str, lead: bool = False, hours: float = 1.0, secret: bytes = SECRET
) -> str:
    link = auth.invite_link(
        engine, secret, person, lead=lead, base_url="http://t", expires_in=timedelta(hours=hours)
    )
    return link.removeprefix("http://t")


def login(app, person: str, lead: bool = False, secret: bytes = SECRET) -> tuple[TestClient, str]:
    """A client with a session of `person` and a CSRF token from their page."""
    client = TestClient(app)
    path = link_path(app.state.engine, person, lead, secret=secret)
    assert client.get(path).status_code == 200
    redeemed = client.post(path, follow_redirects=False)
    assert redeemed.status_code == 303
    page = client.get("/week" if not lead else "/week?curator=cur-b")
    assert page.status_code == 200
    return client, csrf_of(page.text)


def api_client(app, person: str, lead: bool = False) -> TestClient:
    create_person(app.state.engine, person, lead=lead)
    token = create_credential(app.state.engine, person, KIND_API, timedelta(days=1))
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def snapshot(engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(select(func.count()).select_from(m)).scalar_one() for m in RECORD_TABLES
        )


def a_contact_of(engine, student: str) -> int:
    entry = records.find_entry(engine, student, COURSE)
    return records.record_contact(
        engine, entry, recorded_by=entry.curator_id, channel="email", outcome="no_answer"
    )


# --- every route: another curator's student is 403 and nothing is written --------------------

FORM_ROUTES = {
    "/contacts": {"channel": "email", "outcome": "replied", "message": "hi"},
    "/verdicts": {"verdict": "useful"},
    "/feedback": {"answer": "my mentor"},
}
API_WRITES = {
    "/api/v1/contacts": {"channel": "email", "outcome": "replied"},
    "/api/v1/verdicts": {"verdict": "useful"},
    "/api/v1/feedback": {"answer": "my mentor"},
}


@pytest.mark.parametrize("route", sorted(FORM_ROUTES))
@pytest.mark.parametrize("student", ["s4", "unknown-student"])
def test_form_post_for_another_curators_student_is_403(app, engine, route, student):
    client, csrf = login(app, "cur-a")
    before = snapshot(engine)
    data = {"csrf_token": csrf, "week_id": 1, "student_id": student, "course_id": COURSE}
    response = client.post(route, data={**data, **FORM_ROUTES[route]}, follow_redirects=False)
    assert response.status_code == 403
    assert snapshot(engine) == before


@pytest.mark.parametrize("route", sorted(FORM_ROUTES))
def test_form_post_for_own_student_is_written(app, engine, route):
    client, csrf = login(app, "cur-a")
    before = snapshot(engine)
    data = {"csrf_token": csrf, "week_id": 1, "student_id": "s2", "course_id": COURSE}
    response = client.post(route, data={**data, **FORM_ROUTES[route]}, follow_redirects=False)
    assert response.status_code == 303
    assert "#card-s2-" in response.headers["location"]
    assert snapshot(engine) != before


def test_outcome_form_for_another_curators_contact_is_403(app, engine):
    foreign = a_contact_of(engine, "s4")
    client, csrf = login(app, "cur-a")
    before = snapshot(engine)
    data = {"csrf_token": csrf, "contact_id": foreign, "outcome": "replied", "week_id": 1}
    assert client.post("/outcomes", data=data, follow_redirects=False).status_code == 403
    assert snapshot(engine) == before
    own = a_contact_of(engine, "s1")
    data["contact_id"] = own
    assert client.post("/outcomes", data=data, follow_redirects=False).status_code == 303
    assert records.recorded_contacts(engine).set_index("student_id").loc["s1", "outcome"] == (
        "replied"
    )


def test_pages_of_another_curator_are_403(app):
    client, _ = login(app, "cur-a")
    page = client.get("/week")
    assert "s1" in page.text and "s4" not in page.text
    assert client.get("/week?curator=cur-b").status_code == 403
    assert client.get("/lead").status_code == 403


@pytest.mark.parametrize("route", sorted(API_WRITES))
@pytest.mark.parametrize("student", ["s4", "unknown-student"])
def test_api_write_for_another_curators_student_is_403(app, engine, route, student):
    client = api_client(app, "cur-a")
    before = snapshot(engine)
    body = {"student_id": student, "course_id": COURSE, **API_WRITES[route]}
    assert client.post(route, json=body).status_code == 403
    assert snapshot(engine) == before


@pytest.mark.parametrize("route", sorted(API_WRITES))
def test_api_write_for_own_student_is_written(app, engine, route):
    client = api_client(app, "cur-a")
    before = snapshot(engine)
    body = {"student_id": "s1", "course_id": COURSE, "week": "2026-05-11", **API_WRITES[route]}
    response = client.post(route, json=body)
    assert response.status_code == 201, response.text
    assert response.json()["id"] >= 1
    assert snapshot(engine) != before


def test_api_reads_and_outcome_of_another_curator_are_403(app, engine):
    foreign = a_contact_of(engine, "s4")
    client = api_client(app, "cur-a")
    before = snapshot(engine)
    assert client.get("/api/v1/list?curator=cur-b").status_code == 403
    assert client.get(f"/api/v1/students/s4/{COURSE}").status_code == 403
    assert client.get(f"/api/v1/students/nobody/{COURSE}").status_code == 403
    assert client.get("/api/v1/lead/summary").status_code == 403
    outcome = client.post(f"/api/v1/contacts/{foreign}/outcomes", json={"outcome": "replied"})
    assert outcome.status_code == 403
    assert snapshot(engine) == before
    mine = client.get("/api/v1/list").json()
    assert [c["student_id"] for c in mine] == ["s1", "s2", "s3"]
    assert client.get(f"/api/v1/students/s1/{COURSE}").json()["rank"] == 1
    assert client.get("/api/v1/me").json() == {"person_id": "cur-a", "role": "curator"}


def test_api_without_or_with_a_bad_token_is_401(app, engine):
    before = snapshot(engine)
    plain = TestClient(app)
    body = {"student_id": "s1", "course_id": COURSE, "channel": "email"}
    assert plain.post("/api/v1/contacts", json=body).status_code == 401
    bad = TestClient(app, headers={"Authorization": "Bearer not-a-token"})
    assert bad.post("/api/v1/contacts", json=body).status_code == 401
    assert bad.get("/api/v1/list").status_code == 401
    assert snapshot(engine) == before


def test_lead_sees_and_records_for_everyone(app, engine):
    client, csrf = login(app, "lead-1", lead=True)
    page = client.get("/week?curator=cur-b")
    assert "s4" in page.text
    data = {"csrf_token": csrf, "week_id": 1, "student_id": "s4", "course_id": COURSE}
    posted = client.post(
        "/contacts", data={**data, "channel": "phone", "outcome": "mentor"}, follow_redirects=False
    )
    assert posted.status_code == 303
    table = recorded_contacts(engine)
    assert table[["student_id", "curator_id", "outcome"]].values.tolist() == [
        ["s4", "cur-b", "mentor"]
    ]
    lead_page = client.get("/lead")
    assert lead_page.status_code == 200
    assert 'id="effect"' in lead_page.text
    assert re.search(r'id="fig-contacted">1<', lead_page.text)
    api = api_client(app, "lead-2", lead=True)
    summary = api.get("/api/v1/lead/summary?curator=cur-b").json()
    assert (summary["listed"], summary["contacted"]) == (2, 1)


# --- invite links ------------------------------------------------------------------------------


def test_used_link_is_refused(app):
    path = link_path(app.state.engine, "cur-a")
    first = TestClient(app)
    assert first.post(path, follow_redirects=False).status_code == 303
    second = TestClient(app)
    assert second.post(path, follow_redirects=False).status_code == 403
    assert second.get("/week").status_code == 401
    assert first.get("/week").status_code == 200


def test_tampered_link_is_refused(app):
    path = link_path(app.state.engine, "cur-a")
    token = path.rsplit("/", 1)[1]
    payload, stamp, signature = token.split(".")
    forged = auth._signer(b"another-key").dumps({"p": "cur-b", "n": "x"})
    for bad in (
        f"{payload}.{stamp}.{signature[:-2]}xx",
        f"{payload[:-2]}AA.{stamp}.{signature}",
        forged,
    ):
        client = TestClient(app)
        assert client.get(f"/invite/{bad}").status_code == 403
        assert client.post(f"/invite/{bad}", follow_redirects=False).status_code == 403
        assert client.get("/week").status_code == 401
    assert TestClient(app).post(path, follow_redirects=False).status_code == 303


def test_expired_link_is_refused(app, monkeypatch):
    engine = app.state.engine
    # Expired in the database...
    stale = link_path(engine, "cur-a", hours=-1)
    assert TestClient(app).post(stale, follow_redirects=False).status_code == 403
    # ...and by the signature's own timestamp (older than invite_expiry_hours).
    import itsdangerous.timed

    real = itsdangerous.timed.TimestampSigner.get_timestamp
    monkeypatch.setattr(
        itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: real(self) - 4 * 86400
    )
    old = link_path(engine, "cur-a", hours=1000)
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", real)
    client = TestClient(app)
    assert client.get(old).status_code == 403
    assert client.post(old, follow_redirects=False).status_code == 403
    assert client.get("/week").status_code == 401


# --- CSRF and revocation -----------------------------------------------------------------------


@pytest.mark.parametrize("route", sorted(FORM_ROUTES))
@pytest.mark.parametrize("token", ["", "wrong", "other-session"])
def test_post_without_csrf_is_refused(app, engine, route, token):
    client, _ = login(app, "cur-a")
    if token == "other-session":
        _, token = login(app, "cur-a")  # a valid token of another session
    before = snapshot(engine)
    data = {"week_id": 1, "student_id": "s1", "course_id": COURSE, **FORM_ROUTES[route]}
    if token:
        data["csrf_token"] = token
    response = client.post(route, data=data, follow_redirects=False)
    assert response.status_code == 403
    assert snapshot(engine) == before


def test_revoked_curator_is_locked_out(app, engine):
    client, csrf = login(app, "cur-a")
    api = api_client(app, "cur-a")
    spare = link_path(engine, "cur-a")
    assert api.get("/api/v1/list").status_code == 200
    revoke_person(engine, "cur-a")
    before = snapshot(engine)
    assert client.get("/week").status_code == 401
    data = {"csrf_token": csrf, "week_id": 1, "student_id": "s1", "course_id": COURSE}
    posted = client.post("/contacts", data={**data, "channel": "email"}, follow_redirects=False)
    assert posted.status_code == 401
    assert api.get("/api/v1/list").status_code == 401
    body = {"student_id": "s1", "course_id": COURSE, "channel": "email"}
    assert api.post("/api/v1/contacts", json=body).status_code == 401
    assert TestClient(app).post(spare, follow_redirects=False).status_code == 403
    assert snapshot(engine) == before


def test_logout_ends_the_session(app):
    client, csrf = login(app, "cur-a")
    assert (
        client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    )
    assert client.get("/week").status_code == 401


# --- vocabulary, pages, API docs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "fields"),
    [
        ("/contacts", {"channel": "pigeon", "outcome": "replied"}),
        ("/contacts", {"channel": "email", "outcome": "maybe"}),
        ("/verdicts", {"verdict": "wrongly_flagged"}),  # needs a reason
        ("/verdicts", {"verdict": "great"}),
        ("/feedback", {"answer": "   "}),
    ],
)
def test_bad_values_are_422_and_not_written(app, engine, route, fields):
    client, csrf = login(app, "cur-a")
    before = snapshot(engine)
    data = {"csrf_token": csrf, "week_id": 1, "student_id": "s1", "course_id": COURSE, **fields}
    assert client.post(route, data=data, follow_redirects=False).status_code == 422
    assert snapshot(engine) == before


def test_curator_page_shows_card_history_and_no_reply_next_week(app, engine):
    client, csrf = login(app, "cur-a")
    data = {"csrf_token": csrf, "week_id": 1, "student_id": "s2", "course_id": COURSE}
    client.post("/contacts", data={**data, "channel": "phone", "outcome": "no_answer"})
    client.post("/verdicts", data={**data, "verdict": "wrongly_flagged", "reason": "on holiday"})
    page = client.get("/week").text
    assert "No answer" in page and "Phone" in page
    from tests.workspace_data import NEXT_WEEK

    publish_week(engine, as_of=NEXT_WEEK, ranking=tiny_ranking({"cur-a": ["s3", "s2"]}))
    nxt = client.get("/week").text
    assert "2026-05-18" in nxt
    assert "did not reply last time" in nxt and "No reply last time" in nxt
    only = client.get("/week?show=no_reply").text
    assert 'id="card-s2-' in only and 'id="card-s3-' not in only
    ru = client.get("/week?lang=ru").text
    assert "Не ответил(а) в прошлый раз" in ru


def test_openapi_documents_the_api(app):
    client = TestClient(app)
    spec = client.get("/api/openapi.json").json()
    assert {"/api/v1/contacts", "/api/v1/list", "/api/v1/verdicts"} <= set(spec["paths"])
    assert client.get("/api/docs").status_code == 200


def test_win_back_cards_come_after_early_warning_under_their_own_heading(tmp_path):
    application = create_app(AppSettings(home=tmp_path, config=load_config(), secret=SECRET))
    ranking = tiny_ranking({"cur-a": ["s1", "s2", "s3"], "cur-b": ["s4"]})
    listed = ranking["listed"].to_numpy(dtype=bool)
    ranking["section"] = "early_warning"
    # s2 is rank 1 of the win-back section: ranks restart there, so rank order alone would mix them
    ranking.loc[listed, "section"] = ["early_warning", "win_back", "early_warning", "early_warning"]
    ranking.loc[listed, "rank"] = [1, 1, 2, 1]
    publish_week(application.state.engine, as_of=WEEK, ranking=ranking)
    labels = load_labels()["en"]

    client, _ = login(application, "cur-a")
    page = client.get("/week").text
    heading = page.index(labels["win_back_heading"])
    assert (
        page.index('id="card-s1') < page.index('id="card-s3') < heading < page.index('id="card-s2')
    )
    assert labels["win_back_count"].format(count=1) in page

    other, _ = login(application, "cur-b")  # no win-back card: no heading
    assert labels["win_back_heading"] not in other.get("/week").text

    api = api_client(application, "cur-a")
    listed = [(c["student_id"], c["section"]) for c in api.get("/api/v1/list").json()]
    assert listed == [("s1", "early_warning"), ("s3", "early_warning"), ("s2", "win_back")]
