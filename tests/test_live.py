"""LiveText: the first words at once, throttled edits, the rest at once on finish, long answers split."""

from __future__ import annotations

import asyncio

from bots.live import EditBudget, LiveText


class Sink:
    """Records posts and edits; ``fail`` makes the next call raise."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.calls: list[tuple[str, int, str]] = []
        self.fail = 0
        self.attempts = 0
        self.changed = asyncio.Event()

    async def post(self, text: str) -> int:
        self._maybe_fail()
        self.shown.append(text)
        self.calls.append(("post", len(self.shown) - 1, text))
        self.changed.set()
        return len(self.shown) - 1

    async def edit(self, message: int, text: str) -> None:
        self._maybe_fail()
        self.shown[message] = text
        self.calls.append(("edit", message, text))
        self.changed.set()

    def _maybe_fail(self) -> None:
        self.attempts += 1
        self.changed.set()
        if self.fail:
            self.fail -= 1
            raise RuntimeError("platform said no")

    async def wait(self, predicate: object) -> None:
        async with asyncio.timeout(5):
            while not predicate():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()


async def test_first_words_are_posted_at_once_and_the_rest_waits_for_the_edit_clock() -> None:
    sink = Sink()
    live: LiveText[int] = LiveText(sink, limit=2000, interval=30.0)
    live.append("Hello")
    await sink.wait(lambda: sink.shown == ["Hello"])
    live.append(" world")
    live.append(", again")
    await asyncio.sleep(0.05)  # a flush would need 30 s; nothing more goes out meanwhile
    assert sink.calls == [("post", 0, "Hello")]
    shown = await live.finish()  # the end never waits out the clock
    assert shown == [0]
    assert sink.calls[-1] == ("edit", 0, "Hello world, again")
    await live.close()


async def test_edits_follow_the_interval_while_text_streams() -> None:
    sink = Sink()
    live: LiveText[int] = LiveText(sink, limit=2000, interval=0.05)
    for word in ["one", " two", " three"]:
        live.append(word)
        await sink.wait(lambda w=word: bool(sink.shown) and sink.shown[0].endswith(w))
    await live.finish()
    await live.close()
    assert sink.shown == ["one two three"]
    assert [kind for kind, _, _ in sink.calls] == ["post", "edit", "edit"]


async def test_a_long_answer_goes_on_in_new_messages_without_breaking_code() -> None:
    sink = Sink()
    live: LiveText[int] = LiveText(sink, limit=100, interval=30.0)
    code = "```python\n" + "\n".join(f"print({i})" for i in range(30)) + "\n```"
    live.append("Here is the script:\n\n" + code)
    await live.finish()
    await live.close()
    assert len(sink.shown) > 1
    assert all(len(piece) <= 100 for piece in sink.shown)
    assert all(piece.count("```") % 2 == 0 for piece in sink.shown)  # every piece closes what it opens
    joined = "\n".join(sink.shown)
    assert all(f"print({i})" in joined for i in range(30))


async def test_a_failed_edit_is_retried_and_nothing_is_lost() -> None:
    sink = Sink()
    live: LiveText[int] = LiveText(sink, limit=2000, interval=0.01)
    sink.fail = 1
    live.append("first")  # the post fails; the flusher logs it and waits for more text
    await sink.wait(lambda: sink.attempts == 1)
    assert sink.shown == []
    live.append(" second")
    await sink.wait(lambda: sink.shown == ["first second"])
    await live.finish()
    await live.close()


async def test_finish_starts_a_new_part_and_blank_text_is_never_posted() -> None:
    sink = Sink()
    live: LiveText[int] = LiveText(sink, limit=2000, interval=30.0)
    assert await live.finish("   ") == []
    live.append("before the question")
    await live.finish()
    live.append("after it")
    await live.finish()
    await live.close()
    assert sink.shown == ["before the question", "after it"]


async def test_a_spent_shared_budget_delays_in_between_edits_but_never_the_first_or_last() -> None:
    budget = EditBudget(per_second=0.5, burst=1)  # one edit now, the next in two seconds
    sinks = [Sink(), Sink()]
    lives: list[LiveText[int]] = [LiveText(s, limit=2000, interval=0.01, budget=budget) for s in sinks]
    for live, sink in zip(lives, sinks, strict=True):
        live.append("first words")
        await sink.wait(lambda s=sink: s.shown == ["first words"])  # first words never wait
    lives[0].append(", more")
    lives[1].append(", more")
    await asyncio.sleep(0.1)  # well past the edit interval; the budget holds both in-between edits back
    assert [s.calls[-1][0] for s in sinks] == ["post", "post"]
    for live, sink in zip(lives, sinks, strict=True):
        await live.finish(" and the end")  # nor does the last edit
        assert sink.shown == ["first words, more and the end"]
        await live.close()


def test_the_budget_books_within_the_wait_allowed_and_caps_the_debt_of_unbudgeted_edits() -> None:
    budget = EditBudget(per_second=10, burst=2)
    assert budget.reserve(max_wait=0.0) == 0.0
    assert budget.reserve(max_wait=0.0) == 0.0
    assert budget.reserve(max_wait=0.0) is None  # spent, and not booked
    wait = budget.reserve(max_wait=1.0)
    assert wait is not None
    assert 0.09 <= wait <= 0.1  # the third edit of a burst of two waits one refill
    for _ in range(1000):  # a rush of first posts and last edits, which never wait
        budget.spend()
    wait = budget.reserve(max_wait=10.0)
    assert wait is not None
    assert wait <= 0.31  # the rush left at most one burst of debt: edits resume soon after it
