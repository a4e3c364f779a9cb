"""Token usage and cost: the price table, the sums over stored runs, and /usage through the console."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.assistants import load_assistants
from core.errors import ConfigError
from core.feedback import FeedbackCounts, feedback_lines
from core.store.store import Store
from core.store.usage import UsageStore
from core.usage import (
    DEFAULT_PRICES,
    ModelUsage,
    Price,
    all_channels_report,
    channel_report,
    cost,
    format_cost,
    format_money,
    format_tokens,
    period_starts,
)
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.test_console import console_env, run_console

PRICES = {"m-a": Price(1.0, 2.0, "USD"), "m-eur": Price(10.0, 10.0, "EUR")}


def _utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


# -- pure logic ----------------------------------------------------------------------------------


def test_cost_is_tokens_times_price_per_model_and_never_guessed() -> None:
    usage = [ModelUsage("m-a", 3_000_000, 1_000_000), ModelUsage("m-eur", 500_000, 0), ModelUsage("mystery", 10, 5)]
    value = cost(usage, PRICES)
    assert value.amounts == {"USD": pytest.approx(5.0), "EUR": pytest.approx(5.0)}
    assert value.unpriced == ("mystery",)
    assert format_cost(value) == "€5.00; $5.00; no price set for mystery"
    assert format_cost(cost([ModelUsage("mystery", 0, 0)], PRICES)) == "$0.00"  # no tokens: nothing to price


def test_default_price_is_the_default_models_list_price() -> None:
    assert DEFAULT_PRICES["gpt-5.4-mini"] == Price(0.75, 4.50, "USD")
    value = cost([ModelUsage("gpt-5.4-mini", 1_000_000, 1_000_000)], DEFAULT_PRICES)
    assert value.amounts["USD"] == pytest.approx(5.25)


def test_money_and_tokens_are_formatted_for_people() -> None:
    assert format_money(1234.5, "USD") == "$1,234.50"
    assert format_money(0.5, "USD") == "$0.50"
    assert format_money(0.0042, "USD") == "$0.0042"  # small, but not rounded away
    assert format_money(0.000039, "USD") == "$0.000039"
    assert format_money(0, "GBP") == "£0.00"
    assert format_money(3, "CHF") == "3.00 CHF"
    assert format_tokens(1) == "1 token"
    assert format_tokens(1_234_567) == "1,234,567 tokens"


def test_periods_are_utc_day_and_month() -> None:
    assert period_starts(_utc(2026, 3, 15, 12, 30)) == (_utc(2026, 3, 15), _utc(2026, 3, 1))
    assert period_starts(_utc(2026, 3, 1, 0, 0, 1)) == (_utc(2026, 3, 1), _utc(2026, 3, 1))


def test_prices_in_the_assistants_file_add_to_and_override_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(
        '[prices."gpt-5.4-mini"]\ninput_per_million = 0.5\noutput_per_million = 4\n'
        '[prices."local-llama"]\ninput_per_million = 0\noutput_per_million = 0\ncurrency = "EUR"\n'
    )
    prices = load_assistants(path, default_model="gpt-5.4-mini").prices
    assert prices == {"gpt-5.4-mini": Price(0.5, 4.0, "USD"), "local-llama": Price(0.0, 0.0, "EUR")}
    assert load_assistants(None, default_model="x").prices == DEFAULT_PRICES


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('prices = "cheap"', "'prices' must be a table"),
        ('[prices."m"]\ninput_per_million = 1', "[prices.\"m\"]: key 'output_per_million' is required"),
        ('[prices."m"]\ninput_per_million = -1\noutput_per_million = 1', "key 'input_per_million' must be a number"),
        ('[prices."m"]\ninput_per_million = "1"\noutput_per_million = 1', "key 'input_per_million' must be a number"),
        ('[prices."m"]\ninput_per_million = 1\noutput_per_million = 1\ncurrency = "usd"', "three-letter code"),
        ('[prices."m"]\ninput_per_million = 1\noutput_per_million = 1\nper = 1', "unknown key 'per'"),
    ],
)
def test_a_bad_price_names_the_file_the_key_and_the_problem(tmp_path: Path, body: str, problem: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(body + "\n")
    with pytest.raises(ConfigError) as caught:
        load_assistants(path, default_model="gpt-5.4-mini")
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


# -- sums over stored runs, at fixed times -------------------------------------------------------

NOW = _utc(2026, 3, 15, 12, 0)
HERE, THERE = "slack:T1:C1", "slack:T1:C2"


async def _run(store: Store, channel: str, author: str, model: str, created: float, tokens: tuple[int, int]) -> None:
    """A finished run as the service leaves it: trigger message by ``author``, model and usage set."""
    posted = await store.post_user_message(
        channel=channel,
        author_id=f"U_{author}",
        author_name=author,
        text="hi",
        item={"role": "user", "content": "hi"},
        tokens=1,
        platform_msg_id=None,
    )
    assert posted is not None
    run = posted[1]
    await store.update_run(run.id, status="completed", model=model)
    await store.call(lambda db: db.execute("UPDATE runs SET created_at = ? WHERE id = ?", [created, run.id]))
    await store.add_run_usage(run.id, *tokens)


async def test_today_month_and_top_users_split_at_utc_boundaries(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "usage.db")
    try:
        await _run(store, HERE, "alice", "m-a", _utc(2026, 3, 15, 0, 0), (100, 10))  # today, first second
        await _run(store, HERE, "alice", "m-eur", _utc(2026, 3, 15, 11), (1000, 0))  # today
        await _run(store, HERE, "bob", "m-a", _utc(2026, 3, 14, 23, 59, 59), (5000, 500))  # this month, not today
        await _run(store, HERE, "carol", "mystery", _utc(2026, 3, 1), (7, 3))  # the month's first second
        await _run(store, HERE, "dave", "m-a", _utc(2026, 2, 28, 23, 59, 59), (9_000_000, 0))  # last month
        await _run(store, THERE, "erin", "m-a", _utc(2026, 3, 2), (1_000_000, 1_000_000))  # another channel
        usage = UsageStore(store)
        day, month = period_starts(NOW)

        today = await usage.by_model(day, channel=HERE)
        assert today == [ModelUsage("m-a", 100, 10, 1), ModelUsage("m-eur", 1000, 0, 1)]
        this_month = await usage.by_model(month, channel=HERE)
        assert this_month == [
            ModelUsage("m-a", 5100, 510, 2),
            ModelUsage("m-eur", 1000, 0, 1),
            ModelUsage("mystery", 7, 3, 1),
        ]
        assert await usage.by_model(month, author_id="U_alice") == today  # budgets: one person's sums

        users = await usage.top_users(HERE, month, limit=2)
        assert [(u.author_name, u.total) for u in users] == [("bob", 5500), ("alice", 1110)]
        assert len(await usage.top_users(HERE, month)) == 3  # dave's tokens were last month

        channels = {c.channel: c.total for c in await usage.channels(month)}
        assert channels == {HERE: 5100 + 510 + 1000 + 10, THERE: 2_000_000}

        report = channel_report(HERE, today, this_month, users, PRICES)
        assert "Today: 1,110 tokens (1,100 in, 10 out) in 2 runs, €0.01; $0.00012" in report
        # m-a: 5100 × $1/M + 510 × $2/M = $0.00612; m-eur: 1000 × €10/M = €0.01; mystery is not priced
        assert "This month: 6,620 tokens (6,107 in, 513 out) in 4 runs, €0.01; $0.0061; no price set for mystery" in (
            report
        )
        assert "1. bob: 5,500 tokens, $0.006" in report
        assert "2. alice: 1,110 tokens, €0.01; $0.00012" in report

        everything = all_channels_report(await usage.channels(month), PRICES)
        assert everything.splitlines()[1] == f"- {THERE}: 2,000,000 tokens, $3.00"
        assert f"- {HERE}: 6,620 tokens" in everything
    finally:
        await store.close()


# -- /usage through the console, after real runs -------------------------------------------------


async def test_usage_in_the_console_matches_the_stored_runs(tmp_path: Path) -> None:
    """Two runs on the default model, priced at its built-in list price: 800k in, 200k out → $1.50."""
    db = tmp_path / "console.db"
    now = datetime.now(UTC).timestamp()
    store = await Store.open(db)
    try:  # older and elsewhere: last month's run here must not count; another channel's shows in /usage all
        await _run(store, "console:local:default", "old", "gpt-5.4-mini", period_starts(now)[1] - 1, (10**6, 10**6))
        await _run(store, "slack:T1:C9", "erin", "other-model", now - 5, (30, 12))
    finally:
        await store.close()

    async with FakeOpenAI(lambda req: Reply("ok", prompt_tokens=400_000, completion_tokens=100_000)) as fake:
        env = console_env(tmp_path, OPENAI_BASE_URL=fake.base_url, LOGNAME="carol", USER="carol")
        code, out, err = await run_console(env, "hello\nagain\n/usage\n/usage all\n/usage sometimes\n", tmp_path)
    assert code == 0, err

    store = await Store.open(db)
    try:  # what the runs stored is what /usage reports
        stored = await UsageStore(store).by_model(period_starts(now)[0], channel="console:local:default")
    finally:
        await store.close()
    assert stored == [ModelUsage("gpt-5.4-mini", 800_000, 200_000, 2)], out + err

    line = "1,000,000 tokens (800,000 in, 200,000 out) in 2 runs, $1.50"
    assert f"Today: {line}" in out
    assert f"This month: {line}" in out
    assert "Top users this month:\n1. carol: 1,000,000 tokens, $1.50" in out
    assert "old:" not in out
    assert "This month (UTC), 2 channels: 1,000,042 tokens, $1.50; no price set for other-model" in out
    assert "- console:local:default: 1,000,000 tokens, $1.50\n" in out
    assert "- slack:T1:C9: 42 tokens, no price set for other-model" in out
    assert "/usage takes nothing or 'all'" in out
    assert "Traceback" not in err


def test_feedback_on_answers_is_a_line_of_the_report_once_someone_voted() -> None:
    nobody = FeedbackCounts()
    assert feedback_lines(nobody, nobody) == []
    lines = feedback_lines(FeedbackCounts(up=1), FeedbackCounts(up=3, down=2))
    assert lines == ["Feedback on answers: today 1 helpful, 0 not helpful; this month 3 helpful, 2 not helpful."]
    report = channel_report("slack:T1:C1", [], [], [], {}, lines)
    assert report.splitlines()[3] == lines[0]  # after today and this month, before the top users
