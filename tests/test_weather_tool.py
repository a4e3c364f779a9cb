"""The get_weather tool against a local Open-Meteo stand-in, invoked the way the SDK invokes tools."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from agents import FunctionTool

from core.tools.weather import make_weather_tool
from tests.fakes.weather_server import LYON, Body, Conditions, FakeOpenMeteo, Fault, Hang, ServerError
from tests.helpers import invoke_tool as invoke

UNAVAILABLE = "The weather service is unavailable right now"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def meteo() -> AsyncIterator[FakeOpenMeteo]:
    async with FakeOpenMeteo() as server:
        server.add_place(LYON)
        yield server


def weather_tool(meteo: FakeOpenMeteo, http: aiohttp.ClientSession, timeout: float = 5.0) -> FunctionTool:
    return make_weather_tool(
        forecast_url=meteo.forecast_url, geocoding_url=meteo.geocoding_url, http=http, timeout=timeout
    )


async def test_schema_comes_from_the_signature(meteo: FakeOpenMeteo, http: aiohttp.ClientSession) -> None:
    tool = weather_tool(meteo, http)
    assert tool.name == "get_weather"
    assert "weather" in tool.description.lower()
    schema = tool.params_json_schema
    assert set(schema["properties"]) == {"city"}
    assert schema["properties"]["city"]["type"] == "string"
    assert "city name" in schema["properties"]["city"]["description"].lower()
    assert schema["required"] == ["city"]
    assert schema["additionalProperties"] is False
    assert tool.needs_approval is False


async def test_current_weather_for_a_known_city(meteo: FakeOpenMeteo, http: aiohttp.ClientSession) -> None:
    meteo.conditions = Conditions(
        temperature=21.3,
        apparent_temperature=20.1,
        humidity=45,
        precipitation=0.2,
        weather_code=2,
        wind_speed=12.6,
    )

    result = await invoke(weather_tool(meteo, http), city="  Lyon ")

    assert "Lyon, Auvergne-Rhône-Alpes, France" in result
    assert "21.3 °C" in result
    assert "feels like 20.1 °C" in result
    assert "partly cloudy" in result
    assert "humidity 45%" in result
    assert "wind 12.6 km/h" in result
    assert "precipitation 0.2 mm" in result

    [search] = meteo.searches
    assert search.query == {"name": "Lyon", "count": "1", "language": "en", "format": "json"}
    [forecast] = meteo.forecasts
    assert float(forecast.query["latitude"]) == LYON.latitude
    assert float(forecast.query["longitude"]) == LYON.longitude
    assert set(forecast.query["current"].split(",")) == {
        "temperature_2m",
        "relative_humidity_2m",
        "apparent_temperature",
        "precipitation",
        "weather_code",
        "wind_speed_10m",
    }
    assert forecast.query["timezone"] == "auto"


@pytest.mark.parametrize(
    ("code", "words"),
    [(0, "clear sky"), (63, "moderate rain"), (95, "thunderstorm"), (42, "weather code 42")],
)
async def test_conditions_are_described_in_words(
    meteo: FakeOpenMeteo, http: aiohttp.ClientSession, code: int, words: str
) -> None:
    meteo.conditions = Conditions(weather_code=code)
    result = await invoke(weather_tool(meteo, http), city="Lyon")
    assert f", {words}," in result


async def test_trailing_slash_on_the_base_urls_is_tolerated(meteo: FakeOpenMeteo, http: aiohttp.ClientSession) -> None:
    tool = make_weather_tool(forecast_url=meteo.forecast_url + "/", geocoding_url=meteo.geocoding_url + "/", http=http)
    assert "Lyon" in await invoke(tool, city="Lyon")
    assert [r.path for r in meteo.requests] == ["/v1/search", "/v1/forecast"]


async def test_unknown_city_asks_for_a_nearby_larger_city(meteo: FakeOpenMeteo, http: aiohttp.ClientSession) -> None:
    result = await invoke(weather_tool(meteo, http), city="Atlantis")

    assert result.startswith("No place called 'Atlantis' was found")
    assert "nearby larger city" in result
    assert len(meteo.searches) == 1
    assert meteo.forecasts == []


async def test_empty_city_is_not_searched(meteo: FakeOpenMeteo, http: aiohttp.ClientSession) -> None:
    result = await invoke(weather_tool(meteo, http), city="   ")
    assert "which city" in result
    assert meteo.requests == []


@pytest.mark.parametrize("route", ["search", "forecast"])
@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (ServerError(500), "HTTP status 500"),
        (ServerError(429, "Daily API request limit exceeded"), "HTTP status 429"),
        (Body("<html>Bad gateway</html>", content_type="text/html"), "could not be read"),
        (Body('["not", "an", "object"]'), "could not be read"),
        (Body('{"generationtime_ms": 0.1, "results": [{"name": "Lyon"}]}'), "could not be read"),
        (Body('{"generationtime_ms": 0.1, "results": {"name": "Lyon"}}'), "could not be read"),
    ],
)
async def test_a_failing_service_is_a_clear_tool_result(
    meteo: FakeOpenMeteo,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    route: str,
    fault: Fault,
    reason: str,
) -> None:
    if route == "search":
        meteo.search_fault = fault
    else:
        meteo.forecast_fault = fault

    with caplog.at_level(logging.WARNING, logger="core.tools.weather"):
        result = await invoke(weather_tool(meteo, http), city="Lyon")

    assert result.startswith(UNAVAILABLE)
    assert reason in result
    assert any(r.name == "core.tools.weather" for r in caplog.records)


async def test_a_forecast_without_current_conditions_is_a_clear_tool_result(
    meteo: FakeOpenMeteo, http: aiohttp.ClientSession
) -> None:
    meteo.forecast_fault = Body('{"latitude": 45.75, "longitude": 4.85, "generationtime_ms": 0.05}')
    result = await invoke(weather_tool(meteo, http), city="Lyon")
    assert result.startswith(UNAVAILABLE)
    assert "could not be read" in result


@pytest.mark.parametrize("route", ["search", "forecast"])
async def test_a_hanging_service_times_out_with_a_clear_tool_result(
    meteo: FakeOpenMeteo, http: aiohttp.ClientSession, route: str
) -> None:
    if route == "search":
        meteo.search_fault = Hang()
    else:
        meteo.forecast_fault = Hang()

    result = await invoke(weather_tool(meteo, http, timeout=0.2), city="Lyon")

    assert result.startswith(UNAVAILABLE)
    assert "did not answer in time" in result
    assert meteo.requests[-1].path == f"/v1/{route}"


async def test_an_unreachable_service_is_a_clear_tool_result(http: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: the connection is refused.
    base = f"http://127.0.0.1:{port}/v1"
    tool = make_weather_tool(forecast_url=base, geocoding_url=base, http=http, timeout=5.0)

    result = await invoke(tool, city="Lyon")

    assert result.startswith(UNAVAILABLE)
    assert "could not be reached" in result
