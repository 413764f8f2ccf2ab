"""The curator workspace web app: server-rendered pages with plain forms, and a small JSON API.

Every page, form and API call checks that the student belongs to the person asking (a lead may
see and record for everyone); anything else is answered 403 before anything is written.
"""

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from configs.schema import MESSAGES_DIR, parse_yaml
from interventions.messages import fill_message
from interventions.winback import EARLY_WARNING, WIN_BACK
from webapp import auth
from webapp.db import records
from webapp.db.accounts import KIND_API, Account, create_credential, end_credential
from webapp.db.engine import open_workspace_db
from webapp.db.experiment import EFFECT_FILE, arm_counts
from webapp.report import effect_view
from webapp.settings import AppSettings

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
LABELS = HERE / "labels"
LANG_COOKIE = "notalone_lang"


class LoginNeeded(Exception):
    pass


class Forbidden(Exception):
    pass


class NotFound(Exception):
    pass


class BadInput(Exception):
    pass


def load_labels() -> dict[str, dict[str, Any]]:
    """Page labels per language (webapp/labels/<lang>.yaml) plus the scorer's reason groups."""
    labels = {}
    for path in sorted(LABELS.glob("*.yaml")):
        data = parse_yaml(path.read_text(encoding="utf-8"))
        messages = MESSAGES_DIR / path.name
        if messages.is_file():
            scorer = parse_yaml(messages.read_text(encoding="utf-8")) or {}
            data["reason_groups"] = scorer.get("reason_groups") or {}
            data["effect_texts"] = scorer.get("effect") or {}  # the hold-out's verdicts etc.
            data["decimal_separator"] = scorer.get("decimal_separator", ".")
        labels[path.stem] = data
    return labels


def card_anchor(student_id: str, course_id: str) -> str:
    """An HTML id for a student's card (forms return to it)."""
    raw = f"{student_id}-{course_id}"
    return "card-" + re.sub(r"[^A-Za-z0-9_-]", "_", raw)


# ------------------------------------------------------------------------------ API models


class ContactIn(BaseModel):
    student_id: str
    course_id: str
    week: str | None = Field(None, description="As-of date of the list (default: latest listing)")
    channel: str
    outcome: str | None = None
    message: str = ""
    ts: datetime | None = Field(None, description="When the contact happened (default: now)")


class OutcomeIn(BaseModel):
    outcome: str


class VerdictIn(BaseModel):
    student_id: str
    course_id: str
    week: str | None = None
    verdict: str
    reason: str = ""


class FeedbackIn(BaseModel):
    student_id: str
    course_id: str
    week: str | None = None
    answer: str


class Written(BaseModel):
    id: int


