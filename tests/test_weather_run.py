"""The built-in default assistant answers a weather question end to end: model → get_weather → Open-Meteo."""

from __future__ import annotations

from typing import Any

from core.events import RunCompleted
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, tool_results
from tests.fakes.weather_server import LYON, FakeOpenMeteo
from tests.helpers import ask


async def test_weather_question_through_the_default_assistant(open_service, fake_model: FakeOpenAI) -> None:
    def script(req: dict[str, Any]) -> Reply:
        if results := tool_results(req):
            return Reply(text=f"Here you go: {results[0]['content']}")
        return Reply(tool_calls=(ToolCall("get_weather", {"city": "Lyon"}),))

    fake_model.script = script
    async with FakeOpenMeteo() as meteo:
        meteo.add_place(LYON)
        service = await open_service(
            assistants_file=None, open_meteo_url=meteo.forecast_url, open_meteo_geocoding_url=meteo.geocoding_url
        )
        events = await ask(service, "weather in Lyon?")
    assert isinstance(events[-1], RunCompleted)
    assert "Lyon" in events[-1].text
    assert "°C" in events[-1].text
    assert [r.query["name"] for r in meteo.searches] == ["Lyon"]
    assert meteo.forecasts[0].query["latitude"] == str(LYON.latitude)


async def test_weather_service_down_is_a_result_not_a_crash(open_service, fake_model: FakeOpenAI) -> None:
    def script(req: dict[str, Any]) -> Reply:
        if results := tool_results(req):
            return Reply(text=results[0]["content"])
        return Reply(tool_calls=(ToolCall("get_weather", {"city": "Lyon"}),))

    fake_model.script = script
    # Nothing listens on port 9: the connection is refused.
    service = await open_service(assistants_file=None)
    events = await ask(service, "weather in Lyon?")
    assert isinstance(events[-1], RunCompleted)
    assert "weather service is unavailable" in events[-1].text
