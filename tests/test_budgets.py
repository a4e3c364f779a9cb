"""Budgets: limits, reservations racing a limit, the 80% notice once, refusal before the model is called,
and /budget — in the core with concurrent runs, and through the console."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.assistants import load_assistants
from core.budgets import BudgetConfig, Limit, parse_limit, period_bounds, person_key
from core.errors import ConfigError
from core.events import RunCompleted, RunFailed
from core.models import Author, Incoming
from core.settings import Settings
from core.store.budgets import BudgetStore, Subjects
from core.store.processes import ProcessStore
from core.store.store import Store
from core.store.usage import UsageStore
from core.usage import ModelUsage
from tests.conftest import ServiceFactory
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.helpers import channel_in_old_schema, collect
from tests.test_console import console_env, run_console
from tests.test_context import SUMMARY_MARK, _history_row


def _utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


# -- pure logic ----------------------------------------------------------------------------------


def test_limits_are_tokens_or_money() -> None:
    assert parse_limit("200000 tokens") == Limit(200_000, "tokens")
    assert parse_limit("200k tokens") == Limit(200_000, "tokens")
    assert parse_limit("1.5M tokens") == Limit(1_500_000, "tokens")
    assert parse_limit("5 usd") == Limit(5.0, "USD")
    assert parse_limit("4.50 EUR").describe() == "€4.50"
    assert parse_limit("2k tokens").describe(1234) == "1,234 tokens"
    for bad in ("lots", "5", "5k USD", "5 dollars", "-3 tokens"):
        with pytest.raises(ValueError, match=r"limit|tokens|unit"):
            parse_limit(bad)


def test_periods_are_utc_days_and_months_across_a_year_end() -> None:
    assert period_bounds("day", _utc(2026, 12, 31, 23, 59)) == (_utc(2026, 12, 31), _utc(2027, 1, 1))
    assert period_bounds("month", _utc(2026, 12, 31, 23, 59)) == (_utc(2026, 12, 1), _utc(2027, 1, 1))
    assert period_bounds("month", _utc(2026, 2, 1)) == (_utc(2026, 2, 1), _utc(2026, 3, 1))


def test_a_person_is_named_by_key_or_by_a_mention_on_the_channels_platform() -> None:
    assert person_key("<@U123>", "slack:T1:C1") == "slack:U123"
    assert person_key("<@U123|ann>", "slack:T1:C1") == "slack:U123"
    assert person_key("<@!456>", "discord:9:8") == "discord:456"
    assert person_key("console:ann", "console:local:x") == "console:ann"
    assert person_key("ann", "slack:T1:C1") is None


def test_budgets_in_the_assistants_file(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(
        '[budgets]\nchannel = { day = "5 USD" }\nuser = { month = "2M tokens" }\nreserve_output_tokens = 99\n'
    )
    config = load_assistants(path, default_model="gpt-5.4-mini").budgets
    assert config.default("channel", "day") == Limit(5.0, "USD")
    assert config.default("channel", "month") is None
    assert config.default("user", "month") == Limit(2_000_000, "tokens")
    assert config.reserve_output_tokens == 99
    assert load_assistants(None, default_model="x").budgets == BudgetConfig()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('[budgets]\nchannel = { week = "5 USD" }', "the periods are day and month"),
        ('[budgets]\nchannel = { day = "lots" }', "key 'channel.day': 'lots' is not a limit"),
        ('[budgets]\nteam = { day = "5 USD" }', "unknown key 'team'"),
        ("[budgets]\nreserve_output_tokens = 0", "'reserve_output_tokens' must be a whole number"),
        # the default model has a price in USD only: a limit in EUR could not count it
        ('[budgets]\nchannel = { day = "5 EUR" }', "needs a price in EUR for model 'gpt-5.4-mini'"),
    ],
)
def test_a_bad_budget_names_the_file_the_key_and_the_problem(tmp_path: Path, body: str, problem: str) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text(body + "\n")
    with pytest.raises(ConfigError) as caught:
        load_assistants(path, default_model="gpt-5.4-mini")
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


# -- reservations in the database ----------------------------------------------------------------


async def _queued_run(store: Store, channel: str, person: str) -> str:
    posted = await store.post_user_message(
        channel=channel,
        author_id=person,
        author_name=person,
        text="hi",
        item={"role": "user", "content": "hi"},
        tokens=1,
        platform_msg_id=None,
        actor=f'{{"key": "{person}", "roles": []}}',
    )
    assert posted is not None
    await store.update_run(posted[1].id, model="m")
    return posted[1].id


async def test_reservations_from_two_connections_never_take_more_than_the_limit(tmp_path: Path) -> None:
    """Two stores on one database file (as two bot processes would be): 40 runs race for a 1,000-token
    budget, each reserving 150; exactly 6 fit, and the sum of what was reserved stays within the limit."""
    config = BudgetConfig({"user": {"day": Limit(1000)}})
    first, second = await Store.open(tmp_path / "b.db"), await Store.open(tmp_path / "b.db")
    try:
        runs = [await _queued_run(first, f"slack:T1:C{n}", "slack:U1") for n in range(40)]
        now = (await first.get_run(runs[0])).created_at
        stores = [BudgetStore(s, config, {}) for s in (first, second)]

        async def reserve(n: int) -> bool:
            refused = await stores[n % 2].reserve(
                runs[n],
                Subjects(f"slack:T1:C{n}", "slack:U1"),
                run_started=now,
                expected=ModelUsage("m", 50, 100),
                now=now,
            )
            return refused is None

        admitted = await asyncio.gather(*(reserve(n) for n in range(40)))
        assert sum(admitted) == 6
        held = await first.call(
            lambda db: db.execute("SELECT SUM(input_tokens + output_tokens) FROM budget_holds").fetchone()[0]
        )
        assert held == 900
        # a run that finishes records its usage and gives its reservation back, in one transaction
        winner = runs[admitted.index(True)]
        await first.finish_run(await first.get_run(winner), status="completed", input_tokens=40, output_tokens=10)
        standing = (await stores[0].standings(Subjects("slack:T1:C0", "slack:U1"), now))[0]
        assert standing.used == 750 + 50
    finally:
        await first.close()
        await second.close()


async def test_a_crashed_runs_reservation_is_kept_as_its_usage(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.db")
    try:
        run_id = await _queued_run(store, "slack:T1:C1", "slack:U1")
        run = await store.update_run(run_id, status="in_progress")
        budgets = BudgetStore(store, BudgetConfig({"channel": {"day": Limit(10_000)}}), {})
        subjects = Subjects("slack:T1:C1", "slack:U1")
        expected = ModelUsage("m", 300, 200)
        await budgets.reserve(run_id, subjects, run_started=run.created_at, expected=expected, now=run.created_at)
        # Another process finds the run of the one that crashed, and queues it again to answer it afresh.
        other = await Store.open(tmp_path / "c.db")
        try:
            found = await ProcessStore(other, platforms=None, lease_seconds=15).recover("stopped")
        finally:
            await other.close()
        assert [r.id for r in found.adopted] == [run_id]
        assert (await store.get_run(run_id)).status == "queued"
        assert await UsageStore(store).by_model(0, channel="slack:T1:C1") == [ModelUsage("m", 300, 200, 1)]
        assert await store.call(lambda db: db.execute("SELECT COUNT(*) FROM budget_holds").fetchone()[0]) == 0
        # ... and the next attempt's usage adds to what the cut-off one spent
        await store.finish_run(await store.get_run(run_id), status="completed", input_tokens=10, output_tokens=5)
        assert await UsageStore(store).by_model(0, channel="slack:T1:C1") == [ModelUsage("m", 310, 205, 1)]
    finally:
        await store.close()


# -- in the core, over the scripted model server -------------------------------------------------

BUDGET_ASSISTANTS = """
[budgets]
user = { day = "1000 tokens" }
reserve_output_tokens = 200
"""


async def test_concurrent_runs_racing_a_persons_budget_never_overrun_it(
    tmp_path: Path, fake_model: FakeOpenAI, open_service: ServiceFactory, settings: Settings
) -> None:
    """One person asks in eight channels at once; each answer uses 210 tokens and reserves about 240.

    Without reservations all eight would start (each saw 0 used) and spend 1,680 of 1,000 tokens."""
    fake_model.script = lambda request: Reply("answer", delay=0.3, prompt_tokens=20, completion_tokens=190)
    path = tmp_path / "budgets.toml"
    path.write_text(BUDGET_ASSISTANTS)
    told: list[tuple[str, str]] = []

    async def notify(channel: str, text: str) -> None:
        told.append((channel, text))

    service = await open_service(notify=notify, assistants_file=path)
    ann = Author(id="U_ANN", name="ann", key="slack:U_ANN")
    handles = [await service.post(Incoming(f"slack:T1:C{n}", ann, "hello")) for n in range(8)]
    results = await asyncio.gather(*(collect(h) for h in handles if h is not None))
    answered = [r for r in results if isinstance(r[-1], RunCompleted)]
    refused = [r[-1] for r in results if isinstance(r[-1], RunFailed)]

    assert 1 <= len(answered) <= 4, results
    assert len(answered) + len(refused) == 8
    assert len(fake_model.chat_requests) == len(answered)  # a refused run never reached the model
    for event in refused:
        assert isinstance(event, RunFailed)
        assert "ann has" in event.message
        assert "daily budget" in event.message
        assert "/budget" in event.message
    spent = await UsageStore(service.store).by_model(0)
    assert sum(u.total for u in spent) == 210 * len(answered) <= 1000
    assert len(told) <= 1  # the 80% notice, once, if a run found it past 80%


async def test_the_80_percent_notice_is_given_once_and_a_full_budget_refuses_before_the_model(
    tmp_path: Path, fake_model: FakeOpenAI, open_service: ServiceFactory
) -> None:
    fake_model.script = lambda request: Reply("answer", prompt_tokens=300, completion_tokens=150)
    path = tmp_path / "budgets.toml"
    path.write_text('[budgets]\nchannel = { day = "2000 tokens" }\nreserve_output_tokens = 150\n')
    told: list[tuple[str, str]] = []

    async def notify(channel: str, text: str) -> None:
        told.append((channel, text))

    service = await open_service(notify=notify, assistants_file=path)
    ann = Author(id="U_ANN", name="ann", key="slack:U_ANN")
    channel = "slack:T1:C1"

    async def ask(text: str) -> Any:
        handle = await service.post(Incoming(channel, ann, text))
        assert handle is not None
        return (await collect(handle))[-1]

    outcomes = [await ask(f"question {n}") for n in range(6)]
    # 450 tokens a run: runs 1-4 fit, and the 4th takes the channel to 1,800 of 2,000 (90%): it is told, once.
    # The 5th and 6th would need the 200 left and more (what they send plus 150 for the answer): not sent.
    assert [type(o).__name__ for o in outcomes] == ["RunCompleted"] * 4 + ["RunFailed"] * 2
    assert len(fake_model.chat_requests) == 4
    assert len(told) == 1
    assert told[0][0] == channel
    assert "This channel has used 90% of its daily budget (1,800 tokens of 2,000 tokens)" in told[0][1]
    for refused in outcomes[4:]:
        assert "This channel has 200 tokens left of its daily budget" in refused.message
        assert "it resets at 00:00 UTC, or a manager can raise it with /budget" in refused.message
    run = await service.store.get_run(outcomes[5].run_id)
    assert run.last_error == "channel day budget reached (2,000 tokens)"

    # at 100% a run is refused before it starts (no context is built, no summary made)
    await service.budgets.set_limit("channel", channel, "day", Limit(1800), "slack:U_BOSS")
    refused = await ask("still there?")
    assert "This channel has used its daily budget (1,800 tokens of 1,800 tokens)" in refused.message
    run = await service.store.get_run(refused.run_id)
    assert run.status == "failed"
    assert run.last_error == "budget used up before the run started"
    assert len(fake_model.chat_requests) == 4

    # /metrics counts the refusals: two at their first model call, one before it started
    exposition = (await service.metrics_exposition()).decode()
    refusals = {
        sample.labels["when"]: sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "threadline_budget_refusals"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["scope"] == "channel"
    }
    assert refusals == {"start": 3.0}

    # a manager raises it: the next question is answered
    await service.budgets.set_limit("channel", channel, "day", Limit(10_000), "slack:U_BOSS")
    assert isinstance(await ask("and now?"), RunCompleted)
    assert len(told) == 1  # 2,250 of 10,000: no notice


# -- /budget through the console ----------------------------------------------------------------


async def test_budget_command_in_the_console(tmp_path: Path) -> None:
    assistants = tmp_path / "a.toml"
    assistants.write_text(
        '[budgets]\nchannel = { day = "1000 tokens" }\nuser = { month = "1 USD" }\nreserve_output_tokens = 300\n'
        '[policy]\nmanagers = ["console:boss"]\n'
    )
    script = lambda request: Reply("ok", prompt_tokens=450, completion_tokens=400)  # noqa: E731
    async with FakeOpenAI(script) as fake:
        base = dict(OPENAI_BASE_URL=fake.base_url, THREADLINE_ASSISTANTS=str(assistants))
        env = console_env(tmp_path, LOGNAME="carol", USER="carol", **base)
        code, out, err = await run_console(
            env, "hello\n/budget\n/budget channel day 5k tokens\nagain\nmore\n", tmp_path
        )
        assert code == 0, err
        # the first answer takes the channel to 85%: it is told once, in the console's notice line
        assert out.count("[notice] This channel has used 85% of its daily budget (850 tokens of 1,000 tokens).") == 1
        # carol is not a manager: the limit stays; the next answers need more than the 150 left
        assert "Only this bot's channel managers may change budgets" in out
        assert "- This channel, daily budget: 850 tokens of 1,000 tokens (85%), resets at 00:00 UTC" in out
        assert "- You, monthly budget: $0.0021" in out  # 450 × $0.75/M + 400 × $4.50/M = $0.0021375
        assert "of $1.00 (0%)" in out
        assert out.count("This channel has 150 tokens left of its daily budget") == 2
        assert len(fake.chat_requests) == 1

        env = console_env(tmp_path, LOGNAME="boss", USER="boss", **base)
        code, out, err = await run_console(
            env,
            "/budget channel day 5k tokens\n/budget user console:carol month none\n/budget channel day none\n"
            "/budget channel day default\n/budget user carol day 1 USD\n/budget channel week 1 USD\n"
            "/budget channel day 5 EUR\n",
            tmp_path,
        )
        assert code == 0, err
    assert "This channel's daily budget is now 5,000 tokens." in out
    assert "The monthly budget of console:carol is lifted: no limit until a manager sets one." in out
    assert "This channel's daily budget is the assistants file's again: 1,000 tokens." in out
    assert "Say whose budget" in out  # "carol" is neither a key nor a mention
    assert out.count("Write /budget to see the budgets here") >= 2
    assert "A limit in EUR cannot count gpt-5.4-mini" in out
    assert "Traceback" not in err


async def test_what_runs_spent_before_budgets_existed_counts_from_the_start(tmp_path: Path) -> None:
    """The migration that adds budgets adds up earlier runs by channel, person, day and month."""
    store = await Store.open(tmp_path / "old.db", stop_before="m011_budgets")
    try:
        thread_id = await channel_in_old_schema(store, "slack:T1:C1")
        created = time.time()
        await store.call(  # as that schema stored a run (today's store writes columns it does not have yet)
            lambda db: db.execute(
                "INSERT INTO runs (id, thread_id, channel, assistant, model, status, created_at, actor,"
                " input_tokens, output_tokens, total_tokens)"
                " VALUES ('run_earlier', ?, 'slack:T1:C1', NULL, 'm', 'completed', ?, ?, 300, 30, 330)",
                [thread_id, created, '{"key": "slack:U1", "roles": []}'],
            )
        )
    finally:
        await store.close()
    store = await Store.open(tmp_path / "old.db")
    try:
        config = BudgetConfig({"channel": {"month": Limit(1000)}, "user": {"day": Limit(1000)}})
        standings = await BudgetStore(store, config, {}).standings(Subjects("slack:T1:C1", "slack:U1"), created)
        assert [(s.budget.scope, s.budget.period, s.used) for s in standings] == [
            ("channel", "month", 330),
            ("user", "day", 330),
        ]
        # and from now on the trigger keeps the sums: a second run of the same person elsewhere
        later = await _queued_run(store, "slack:T1:C2", "slack:U1")
        await store.add_run_usage(later, 100, 20)
        standings = await BudgetStore(store, config, {}).standings(Subjects("slack:T1:C2", "slack:U1"), created)
        assert [(s.budget.scope, s.used) for s in standings] == [("channel", 120), ("user", 450)]
    finally:
        await store.close()


async def test_a_summary_call_does_not_hide_the_first_model_call_from_the_budget(
    tmp_path: Path, fake_model: FakeOpenAI, open_service: ServiceFactory
) -> None:
    """The summary's 2,900 tokens are the run's usage; its first chat call must still reserve what it sends on
    top of them (the 2,100 left cannot hold a window of over 1,000 tokens plus 1,000 for the answer)."""

    def script(request: dict[str, Any]) -> Reply:
        if request["messages"][0]["content"].startswith(SUMMARY_MARK):
            return Reply("SUMMARY", prompt_tokens=2_500, completion_tokens=400)
        return Reply("answer", prompt_tokens=2_000, completion_tokens=100)

    fake_model.script = script
    path = tmp_path / "budgets.toml"
    path.write_text(
        'default = "small"\n[[assistants]]\nname = "small"\ninstructions = "Help."\ncontext_tokens = 4000\n'
        '[budgets]\nchannel = { day = "5000 tokens" }\nreserve_output_tokens = 1000\n'
    )
    service = await open_service(assistants_file=path)
    channel = "console:local:test"
    thread = await service.store.current_thread(channel)
    await service.store.import_messages(thread, channel, [_history_row(n) for n in range(1_000)])

    handle = await service.post(Incoming(channel, Author(id="U1", name="ann", key="console:ann"), "so?"))
    assert handle is not None
    outcome = (await collect(handle))[-1]
    assert isinstance(outcome, RunFailed), outcome
    assert "This channel has 2,100 tokens left of its daily budget" in outcome.message
    assert [r["messages"][0]["content"].startswith(SUMMARY_MARK) for r in fake_model.chat_requests] == [True]
