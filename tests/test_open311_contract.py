"""Contract tests: every answer of the API has the shape of the GeoReport v2 specification's
own examples (tests/data/open311_spec/: the root element, the element of each item, the field
names), and its values have the types the specification gives them (W3C datetimes with a time
zone, numbers for lat/long, true/false for metadata, open/closed for status)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import aiohttp
import pytest

from tests.open311_client import Open311Client, read_xml
from tests.open311_support import make_key, web_app
from tests.report_helpers import drain, english_resident, file_report, grant

SPEC = Path(__file__).resolve().parent / "data" / "open311_spec"


def shape(node: ET.Element) -> tuple:
    """An element's tag with its children's shapes (items of a list: the first one)."""
    children = list(node)
    tags = [c.tag for c in children]
    if len(set(tags)) == 1 and len(tags) > 1 or node.tag in ("formats", "values"):
        children = children[:1]
    return (node.tag, tuple(shape(c) for c in children))


def spec_xml(name: str) -> ET.Element:
    return ET.fromstring((SPEC / f"{name}.xml").read_bytes())


def spec_json(name: str):
    return json.loads((SPEC / f"{name}.json").read_text(encoding="utf-8"))


def field_names(node: ET.Element) -> list[str]:
    return [c.tag for c in node]


def w3c(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    assert when.tzinfo is not None, text  # the specification requires the zone
    return when


@pytest.fixture
async def api(tmp_path, sqlite_url):
    app, chat, endpoint = await web_app(sqlite_url, tmp_path)
    http = aiohttp.ClientSession()
    yield app, chat, endpoint, http
    await http.close()
    await app.stop()


async def get(http, url, **params) -> tuple[int, str, str]:
    async with http.get(url, params=params) as resp:
        return resp.status, resp.content_type, await resp.text()


async def test_xml_answers_have_the_specifications_shape(api):
    app, chat, endpoint, http = api
    await english_resident(chat, "crew", "Victoria Garden")
    await grant(app, "crew", "team", "south-joint")
    await english_resident(chat, "ann")
    await file_report(chat, "ann", "Street lighting", "Lamp out", 30.606, 104.04)
    token = await make_key(app, "station:sxs-station")
    async with http.post(f"{endpoint}/requests.xml", data={
            "api_key": token, "service_code": "rubbish", "lat": "30.6062", "long": "104.0402",
            "description": "Bins", "media_url": "https://example.org/a.jpg"}) as resp:
        assert resp.status == 201 and resp.content_type == "text/xml"
        posted = await resp.text()
    await drain(app)

    # The root and item elements and the field names, in the specification's order.
    for name, path in (("discovery", "discovery"), ("services", "services"),
                       ("service_definition", "services/lighting"), ("requests", "requests")):
        status, ctype, text = await get(http, f"{endpoint}/{path}.xml")
        assert status == 200 and ctype == "text/xml", name
        assert text.startswith('<?xml version="1.0" encoding="utf-8"?>')
        ours, theirs = ET.fromstring(text.encode()), spec_xml(name)
        if name == "service_definition":  # our categories ask no extra questions
            assert [c.tag for c in ours] == [c.tag for c in theirs]
            assert list(ours.find("attributes")) == []
            continue
        assert shape(ours) == shape(theirs), name
    ours = ET.fromstring(posted.encode())
    assert shape(ours) == shape(spec_xml("post_response"))

    # Errors: <errors><error><code/><description/></error></errors>.
    for url in (f"{endpoint}/requests/Z-1999-00001.xml", f"{endpoint}/nowhere.xml"):
        status, ctype, text = await get(http, url)
        assert status == 404 and ctype == "text/xml"
        assert shape(ET.fromstring(text.encode())) == shape(spec_xml("errors"))
        assert read_xml(text)[0]["code"] == "404"

    # Values: a request as the client reads it.
    request = read_xml((await get(http, f"{endpoint}/requests.xml"))[2])[0]
    assert request["status"] in ("open", "closed")
    for field in ("requested_datetime", "updated_datetime", "expected_datetime"):
        w3c(request[field])
    float(request["lat"]), float(request["long"])
    services = read_xml((await get(http, f"{endpoint}/services.xml"))[2])
    assert {s["metadata"] for s in services} == {"false"} and {s["type"] for s in services} \
        == {"realtime"}


async def test_json_answers_have_the_specifications_fields_and_types(api):
    app, chat, endpoint, http = api
    await english_resident(chat, "ann")
    await file_report(chat, "ann", "Noise", "Drilling at night", 30.606, 104.04)
    token = await make_key(app, "station:sxs-station")
    client = Open311Client(endpoint, http, fmt="json", api_key=token)
    posted = await client.create(service_code="rubbish", address_string="Victoria Garden",
                                 description="Bins", account_id="acc-7")
    expected = spec_json("post_response")[0]
    assert list(posted) == list(expected)
    assert isinstance(posted["service_request_id"], str) and posted["account_id"] == "acc-7"

    requests = await client.requests()
    example = spec_json("requests")[0]
    assert len(requests) == 2
    for request in requests:
        assert list(request) == list(example)  # the same fields, in the same order
        for field, value in request.items():
            if value is None:
                continue
            if field in ("lat", "long"):
                assert isinstance(value, float)
            elif field.endswith("_datetime"):
                w3c(value)
            else:
                assert isinstance(value, str), field
        assert request["status"] in ("open", "closed")
    assert requests[0]["lat"] is not None  # at the estate's centre: a place, not a secret

    services = await client.services()
    assert all(list(s) == list(spec_json("services")[0]) for s in services)
    assert all(s["metadata"] is False for s in services)
    discovery = await client.discovery()
    assert list(discovery) == ["changeset", "contact", "key_service", "endpoints"]
    endpoint_info = discovery["endpoints"][0]
    assert endpoint_info["url"] == "http://127.0.0.1/open311/v2"
    assert endpoint_info["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert set(endpoint_info["formats"]) == {"text/xml", "application/json"}
    w3c(discovery["changeset"])

    async with http.get(f"{endpoint}/requests/Z-1999-00001.json") as resp:
        errors = await resp.json()
    assert [list(e) for e in errors] == [list(spec_json("errors")[0])]
    assert isinstance(errors[0]["code"], int)
