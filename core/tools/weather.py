"""The built-in ``get_weather`` tool: current conditions from Open-Meteo (no API key).

Two requests per call: the geocoding API turns a city name into coordinates,
then the forecast API returns the current conditions there. Every failure
(unknown place, HTTP error, timeout, unreadable answer) becomes a short tool
result the model can relay; the details go to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import aiohttp
from agents import FunctionTool, function_tool

__all__ = ["make_weather_tool"]

_log = logging.getLogger(__name__)

_CURRENT_FIELDS = (
    "temperature_2m",
    "relative_humidity_2m",
    "apparent_temperature",
    "precipitation",
    "weather_code",
    "wind_speed_10m",
)

# WMO weather interpretation codes, as documented by Open-Meteo.
_WMO_CODES: Mapping[int, str] = MappingProxyType(
    {
        0: "clear sky",
        1: "mainly clear",
        2: "partly cloudy",
        3: "overcast",
        45: "fog",
        48: "depositing rime fog",
        51: "light drizzle",
        53: "moderate drizzle",
        55: "dense drizzle",
        56: "light freezing drizzle",
        57: "dense freezing drizzle",
        61: "slight rain",
        63: "moderate rain",
        65: "heavy rain",
        66: "light freezing rain",
        67: "heavy freezing rain",
        71: "slight snowfall",
        73: "moderate snowfall",
        75: "heavy snowfall",
        77: "snow grains",
        80: "slight rain showers",
        81: "moderate rain showers",
        82: "violent rain showers",
        85: "slight snow showers",
        86: "heavy snow showers",
        95: "thunderstorm",
        96: "thunderstorm with slight hail",
        99: "thunderstorm with heavy hail",
    }
)

_UNAVAILABLE = "The weather service is unavailable right now ({reason}); tell the user and try again later."


class _ServiceError(Exception):
    """The weather service failed; ``reason`` is a short phrase for the tool result."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe_weather_code(code: int) -> str:
    """The WMO weather code as words, e.g. ``2`` -> ``"partly cloudy"``."""
    return _WMO_CODES.get(code, f"weather code {code}")


def make_weather_tool(
    *,
    forecast_url: str,
    geocoding_url: str,
    http: aiohttp.ClientSession,
    timeout: float = 10.0,
) -> FunctionTool:
    """Build the ``get_weather`` tool on top of a shared aiohttp session.

    ``forecast_url`` and ``geocoding_url`` are API bases such as
    ``https://api.open-meteo.com/v1``; the tool appends ``/forecast`` and ``/search``.
    Each request is bounded by ``timeout`` seconds.
    """
    search_endpoint = geocoding_url.rstrip("/") + "/search"
    forecast_endpoint = forecast_url.rstrip("/") + "/forecast"
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async def fetch_json(url: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            async with http.get(url, params=params, timeout=client_timeout) as response:
                if response.status != 200:
                    snippet = (await response.text(errors="replace"))[:200]
                    _log.warning("weather: GET %s answered %s: %s", url, response.status, snippet)
                    raise _ServiceError(f"it answered with HTTP status {response.status}")
                data = await response.json(content_type=None)
        except TimeoutError:
            _log.warning("weather: GET %s did not answer within %.1f s", url, timeout)
            raise _ServiceError("it did not answer in time") from None
        except aiohttp.ClientError as exc:
            _log.warning("weather: GET %s failed: %r", url, exc)
            raise _ServiceError("it could not be reached") from None
        except ValueError as exc:  # the body is not JSON
            _log.warning("weather: GET %s returned a body that is not JSON: %s", url, exc)
            raise _ServiceError("its answer could not be read") from None
        if not isinstance(data, dict):
            _log.warning("weather: GET %s returned JSON that is not an object: %.200r", url, data)
            raise _ServiceError("its answer could not be read")
        return data

    async def get_weather(city: str) -> str:
        """Get the current weather in a city: temperature, feels-like, conditions, humidity, wind, rain.

        Args:
            city: The city name alone, in any language, e.g. "Lyon" or "São Paulo".
                Do not add a region or country.
        """
        name = city.strip()
        if not name:
            return "No city was given; ask the user which city they mean."
        try:
            found = await fetch_json(
                search_endpoint,
                {"name": name, "count": "1", "language": "en", "format": "json"},
            )
            results = found.get("results") or []
            if not results:
                return (
                    f"No place called {name!r} was found. Ask the user for the name of "
                    "a nearby larger city, and search with the city name alone."
                )
            try:
                place = results[0]
                latitude = float(place["latitude"])
                longitude = float(place["longitude"])
                label = _place_label(place, fallback=name)
            except (KeyError, IndexError, TypeError, ValueError):
                _log.warning("weather: unexpected geocoding answer: %.300r", found)
                raise _ServiceError("its answer could not be read") from None

            forecast = await fetch_json(
                forecast_endpoint,
                {
                    "latitude": str(latitude),
                    "longitude": str(longitude),
                    "current": ",".join(_CURRENT_FIELDS),
                    "timezone": "auto",
                },
            )
            try:
                return _format_current(label, forecast["current"])
            except (KeyError, TypeError, ValueError):
                _log.warning("weather: unexpected forecast answer: %.300r", forecast)
                raise _ServiceError("its answer could not be read") from None
        except _ServiceError as exc:
            return _UNAVAILABLE.format(reason=exc.reason)

    return function_tool(get_weather)


def _place_label(place: Mapping[str, Any], *, fallback: str) -> str:
    parts = [str(place.get("name") or fallback)]
    for key in ("admin1", "country"):
        value = place.get(key)
        if isinstance(value, str) and value and value not in parts:
            parts.append(value)
    return ", ".join(parts)


def _format_current(label: str, current: Mapping[str, Any]) -> str:
    temperature = float(current["temperature_2m"])
    feels_like = float(current["apparent_temperature"])
    conditions = _describe_weather_code(int(current["weather_code"]))
    humidity = float(current["relative_humidity_2m"])
    wind = float(current["wind_speed_10m"])
    precipitation = float(current["precipitation"])
    when = current.get("time")
    as_of = f" (local time {str(when).replace('T', ' ')})" if when else ""
    return (
        f"Current weather in {label}{as_of}: {temperature:g} °C, feels like {feels_like:g} °C, "
        f"{conditions}, humidity {humidity:g}%, wind {wind:g} km/h, "
        f"precipitation {precipitation:g} mm."
    )
