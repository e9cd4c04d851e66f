"""get_weather: an Open-Meteo style API (place search, then forecast), over aiohttp.

Both base URLs come from config (``tools.weather``) or the agent's options, so a
self-hoster can point them at an Open-Meteo instance of their own; either way the request
goes through the outbound policy (``voxd.core.egress``, use "tools").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from voxd.config.tools import WeatherConfig, merged
from voxd.core.egress import EgressPolicy, EgressRefused, refusal
from voxd.core.egress_http import redirect_options
from voxd.tools.registry import Tool, ToolContext, ToolError

# WMO weather interpretation codes, as Open-Meteo reports them.
WMO = {
    0: "clear sky", 1: "mainly clear", 2: "partly cloudy", 3: "overcast", 45: "fog", 48: "freezing fog",
    51: "light drizzle", 53: "drizzle", 55: "heavy drizzle", 56: "freezing drizzle", 57: "freezing drizzle",
    61: "light rain", 63: "rain", 65: "heavy rain", 66: "freezing rain", 67: "freezing rain",
    71: "light snow", 73: "snow", 75: "heavy snow", 77: "snow grains", 80: "light showers", 81: "showers",
    82: "violent showers", 85: "snow showers", 86: "heavy snow showers", 95: "thunderstorm",
    96: "thunderstorm with hail", 99: "thunderstorm with heavy hail",
}

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "minLength": 1, "maxLength": 100, "description": "City or place name"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7, "description": "Days of forecast (1 = today)"},
    },
    "required": ["location"],
    "additionalProperties": False,
}

SessionGetter = Callable[[], Awaitable[aiohttp.ClientSession]]


async def _get_json(session: aiohttp.ClientSession, url: str, params: dict[str, Any], timeout_s: float,
                    policy: EgressPolicy) -> Any:
    try:
        async with session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=timeout_s),
                               **redirect_options(policy)) as resp:
            if resp.status >= 400:
                raise ToolError(f"the weather service answered HTTP {resp.status}")
            return await resp.json(content_type=None)
    except EgressRefused as e:
        raise ToolError(f"the weather service's address is refused: {e}") from None
    except aiohttp.ClientError as e:
        why = refusal(e)
        if why is not None:
            raise ToolError(f"the weather service's address is refused: {why}") from None
        raise ToolError(f"the weather service is unreachable ({type(e).__name__})") from None
    except ValueError:
        raise ToolError("the weather service sent something that is not JSON") from None


def _describe(code: Any) -> str:
    return WMO.get(int(code), f"weather code {code}") if isinstance(code, int | float) else "unknown"


def weather_tool(base: WeatherConfig, session: SessionGetter,
                 policy: Callable[[], EgressPolicy] = EgressPolicy) -> Tool:
    async def get_weather(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        cfg: WeatherConfig = merged(base, ctx.options_for("get_weather"))
        http = await session()
        days = int(args.get("days") or 1)
        geo = await _get_json(
            http, cfg.geocoding_url,
            {"name": args["location"], "count": 1, "language": "en", "format": "json"}, cfg.timeout_s, policy(),
        )
        places = geo.get("results") if isinstance(geo, dict) else None
        if not places:
            raise ToolError(f"no place called {args['location']!r} was found")
        place = places[0]
        params: dict[str, Any] = {
            "latitude": place["latitude"], "longitude": place["longitude"], "timezone": "auto",
            "current": "temperature_2m,apparent_temperature,relative_humidity_2m,weather_code,wind_speed_10m",
            "daily": "weather_code,temperature_2m_max,temperature_2m_min,precipitation_probability_max",
            "forecast_days": days, "temperature_unit": cfg.units,
        }
        fc = await _get_json(http, cfg.forecast_url, params, cfg.timeout_s, policy())
        if not isinstance(fc, dict):
            raise ToolError("the weather service sent an unexpected answer")
        unit = "°F" if cfg.units == "fahrenheit" else "°C"
        out: dict[str, Any] = {
            "place": ", ".join(str(p) for p in (place.get("name"), place.get("admin1"), place.get("country")) if p),
            "unit": unit,
        }
        cur = fc.get("current") or {}
        if cur:
            out["now"] = {
                "temperature": cur.get("temperature_2m"),
                "feels_like": cur.get("apparent_temperature"),
                "humidity_pct": cur.get("relative_humidity_2m"),
                "wind_kmh": cur.get("wind_speed_10m"),
                "conditions": _describe(cur.get("weather_code")),
            }
        daily = fc.get("daily") or {}
        dates = daily.get("time") or []

        def col(key: str, i: int) -> Any:
            vals = daily.get(key) or []
            return vals[i] if i < len(vals) else None

        out["days"] = [
            {
                "date": d,
                "conditions": _describe(col("weather_code", i)),
                "high": col("temperature_2m_max", i),
                "low": col("temperature_2m_min", i),
                "rain_chance_pct": col("precipitation_probability_max", i),
            }
            for i, d in enumerate(dates[:days])
        ]
        return out

    return Tool(
        "get_weather",
        "Get the current weather and forecast for a place. Use when the caller asks about the weather.",
        PARAMETERS, get_weather, timeout_s=10,
    )
