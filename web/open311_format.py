"""GeoReport v2's two formats: XML (required by the specification) and JSON.

Lists are a JSON array at the top, and in XML a root element holding one element per item
(`<services><service>…`, `<service_requests><request>…`, `<errors><error>…`). A missing value
is JSON null and an empty XML element; booleans are `true` / `false`."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from xml.etree import ElementTree as ET

from aiohttp import web

FORMATS = ("xml", "json")
CONTENT_TYPES = {"xml": "text/xml", "json": "application/json"}
# What each list element holds in XML.
ITEMS = {"services": "service", "service_requests": "request", "errors": "error",
         "endpoints": "endpoint", "formats": "format", "attributes": "attribute",
         "values": "value"}


# Characters XML 1.0 cannot hold at all (escaping does not help): dropped from the XML answer.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return _NOT_XML.sub("", str(value))


def _fill(parent: ET.Element, name: str, value: Any) -> None:
    node = ET.SubElement(parent, name)
    if isinstance(value, dict):
        for key, inner in value.items():
            _fill(node, key, inner)
    elif isinstance(value, list):
        for item in value:
            _fill(node, ITEMS.get(name, "item"), item)
    else:
        node.text = _text(value)


def to_xml(root: str, value: Any) -> bytes:
    top = ET.Element(root)
    if isinstance(value, list):
        for item in value:
            _fill(top, ITEMS[root], item)
    else:
        for key, inner in value.items():
            _fill(top, key, inner)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(top, encoding="utf-8",
                                                                      xml_declaration=False)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def respond(fmt: str, root: str, value: Any, *, status: int = 200,
            headers: dict[str, str] | None = None) -> web.Response:
    """`value` (a list or a mapping) as `fmt`; `root` names the XML root element."""
    if fmt == "json":
        body = json.dumps(_json_value(value), ensure_ascii=False).encode()
    else:
        body = to_xml(root, value)
    return web.Response(body=body, status=status, headers=headers,
                        content_type=CONTENT_TYPES[fmt], charset="utf-8")
