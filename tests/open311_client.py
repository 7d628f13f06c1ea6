"""An Open311 GeoReport v2 client written from the specification (wiki.open311.org/GeoReport_v2),
not from our server: it knows only the documented resources, parameters and shapes, so the
tests that use it check that another system can talk to us.

XML is read generically (an element with children is a mapping, or a list when the spec
makes it one: services/service, service_requests/request, errors/error, attributes/attribute,
values/value, endpoints/endpoint, formats/format); leaves are strings or None, as a client
reading XML sees them. JSON is taken as it comes."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

import aiohttp

LISTS = {"services": "service", "service_requests": "request", "errors": "error",
         "attributes": "attribute", "values": "value", "endpoints": "endpoint",
         "formats": "format"}


class Open311ClientError(Exception):
    def __init__(self, status: int, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{status}: {errors}")
        self.status, self.errors = status, errors


def read_xml(text: str) -> Any:
    if not text.startswith("<?xml"):
        raise ValueError("an XML response must begin with the XML declaration")
    root = ET.fromstring(text.encode())
    return _read(root)


def _read(node: ET.Element) -> Any:
    children = list(node)
    if node.tag in LISTS:
        assert all(c.tag == LISTS[node.tag] for c in children), node.tag
        return [_read(c) for c in children]
    if not children:
        return node.text if node.text is not None and node.text != "" else None
    return {c.tag: _read(c) for c in children}


class Open311Client:
    def __init__(self, endpoint: str, http: aiohttp.ClientSession, *, fmt: str = "xml",
                 api_key: str | None = None, jurisdiction_id: str | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.http, self.fmt = http, fmt
        self.api_key, self.jurisdiction_id = api_key, jurisdiction_id
        self.last_status = 0
        self.last_text = ""

    def _params(self, extra: dict[str, Any]) -> dict[str, str]:
        params = {k: str(v) for k, v in extra.items() if v is not None}
        if self.jurisdiction_id:
            params.setdefault("jurisdiction_id", self.jurisdiction_id)
        return params

    async def _call(self, method: str, path: str, params: dict[str, Any] | None = None,
                    form: dict[str, Any] | None = None) -> Any:
        url = f"{self.endpoint}/{path}.{self.fmt}"
        data = self._params(form) if form is not None else None
        async with self.http.request(method, url, params=self._params(params or {}),
                                     data=data) as resp:
            self.last_status, self.last_text = resp.status, await resp.text()
            expected = "text/xml" if self.fmt == "xml" else "application/json"
            assert resp.content_type == expected, resp.content_type
            assert resp.charset == "utf-8"
            body = read_xml(self.last_text) if self.fmt == "xml" else await resp.json()
            if resp.status >= 400:
                raise Open311ClientError(resp.status, body)
            return body

    async def discovery(self) -> dict[str, Any]:
        return await self._call("GET", "discovery")

    async def services(self, **params: Any) -> list[dict[str, Any]]:
        return await self._call("GET", "services", params)

    async def service_definition(self, code: str, **params: Any) -> dict[str, Any]:
        return await self._call("GET", f"services/{code}", params)

    async def requests(self, **params: Any) -> list[dict[str, Any]]:
        return await self._call("GET", "requests", params)

    async def request(self, service_request_id: str, **params: Any) -> dict[str, Any]:
        found = await self._call("GET", f"requests/{service_request_id}", params)
        assert len(found) == 1  # the spec answers one request as a list of one
        return found[0]

    async def create(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("api_key", self.api_key)
        found = await self._call("POST", "requests", form=fields)
        assert len(found) == 1
        return found[0]
