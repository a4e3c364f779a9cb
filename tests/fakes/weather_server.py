"""A stand-in for Open-Meteo's geocoding and forecast APIs, in their real response format.

Serves ``GET /v1/search`` and ``GET /v1/forecast`` on 127.0.0.1. Tests add the
places it knows, set the current conditions it reports, and can make either
route fail (HTTP error, a body that is not JSON, or no answer at all). Every
request is recorded so tests can assert the query parameters sent.

    async with FakeOpenMeteo() as meteo:
        meteo.add_place(LYON)
        tool = make_weather_tool(forecast_url=meteo.forecast_url, geocoding_url=meteo.geocoding_url, ...)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.fakes.loopback import serve_on_loopback

__all__ = [
    "LYON",
    "Body",
    "Conditions",
    "FakeOpenMeteo",
    "Fault",
    "Hang",
    "Place",
    "RecordedRequest",
    "ServerError",
]


@dataclass(frozen=True)
class Place:
    """One geocoding result."""

    name: str
    latitude: float
    longitude: float
    country: str
    country_code: str
    admin1: str | None = None
    timezone: str = "UTC"
    id: int = 1

    def as_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "elevation": 173.0,
            "feature_code": "PPLA",
            "country_code": self.country_code,
            "timezone": self.timezone,
            "population": 522969,
            "country_id": 3017382,
            "country": self.country,
        }
        if self.admin1 is not None:
            result["admin1_id"] = 11071625
            result["admin1"] = self.admin1
        return result


LYON = Place(
    name="Lyon",
    latitude=45.74846,
    longitude=4.84671,
    country="France",
    country_code="FR",
    admin1="Auvergne-Rhône-Alpes",
    timezone="Europe/Paris",
    id=2996944,
)


@dataclass(frozen=True)
class Conditions:
    """What ``current`` reports in a forecast answer."""

    temperature: float = 21.3
    apparent_temperature: float = 20.1
    humidity: int = 45
    precipitation: float = 0.2
    weather_code: int = 2
    wind_speed: float = 12.6
    time: str = "2025-06-01T14:15"


@dataclass(frozen=True)
class ServerError:
    """Answer with this HTTP status and Open-Meteo's error body."""

    status: int = 500
    reason: str = "Internal server error"


@dataclass(frozen=True)
class Body:
    """Answer 200 with this raw body (for example something that is not JSON)."""

    text: str
    content_type: str = "application/json"


@dataclass(frozen=True)
class Hang:
    """Never answer, until the server shuts down."""


Fault = ServerError | Body | Hang


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    query: dict[str, str]


@dataclass
class FakeOpenMeteo:
    """Open-Meteo's two APIs on one local server; use as an async context manager."""

    places: dict[str, Place] = field(default_factory=dict)
    conditions: Conditions = field(default_factory=Conditions)
    search_fault: Fault | None = None
    forecast_fault: Fault | None = None
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._base = ""

    def add_place(self, place: Place) -> None:
        self.places[place.name.lower()] = place

    @property
    def geocoding_url(self) -> str:
        return f"{self._base}/v1"

    @property
    def forecast_url(self) -> str:
        return f"{self._base}/v1"

    @property
    def searches(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/search"]

    @property
    def forecasts(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/forecast"]

    async def __aenter__(self) -> FakeOpenMeteo:
        app = web.Application()
        app.router.add_get("/v1/search", self._search)
        app.router.add_get("/v1/forecast", self._forecast)
        self._runner, self._base = await serve_on_loopback(app)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing.set()  # release hanging handlers so shutdown is immediate
        if self._runner is not None:
            await self._runner.cleanup()

    async def _fault(self, fault: Fault | None) -> web.StreamResponse | None:
        match fault:
            case None:
                return None
            case ServerError(status=status, reason=reason):
                return web.json_response({"error": True, "reason": reason}, status=status)
            case Body(text=text, content_type=content_type):
                return web.Response(text=text, content_type=content_type)
            case Hang():
                await self._closing.wait()
                return web.Response(status=503)

    def _record(self, request: web.Request) -> None:
        self.requests.append(RecordedRequest(path=request.path, query=dict(request.query)))

    async def _search(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        if (failed := await self._fault(self.search_fault)) is not None:
            return failed
        name = request.query.get("name")
        if name is None:
            return web.json_response({"error": True, "reason": "Parameter 'name' is required"}, status=400)
        count = int(request.query.get("count", "10"))
        body: dict[str, Any] = {"generationtime_ms": 0.6439686}
        place = self.places.get(name.strip().lower())
        if place is not None and count > 0:
            body = {"results": [place.as_json()], **body}
        # Like Open-Meteo: no match means no "results" key at all.
        return web.json_response(body)

    async def _forecast(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        if (failed := await self._fault(self.forecast_fault)) is not None:
            return failed
        try:
            latitude = float(request.query["latitude"])
            longitude = float(request.query["longitude"])
        except (KeyError, ValueError):
            return web.json_response(
                {"error": True, "reason": "Parameter 'latitude' and 'longitude' must have the same number"},
                status=400,
            )
        c = self.conditions
        values: dict[str, Any] = {
            "temperature_2m": c.temperature,
            "relative_humidity_2m": c.humidity,
            "apparent_temperature": c.apparent_temperature,
            "precipitation": c.precipitation,
            "weather_code": c.weather_code,
            "wind_speed_10m": c.wind_speed,
        }
        units = {
            "temperature_2m": "°C",
            "relative_humidity_2m": "%",
            "apparent_temperature": "°C",
            "precipitation": "mm",
            "weather_code": "wmo code",
            "wind_speed_10m": "km/h",
        }
        wanted = [v for v in request.query.get("current", "").split(",") if v]
        unknown = [v for v in wanted if v not in values]
        if unknown:
            return web.json_response(
                {
                    "error": True,
                    "reason": f"Cannot initialize WeatherVariable from invalid String value {unknown[0]}",
                },
                status=400,
            )
        body: dict[str, Any] = {
            "latitude": round(latitude, 2),
            "longitude": round(longitude, 2),
            "generationtime_ms": 0.0584125518798828,
            "utc_offset_seconds": 7200,
            "timezone": "Europe/Paris" if request.query.get("timezone") == "auto" else "GMT",
            "timezone_abbreviation": "GMT+2",
            "elevation": 173.0,
        }
        if wanted:
            body["current_units"] = {"time": "iso8601", "interval": "seconds"} | {v: units[v] for v in wanted}
            body["current"] = {"time": c.time, "interval": 900} | {v: values[v] for v in wanted}
        return web.json_response(body)