def create_app(settings: AppSettings) -> FastAPI:
    """The app on the workspace database of `settings` (migrated on start)."""
    engine = open_workspace_db(settings.db_url, settings.home)
    secret = settings.signing_key()
    config = settings.config
    wa = config.workspace_app
    labels = load_labels()
    default_lang = wa.language or config.scoring.language
    if default_lang not in labels:
        default_lang = "en"
    invite_age = timedelta(hours=wa.invite_expiry_hours)
    session_life = timedelta(days=wa.session_days)
    token_life = timedelta(days=wa.api_token_days) if wa.api_token_days else None
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.trim_blocks = True
    templates.env.lstrip_blocks = True
    bearer = HTTPBearer(auto_error=False, description="Personal API token (`notalone app token`)")

    app = FastAPI(
        title="notalone curator workspace",
        description="Reads and writes of the curator workspace for a school's CRM or bot.",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.engine = engine
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    # ---------------------------------------------------------------------- helpers

    def language(request: Request) -> str:
        lang = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
        return lang if lang in labels else default_lang

    def render(
        request: Request,
        name: str,
        context: dict[str, Any],
        status: int = 200,
        account: Account | None = None,
        session: str | None = None,
    ) -> HTMLResponse:
        lang = language(request)
        response = templates.TemplateResponse(
            request,
            name,
            {
                "t": labels[lang],
                "lang": lang,
                "languages": sorted(labels),
                "account": account,
                "csrf": auth.csrf_token(secret, session) if session else "",
                "wa": wa,
                **context,
            },
            status_code=status,
        )
        if request.query_params.get("lang") in labels:
            response.set_cookie(LANG_COOKIE, lang, samesite="lax", max_age=365 * 86400)
        return response

    def is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def error(request: Request, status: int, key: str, detail: str = "") -> Response:
        if is_api(request):
            return JSONResponse({"detail": detail or key}, status_code=status)
        text = labels[language(request)][key]
        return render(request, "message.html", {"text": text, "detail": detail}, status=status)

    @app.exception_handler(LoginNeeded)
    async def _login(request: Request, exc: LoginNeeded):
        return error(request, 401, "login_needed", "a valid session or API token is needed")

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden):
        return error(request, 403, "forbidden", str(exc) or "forbidden")

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound):
        return error(request, 404, "no_weeks", str(exc))

    @app.exception_handler(BadInput)
    async def _bad(request: Request, exc: BadInput):
        return error(request, 422, "bad_request", str(exc))

    def page_session(request: Request) -> tuple[Account, str]:
        raw = request.cookies.get(auth.SESSION_COOKIE)
        account = auth.session_account(engine, raw)
        if account is None:
            raise LoginNeeded
        return account, raw

    def form_session(
        request: Request, csrf_token: Annotated[str, Form()] = ""
    ) -> tuple[Account, str]:
        account, raw = page_session(request)
        if not auth.csrf_ok(secret, raw, csrf_token):
            raise Forbidden("missing or wrong CSRF token")
        return account, raw

    def api_user(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Account:
        if credentials is None:
            raise LoginNeeded
        account = auth.api_account(engine, f"Bearer {credentials.credentials}")
        if account is None:
            raise LoginNeeded
        return account

    def week_or_404(week: str | None) -> records.WeekRef:
        try:
            found = records.get_week(engine, week)
        except ValueError as exc:
            raise BadInput(f"week {week!r} is not a date") from exc
        if found is None:
            raise NotFound(f"no published week {week}" if week else "no published week")
        return found

    def owned_entry(
        account: Account, student_id: str, course_id: str, week_id: int | None
    ) -> records.EntryRef:
        """The enrolment's list entry when it belongs to `account` (a lead: any); else 403.
        An unknown student is also 403 for a curator, so ids of others cannot be probed."""
        entry = records.find_entry(engine, student_id, course_id, week_id)
        if entry is None:
            if account.is_lead:
                raise NotFound(f"{student_id}/{course_id} is on no published list")
            raise Forbidden("not one of your students")
        if not account.is_lead and entry.curator_id != account.person_id:
            raise Forbidden("not one of your students")
        return entry

    def owned_contact(account: Account, contact_id: int) -> records.EntryRef:
        owner = records.contact_owner(engine, contact_id)
        if owner is None or (not account.is_lead and owner.curator_id != account.person_id):
            if owner is None and account.is_lead:
                raise NotFound(f"no contact {contact_id}")
            raise Forbidden("not one of your students")
        return owner

    def whose_list(account: Account, curator: str | None) -> str | None:
        if account.is_lead:
            return curator
        if curator not in (None, "", account.person_id):
            raise Forbidden("not your list")
        return account.person_id

    def check_word(kind: str, value: str | None, allowed: list[str], optional=False) -> None:
        if optional and not value:
            return
        if value not in allowed:
            raise BadInput(f"{kind} {value!r} is not one of {', '.join(allowed)}")

    def cut(text: str) -> str:
        return (text or "").strip()[: wa.max_text_chars]

    def check_verdict(verdict: str, reason: str) -> None:
        check_word("verdict", verdict, wa.verdicts)
        if verdict == wa.wrong_verdict and not reason.strip():
            raise BadInput(f"a verdict {verdict!r} needs a reason")

    def week_id_of(week: str | None) -> int | None:
        return week_or_404(week).week_id if week else None

    def question(lang: str) -> str:
        return wa.feedback_question.get(lang) or next(iter(wa.feedback_question.values()), "")

    def card_view(card: records.Card, week_id: int) -> dict[str, Any]:
        entry = card.entry
        earlier = [c for c in card.contacts if c["week_id"] != week_id]
        return {
            **entry,
            "anchor": card_anchor(entry["student_id"], entry["course_id"]),
            "reason_list": [r for r in (entry["reasons"] or "").split("; ") if r],
            "message_filled": fill_message(entry["message"], entry["display_name"]),
            "contacts": card.contacts[: wa.card_history],
            "older_contacts": max(0, len(card.contacts) - wa.card_history),
            "verdict": card.verdict,
            "answers": card.answers,
            "no_reply_before": bool(earlier) and earlier[0]["outcome"] in wa.no_reply_outcomes,
            "contacted_this_week": any(c["week_id"] == week_id for c in card.contacts),
        }

    def back_to(week: records.WeekRef, curator_id: str, anchor: str = "") -> RedirectResponse:
        url = f"/week?week={week.as_of.date().isoformat()}&curator={curator_id}"
        return RedirectResponse(url + (f"#{anchor}" if anchor else ""), status_code=303)

    def week_by_id(week_id: int) -> records.WeekRef:
        for w in records.list_weeks(engine):
            if w.week_id == week_id:
                return w
        raise NotFound(f"no week {week_id}")

    # ---------------------------------------------------------------------- pages

    @app.get("/", include_in_schema=False)
    def home(request: Request):
        account = auth.session_account(engine, request.cookies.get(auth.SESSION_COOKIE))
        if account is None:
            raise LoginNeeded
        return RedirectResponse("/lead" if account.is_lead else "/week", status_code=303)

    @app.get("/invite/{token}", include_in_schema=False)
    def invite_page(request: Request, token: str):
        # GET only shows a button: link previews in messengers must not use up the link.
        if not auth.invite_is_signed(secret, token, invite_age):
            return render(
                request, "message.html", {"text": labels[language(request)]["invite_refused"]}, 403
            )
        return render(request, "invite.html", {"token": token})

    @app.post("/invite/{token}", include_in_schema=False)
    def invite_redeem(request: Request, token: str):
        redeemed = auth.redeem_invite(engine, secret, token, invite_age, session_life)
        if redeemed is None:
            text = labels[language(request)]["invite_refused"]
            return render(request, "message.html", {"text": text}, 403)
        account, session = redeemed
        response = RedirectResponse("/lead" if account.is_lead else "/week", status_code=303)
        response.set_cookie(
            auth.SESSION_COOKIE,
            session,
            max_age=int(session_life.total_seconds()),
            httponly=True,
            samesite="lax",
            secure=wa.cookie_secure,
        )
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(who: Annotated[tuple[Account, str], Depends(form_session)]):
        end_credential(engine, who[1])
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(auth.SESSION_COOKIE)
        return response

    @app.get("/week", response_class=HTMLResponse, include_in_schema=False)
    def curator_page(
        request: Request,
        who: Annotated[tuple[Account, str], Depends(page_session)],
        week: str | None = None,
        curator: str | None = None,
        show: str | None = None,
    ):
        account, session = who
        curator_id = whose_list(account, curator)
        if curator_id is None:
            return RedirectResponse("/lead", status_code=303)
        weeks = records.list_weeks(engine)
        if not weeks:
            return render(
                request,
                "message.html",
                {"text": labels[language(request)]["no_weeks"]},
                account=account,
                session=session,
            )
        current = week_or_404(week)
        cards = [
            card_view(c, current.week_id)
            for c in records.curator_cards(engine, current.week_id, curator_id)
        ]
        no_reply = [c for c in cards if c["no_reply_before"]]
        shown = no_reply if show == "no_reply" else cards
        # Win-back cards come after the early-warning ones, under their own heading.
        win_back = [c for c in shown if c["section"] == WIN_BACK]
        early = [c for c in shown if c["section"] != WIN_BACK]
        return render(
            request,
            "week.html",
            {
                "week": current,
                "weeks": weeks,
                "curator_id": curator_id,
                "cards": shown,
                "sections": [
                    (n, cs) for n, cs in ((EARLY_WARNING, early), (WIN_BACK, win_back)) if cs
                ],
                "win_back_count": sum(c["section"] == WIN_BACK for c in cards),
                "all_count": len(cards),
                "no_reply": no_reply,
                "show": show,
                "question": question(language(request)),
            },
            account=account,
            session=session,
        )

    @app.post("/contacts", include_in_schema=False)
    def post_contact(
        who: Annotated[tuple[Account, str], Depends(form_session)],
        week_id: Annotated[int, Form()],
        student_id: Annotated[str, Form()],
        course_id: Annotated[str, Form()],
        channel: Annotated[str, Form()],
        outcome: Annotated[str, Form()] = "",
        message: Annotated[str, Form()] = "",
    ):
        account = who[0]
        entry = owned_entry(account, student_id, course_id, week_id)
        check_word("channel", channel, wa.channels)
        check_word("outcome", outcome, wa.outcomes, optional=True)
        records.record_contact(
            engine,
            entry,
            recorded_by=account.person_id,
            channel=channel,
            outcome=outcome or None,
            message=cut(message),
        )
        return back_to(week_by_id(week_id), entry.curator_id, card_anchor(student_id, course_id))

    @app.post("/outcomes", include_in_schema=False)
    def post_outcome(
        who: Annotated[tuple[Account, str], Depends(form_session)],
        contact_id: Annotated[int, Form()],
        outcome: Annotated[str, Form()],
        week_id: Annotated[int, Form()],
    ):
        account = who[0]
        owner = owned_contact(account, contact_id)
        check_word("outcome", outcome, wa.outcomes)
        week = week_by_id(week_id)  # the page to return to: checked before anything is written
        records.record_outcome(engine, contact_id, outcome, recorded_by=account.person_id)
        return back_to(week, owner.curator_id, card_anchor(owner.student_id, owner.course_id))

    @app.post("/verdicts", include_in_schema=False)
    def post_verdict(
        who: Annotated[tuple[Account, str], Depends(form_session)],
        week_id: Annotated[int, Form()],
        student_id: Annotated[str, Form()],
        course_id: Annotated[str, Form()],
        verdict: Annotated[str, Form()],
        reason: Annotated[str, Form()] = "",
    ):
        account = who[0]
        entry = owned_entry(account, student_id, course_id, week_id)
        check_verdict(verdict, reason)
        records.record_verdict(
            engine, entry, verdict, recorded_by=account.person_id, reason=cut(reason)
        )
        return back_to(week_by_id(week_id), entry.curator_id, card_anchor(student_id, course_id))

    @app.post("/feedback", include_in_schema=False)
    def post_feedback(
        request: Request,
        who: Annotated[tuple[Account, str], Depends(form_session)],
        week_id: Annotated[int, Form()],
        student_id: Annotated[str, Form()],
        course_id: Annotated[str, Form()],
        answer: Annotated[str, Form()],
    ):
        account = who[0]
        entry = owned_entry(account, student_id, course_id, week_id)
        if not answer.strip():
            raise BadInput("the answer is empty")
        records.record_feedback(
            engine,
            entry,
            cut(answer),
            question=question(language(request)),
            recorded_by=account.person_id,
        )
        return back_to(week_by_id(week_id), entry.curator_id, card_anchor(student_id, course_id))

    @app.post("/tokens", response_class=HTMLResponse, include_in_schema=False)
    def post_token(request: Request, who: Annotated[tuple[Account, str], Depends(form_session)]):
        account, session = who
        token = create_credential(engine, account.person_id, KIND_API, token_life, "web")
        return render(request, "token.html", {"token": token}, account=account, session=session)

    def effect_of_holdout(as_of: datetime, lang: str) -> dict[str, Any]:
        """The hold-out's arms at the week shown and the latest `notalone effect` result (None
        before one), in the page's language."""
        path = Path(settings.home) / EFFECT_FILE
        latest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        t = labels[lang]
        view = effect_view(
            latest,
            t.get("effect_texts") or {},
            settings.config.experiment.confidence,
            t.get("decimal_separator", "."),
        )
        return {"arms": arm_counts(engine, as_of), "latest": latest, "view": view}

    @app.get("/lead", response_class=HTMLResponse, include_in_schema=False)
    def lead_page(
        request: Request,
        who: Annotated[tuple[Account, str], Depends(page_session)],
        week: str | None = None,
        curator: str | None = None,
    ):
        account, session = who
        if not account.is_lead:
            raise Forbidden("the lead's page is for leads")
        weeks = records.list_weeks(engine)
        if not weeks:
            return render(
                request,
                "message.html",
                {"text": labels[language(request)]["no_weeks"]},
                account=account,
                session=session,
            )
        current = week_or_404(week)
        summary = records.lead_summary(
            engine, current, curator or None, wrong_verdict=wa.wrong_verdict
        )
        return render(
            request,
            "lead.html",
            {
                "week": current,
                "weeks": weeks,
                "curators": records.curators_of_week(engine, current.week_id),
                "curator_id": curator or "",
                "s": summary,
                "effect": effect_of_holdout(current.as_of, language(request)),  # issue 15
            },
            account=account,
            session=session,
        )

    # ---------------------------------------------------------------------- JSON API

    def card_json(card: records.Card, week_id: int) -> dict[str, Any]:
        view = card_view(card, week_id)
        view.pop("anchor")
        view.pop("reason_list")
        return view

    @app.get("/api/v1/me", tags=["api"])
    def api_me(account: Annotated[Account, Depends(api_user)]) -> dict[str, Any]:
        """Who the token belongs to."""
        return {"person_id": account.person_id, "role": account.role}

    @app.get("/api/v1/weeks", tags=["api"])
    def api_weeks(account: Annotated[Account, Depends(api_user)]) -> list[dict[str, Any]]:
        """Published weeks, newest first."""
        return [
            {"week": w.as_of.date().isoformat(), "as_of": w.as_of, "published_at": w.published_at}
            for w in records.list_weeks(engine)
        ]

    @app.get("/api/v1/list", tags=["api"])
    def api_list(
        account: Annotated[Account, Depends(api_user)],
        week: Annotated[str | None, Query(description="As-of date (default: latest)")] = None,
        curator: Annotated[str | None, Query(description="A lead's choice of curator")] = None,
    ) -> list[dict[str, Any]]:
        """A curator's list of the week, each student with their history: early warning in rank
        order, then win-back in its own (`section`)."""
        curator_id = whose_list(account, curator)
        if curator_id is None:
            raise BadInput("a lead gives ?curator=ID")
        current = week_or_404(week)
        return [
            card_json(c, current.week_id)
            for c in records.curator_cards(engine, current.week_id, curator_id)
        ]

    @app.get("/api/v1/students/{student_id}/{course_id}", tags=["api"])
    def api_student(
        account: Annotated[Account, Depends(api_user)],
        student_id: str,
        course_id: str,
        week: str | None = None,
    ) -> dict[str, Any]:
        """One student's card (latest listing, or the given week's)."""
        entry = owned_entry(account, student_id, course_id, week_id_of(week))
        cards = records.curator_cards(engine, entry.week_id, entry.curator_id)
        for card in cards:
            if (card.entry["student_id"], card.entry["course_id"]) == (student_id, course_id):
                return card_json(card, entry.week_id)
        raise NotFound(f"{student_id}/{course_id}")

    @app.post("/api/v1/contacts", tags=["api"], status_code=201)
    def api_contact(account: Annotated[Account, Depends(api_user)], body: ContactIn) -> Written:
        """Record a contact (channel, message as sent, optional outcome)."""
        entry = owned_entry(account, body.student_id, body.course_id, week_id_of(body.week))
        check_word("channel", body.channel, wa.channels)
        check_word("outcome", body.outcome, wa.outcomes, optional=True)
        contact_id = records.record_contact(
            engine,
            entry,
            recorded_by=account.person_id,
            channel=body.channel,
            outcome=body.outcome or None,
            message=cut(body.message),
            ts=body.ts,
            via="api",
        )
        return Written(id=contact_id)

    @app.post("/api/v1/contacts/{contact_id}/outcomes", tags=["api"], status_code=201)
    def api_outcome(
        account: Annotated[Account, Depends(api_user)], contact_id: int, body: OutcomeIn
    ) -> Written:
        """A later outcome of a recorded contact."""
        owned_contact(account, contact_id)
        check_word("outcome", body.outcome, wa.outcomes)
        return Written(
            id=records.record_outcome(
                engine, contact_id, body.outcome, recorded_by=account.person_id
            )
        )

    @app.post("/api/v1/verdicts", tags=["api"], status_code=201)
    def api_verdict(account: Annotated[Account, Depends(api_user)], body: VerdictIn) -> Written:
        """The curator's verdict on the flag."""
        entry = owned_entry(account, body.student_id, body.course_id, week_id_of(body.week))
        check_verdict(body.verdict, body.reason)
        return Written(
            id=records.record_verdict(
                engine, entry, body.verdict, recorded_by=account.person_id, reason=cut(body.reason)
            )
        )

    @app.post("/api/v1/feedback", tags=["api"], status_code=201)
    def api_feedback(
        request: Request, account: Annotated[Account, Depends(api_user)], body: FeedbackIn
    ) -> Written:
        """The student's answer to the feedback question."""
        entry = owned_entry(account, body.student_id, body.course_id, week_id_of(body.week))
        if not body.answer.strip():
            raise BadInput("the answer is empty")
        return Written(
            id=records.record_feedback(
                engine,
                entry,
                cut(body.answer),
                question=question(language(request)),
                recorded_by=account.person_id,
            )
        )

    @app.get("/api/v1/lead/summary", tags=["api"])
    def api_lead(
        account: Annotated[Account, Depends(api_user)],
        week: str | None = None,
        curator: str | None = None,
    ) -> dict[str, Any]:
        """The lead's figures of a week (leads only)."""
        if not account.is_lead:
            raise Forbidden("leads only")
        summary = records.lead_summary(
            engine, week_or_404(week), curator or None, wrong_verdict=wa.wrong_verdict
        )
        out = dict(summary.__dict__)
        out["week"] = summary.week.as_of.date().isoformat()
        return out

    return app
