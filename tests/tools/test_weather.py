"""get_weather against a local server that speaks Open-Meteo's geocoding and forecast JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from tests.tools.conftest import Ctx, Serve, local_outbound
from voxd.config.tools import ToolsConfig, WeatherConfig
from voxd.tools.library import ToolLibrary


def open_meteo(seen: list[tuple[str, dict[str, str]]]) -> web.Application:
    async def search(request: web.Request) -> web.Response:
        seen.append((request.path, dict(request.query)))
        if request.query["name"].lower() != "lyon":
            return web.json_response({"generationtime_ms": 0.1})  # Open-Meteo omits "results"
        return web.json_response({"results": [{
            "id": 2996944, "name": "Lyon", "latitude": 45.75, "longitude": 4.85, "country": "France",
            "admin1": "Auvergne-Rhône-Alpes", "timezone": "Europe/Paris"}]})

    async def forecast(request: web.Request) -> web.Response:
        seen.append((request.path, dict(request.query)))
        days = int(request.query["forecast_days"])
        return web.json_response({
            "latitude": 45.75, "longitude": 4.85, "timezone": "Europe/Paris",
            "current_units": {"temperature_2m": "°C"},
            "current": {"time": "2026-11-27T09:00", "temperature_2m": 7.4, "apparent_temperature": 5.1,
                        "relative_humidity_2m": 81, "weather_code": 61, "wind_speed_10m": 12.0},
            "daily": {"time": ["2026-11-27", "2026-11-28", "2026-11-29"][:days],
                      "weather_code": [61, 3, 0][:days], "temperature_2m_max": [9.1, 10.2, 11.0][:days],
                      "temperature_2m_min": [3.0, 2.5, 1.0][:days],
                      "precipitation_probability_max": [80, 20, 0][:days]},
        })

    app = web.Application()
    app.router.add_get("/v1/search", search)
    app.router.add_get("/v1/forecast", forecast)
    return app


async def test_weather_now_and_forecast(serve: Serve, tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    base = await serve(open_meteo(seen))
    lib = ToolLibrary(ToolsConfig(weather=WeatherConfig(geocoding_url=base + "/v1/search",
                                                        forecast_url=base + "/v1/forecast")),
                      base_dir=tmp_path, embedder=None, outbound=local_outbound())
    try:
        res = await lib.base.execute("get_weather", {"location": "Lyon", "days": 2}, Ctx())
    finally:
        await lib.close()
    assert res.error is None, res.error
    out: dict[str, Any] = res.result
    assert out["place"] == "Lyon, Auvergne-Rhône-Alpes, France"
    assert out["now"]["conditions"] == "light rain" and out["now"]["temperature"] == 7.4
    assert [d["date"] for d in out["days"]] == ["2026-11-27", "2026-11-28"]
    assert out["days"][1] == {"date": "2026-11-28", "conditions": "overcast", "high": 10.2, "low": 2.5,
                              "rain_chance_pct": 20}
    fc = dict(seen)["/v1/forecast"]
    assert fc["latitude"] == "45.75" and fc["temperature_unit"] == "celsius" and fc["forecast_days"] == "2"


async def test_agent_options_choose_the_api_and_units(serve: Serve, tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    base = await serve(open_meteo(seen))
    lib = ToolLibrary(base_dir=tmp_path, embedder=None, outbound=local_outbound())  # defaults: the public API
    strict = ToolLibrary(base_dir=tmp_path, embedder=None)  # the outbound policy allows public addresses only
    ctx = Ctx({"get_weather": {"geocoding_url": base + "/v1/search", "forecast_url": base + "/v1/forecast",
                               "units": "fahrenheit"}})
    try:
        ok = await lib.base.execute("get_weather", {"location": "Lyon"}, ctx)
        missing = await lib.base.execute("get_weather", {"location": "Atlantis"}, ctx)
        refused = await strict.base.execute("get_weather", {"location": "Lyon"}, ctx)
    finally:
        await lib.close()
        await strict.close()
    assert ok.result["unit"] == "°F" and dict(seen)["/v1/forecast"]["temperature_unit"] == "fahrenheit"
    assert missing.error == "no place called 'Atlantis' was found"
    # an agent's options cannot point the tool at this machine unless the operator allows it
    assert refused.error is not None and "refused" in refused.error and "loopback" in refused.error
    assert len(seen) == 3  # the refused request never reached the server


async def test_unreachable_or_broken_service_is_a_recoverable_error(serve: Serve, tmp_path: Path) -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    app = web.Application()
    app.router.add_get("/v1/search", broken)
    base = await serve(app)
    lib = ToolLibrary(base_dir=tmp_path, embedder=None, outbound=local_outbound())
    try:
        down = await lib.base.execute("get_weather", {"location": "Lyon"},
                                      Ctx({"get_weather": {"geocoding_url": base + "/v1/search"}}))
        closed = await lib.base.execute("get_weather", {"location": "Lyon"},
                                        Ctx({"get_weather": {"geocoding_url": "http://127.0.0.1:9/x"}}))
    finally:
        await lib.close()
    assert down.error == "the weather service answered HTTP 503"
    assert closed.error is not None and "unreachable" in closed.error
