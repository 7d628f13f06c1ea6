"""Official alerts in CAP 1.2 (OASIS Common Alerting Protocol): parse, match to the territory,
push once per alert, and follow its updates and cancellations.

Documents come from a feed URL (Atom or RSS whose entries link to CAP documents or embed them,
or a single CAP document) or from a folder. CAP never needs a DTD, so the parser (defusedxml)
refuses any document declaring one, or entities, in any encoding, and documents over `max_bytes` are not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from shapely.geometry.base import BaseGeometry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from bot.config import CapSettings
    from bot.context import Services

import asyncio
import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp
import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException
from shapely.affinity import scale
from shapely.geometry import Point, Polygon, shape
from shapely.ops import unary_union

from storage import alerts, territory
from storage.notices import system_notice

log = logging.getLogger(__name__)

NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM = "http://www.w3.org/2005/Atom"
_C = f"{{{NS}}}"
URGENT_SEVERITIES = {"Extreme", "Severe"}
WEATHER_CATEGORIES = {"Met"}
KM_PER_DEGREE = 111.32


class CapError(ValueError):
    pass


@dataclass
class Info:
    language: str
    category: list[str]
    event: str
    urgency: str
    severity: str
    certainty: str
    headline: str
    description: str
    instruction: str
    sender_name: str
    expires: datetime | None
    areas: list = field(default_factory=list)  # shapely geometries, lon/lat


@dataclass
class CapAlert:
    identifier: str
    sender: str
    sent: datetime | None
    status: str
    msg_type: str
    scope: str
    references: list[tuple[str, str]]  # (sender, identifier) of earlier messages
    infos: list[Info]
    signed: bool = False  # an XML signature verified against CAP_TRUSTED_CERTS

    @property
    def area(self) -> BaseGeometry | None:
        shapes = [a for info in self.infos for a in info.areas]
        return unary_union(shapes) if shapes else None

    @property
    def severity(self) -> str:
        order = ["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
        found = [i.severity for i in self.infos if i.severity in order]
        return min(found, key=order.index) if found else "Unknown"

    @property
    def expires(self) -> datetime | None:
        ends = [i.expires for i in self.infos if i.expires is not None]
        if not ends or len(ends) < len(self.infos):
            return None  # one info block without an end: the alert has none
        return max(ends)

    def info_for(self, lang: str) -> Info | None:
        """The info block in a resident language ("zh-Hans" takes zh, zh-CN...), else any."""
        prefix = "zh" if lang.startswith("zh") else "en"
        for info in self.infos:
            if info.language.lower().startswith(prefix):
                return info
        return self.infos[0] if self.infos else None


def parse_xml(raw: bytes, max_bytes: int = 1_000_000) -> ET.Element:
    """Parse with defusedxml: the parser itself refuses any DTD, entity declaration or external
    reference, in whatever encoding (UTF-16/32 included) and wherever it stands in the document."""
    if len(raw) > max_bytes:
        raise CapError(f"document of {len(raw)} bytes is over the limit of {max_bytes}")
    try:
        return DET.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise CapError(f"document declares a DTD or entities, which CAP never needs: "
                       f"{type(exc).__name__}") from None
    except ET.ParseError as exc:
        raise CapError(f"malformed XML: {exc}") from None


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CapError(f"bad time {text!r}") from None
    if value.tzinfo is None:
        raise CapError(f"time without zone {text!r}")  # CAP requires one
    return value


def _text(el: ET.Element, name: str) -> str:
    child = el.find(_C + name)
    return (child.text or "").strip() if child is not None else ""


def _polygon(text: str) -> BaseGeometry:
    points = []
    for pair in text.split():
        lat, lon = (float(v) for v in pair.split(","))
        points.append((lon, lat))
    if len(points) < 4:
        raise CapError("a CAP polygon needs at least four points")
    poly = Polygon(points)
    return poly if poly.is_valid else poly.buffer(0)


def _circle(text: str) -> BaseGeometry:
    centre, radius = text.split()
    lat, lon = (float(v) for v in centre.split(","))
    km = float(radius)
    if km < 0:
        raise CapError("negative circle radius")
    # A degree of longitude shrinks with latitude: a circle on the ground is an ellipse here.
    disc = Point(lon, lat).buffer(km / KM_PER_DEGREE, 64)
    return scale(disc, xfact=1 / max(math.cos(math.radians(lat)), 0.01), yfact=1.0)


def parse_cap(root: ET.Element) -> CapAlert:
    if root.tag != _C + "alert":
        raise CapError(f"not a CAP 1.2 alert: {root.tag}")
    identifier, sender = _text(root, "identifier"), _text(root, "sender")
    status, msg_type = _text(root, "status"), _text(root, "msgType")
    if not identifier or not sender or not status or not msg_type:
        raise CapError("identifier, sender, status and msgType are required")
    references = []
    for ref in _text(root, "references").split():
        parts = ref.split(",")
        if len(parts) >= 2:
            references.append((parts[0], parts[1]))
    infos = []
    for el in root.findall(_C + "info"):
        areas = []
        for area in el.findall(_C + "area"):
            try:
                areas += [_polygon(p.text or "") for p in area.findall(_C + "polygon")]
                areas += [_circle(c.text or "") for c in area.findall(_C + "circle")]
            except (ValueError, TypeError) as exc:
                raise CapError(f"bad area in {identifier}: {exc}") from None
        infos.append(Info(
            language=_text(el, "language") or "en-US",
            category=[(c.text or "").strip() for c in el.findall(_C + "category")],
            event=_text(el, "event"), urgency=_text(el, "urgency"),
            severity=_text(el, "severity"), certainty=_text(el, "certainty"),
            headline=_text(el, "headline"), description=_text(el, "description"),
            instruction=_text(el, "instruction"), sender_name=_text(el, "senderName"),
            expires=_time(_text(el, "expires")), areas=areas))
    return CapAlert(identifier, sender, _time(_text(root, "sent")), status, msg_type,
                    _text(root, "scope"), references, infos)


DSIG = "http://www.w3.org/2000/09/xmldsig#"


def parse_document(raw: bytes, max_bytes: int = 1_000_000, certs: tuple[str, ...] = ()
                   ) -> CapAlert:
    """One CAP document. When it carries an XML signature and trusted certificates (PEM) are
    given, the signature must verify against one of them (signxml), and only what it signs is
    read; a signature that does not verify refuses the document."""
    root = parse_xml(raw, max_bytes)  # defusedxml first: no DTD reaches the verifier
    if root.find(f"{{{DSIG}}}Signature") is None or not certs:
        return parse_cap(root)
    from lxml import etree
    from signxml import XMLVerifier
    from signxml.exceptions import InvalidInput, InvalidSignature

    for pem in certs:
        try:
            result = XMLVerifier().verify(raw, x509_cert=pem)
        except (InvalidSignature, InvalidInput, ValueError):
            continue
        if isinstance(result, list):  # only for expect_references > 1, which is not asked
            result = result[0]
        alert = parse_cap(parse_xml(etree.tostring(result.signed_xml), max_bytes))
        alert.signed = True
        return alert
    raise CapError("XML signature does not verify against any of CAP_TRUSTED_CERTS")


def feed_entries(root: ET.Element) -> tuple[list[CapAlert], list[str]]:
    """A feed's embedded alerts and the links of those it only points to."""
    embedded: list[CapAlert] = []
    links: list[str] = []
    if root.tag == _C + "alert":
        return [parse_cap(root)], []
    if root.tag == f"{{{ATOM}}}feed":
        for entry in root.findall(f"{{{ATOM}}}entry"):
            inline = entry.find(f".//{_C}alert")
            if inline is not None:
                embedded.append(parse_cap(inline))
                continue
            hrefs = [(link.get("type") or "", link.get("href") or "") for link in
                     entry.findall(f"{{{ATOM}}}link") if link.get("href")]
            hrefs.sort(key=lambda th: "cap" not in th[0] and "xml" not in th[0])
            if hrefs:
                links.append(hrefs[0][1])
        return embedded, links
    if root.tag == "rss":
        for item in root.iter("item"):
            inline = item.find(f".//{_C}alert")
            if inline is not None:
                embedded.append(parse_cap(inline))
            elif link := (item.findtext("link") or "").strip():
                links.append(link)
        return embedded, links
    raise CapError(f"not a feed nor a CAP alert: {root.tag}")


class Territory:
    """Estates as shapes (their boundary, else their point) to intersect with alert areas."""

    def __init__(self, estates: Sequence[territory.Estate]) -> None:
        self.shapes = [(e.id, shape(e.boundary) if e.boundary else Point(e.longitude,
                                                                           e.latitude))
                       for e in estates]

    def estates_in(self, area: BaseGeometry | None) -> list[int]:
        if area is None or area.is_empty:
            return []
        return [eid for eid, geom in self.shapes if geom.intersects(area)]


# -- reading the sources -----------------------------------------------------------------

async def _get(http: aiohttp.ClientSession, url: str, cfg: CapSettings) -> bytes:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=cfg.timeout_seconds)) as resp:
        if resp.status != 200:
            raise CapError(f"{url}: HTTP {resp.status}")
        if (resp.content_length or 0) > cfg.max_bytes:
            raise CapError(f"{url}: {resp.content_length} bytes is over the limit")
        raw = await resp.content.read(cfg.max_bytes + 1)
        return raw


async def read_feed(http: aiohttp.ClientSession, cfg: CapSettings) -> list[CapAlert]:
    """Every alert the feed offers now; a bad entry is logged and skipped, not fatal."""
    from urllib.parse import urljoin

    if not cfg.feed_url:
        return []
    feed_url = cfg.feed_url
    raw = await _get(http, feed_url, cfg)
    found, links = feed_entries(parse_xml(raw, cfg.max_bytes))
    for link in links[: cfg.max_entries]:
        try:
            found.append(parse_document(await _get(http, urljoin(feed_url, link), cfg),
                                        cfg.max_bytes, trusted_certs(cfg)))
        except (CapError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("CAP entry %s skipped: %s", link, exc)
    return found


def trusted_certs(cfg: CapSettings) -> tuple[str, ...]:
    return tuple(Path(p).read_text(encoding="ascii") for p in cfg.trusted_certs)


def read_folder(folder: Path, max_bytes: int, certs: tuple[str, ...] = ()) -> list[CapAlert]:
    found = []
    for path in sorted(folder.glob("*.xml")):
        try:
            if path.stat().st_size > max_bytes:
                raise CapError(f"{path.stat().st_size} bytes is over the limit")
            found.append(parse_document(path.read_bytes(), max_bytes, certs))
        except (CapError, OSError) as exc:
            log.warning("CAP file %s skipped: %s", path.name, exc)
    return found


# -- pushing -----------------------------------------------------------------------------

def _category(alert: CapAlert, urgent: bool) -> str:
    if urgent:
        return "emergency"
    cats = {c for info in alert.infos for c in info.category}
    # Lesser official notices: weather ones to those who want weather, the rest (a road
    # closure, an outage) as convenience notices; neither calls for "I am safe" buttons.
    return "weather" if cats & WEATHER_CATEGORIES else "convenience"


def _texts(services: Services, alert: CapAlert, kind: str, earlier: list[alerts.AlertCap]) -> dict:
    tz = services.settings.bot.timezone
    from zoneinfo import ZoneInfo

    out = {}
    for lang in ("zh-Hans", "en"):
        info = alert.info_for(lang)
        if info is None:
            if kind != "cancel":
                continue
            info = Info(lang, [], "", "", "", "", "", "", "", "", None)  # CAP lets a Cancel
            # carry no info at all: it is then told by the earlier alert's headline alone
        t = services.texts
        icon = t.get(lang, "alerts.icon_severe" if alert.severity in URGENT_SEVERITIES
                     else "alerts.icon_other")
        # The latest message of the thread is the one residents remember.
        last = max(earlier, key=lambda e: e.id) if earlier else None
        earlier_title = (last.headlines.get(lang) or last.identifier) if last else ""
        parts = [t.get(lang, f"alerts.{kind}", icon=icon, event=info.event,
                       headline=info.headline, description=info.description,
                       earlier=earlier_title)]
        if info.instruction and kind != "cancel":
            parts.append(t.get(lang, "alerts.instruction", text=info.instruction))
        if info.expires and kind != "cancel":
            local = info.expires.astimezone(ZoneInfo(tz))
            parts.append(t.get(lang, "alerts.expires", time=local.strftime("%Y-%m-%d %H:%M")))
        if info.sender_name:
            parts.append(t.get(lang, "alerts.source", sender=info.sender_name))
        out[lang] = "\n".join(p for p in parts if p.strip())
    return out


async def handle_alert(session: AsyncSession, services: Services, alert: CapAlert, where: Territory, now: datetime
                       ) -> str | None:
    """Record one CAP message and push what it calls for; the outcome, or None if seen."""
    if await alerts.cap_seen(session, alert.sender, alert.identifier):
        return None
    # Everything in the reference chain, not only the messages named: a Cancel (or Update) that
    # names only the original Alert still reaches the estates an earlier Update added.
    earlier = await alerts.cap_thread(
        session, await alerts.cap_referenced(session, alert.references))
    urgent = alert.severity in URGENT_SEVERITIES
    row = alerts.AlertCap(
        sender=alert.sender[:255], identifier=alert.identifier[:255], sent=alert.sent,
        msg_type=alert.msg_type[:12], status=alert.status[:12], outcome="pending",
        headlines={lang: info.headline for lang in ("zh-Hans", "en")
                   if (info := alert.info_for(lang)) is not None},
        expires=alert.expires, refers_to=[e.id for e in earlier])
    if not await alerts.cap_claim(session, row):
        return None  # another worker recorded it a moment ago
    estate_ids: list[int] = []
    severe = urgent
    if alert.status != "Actual" or alert.scope not in ("Public", ""):
        # Test, Exercise, System, Draft; Restricted or Private: never to residents.
        row.outcome = "ignored"
    elif alert.msg_type == "Cancel":
        pushed = [e for e in earlier if e.outcome == "pushed"]
        estate_ids = sorted({i for e in pushed for i in e.estate_ids})
        # The cancellation reaches whoever the alert reached: urgent if any of them was.
        urgent = any(e.urgent for e in pushed)
        row.outcome = "pushed" if estate_ids else "unmatched"
        kind = "cancel"
    elif alert.expires is not None and alert.expires <= now:
        row.outcome = "expired"
    elif alert.msg_type in ("Alert", "Update"):
        estate_ids = where.estates_in(alert.area)
        kind = "alert"
        if alert.msg_type == "Update":
            kind = "update" if earlier else "alert"
            # Those told of the earlier alert hear of its update even if the area shrank.
            told = [e for e in earlier if e.outcome == "pushed"]
            estate_ids = sorted(set(estate_ids) | {i for e in told for i in e.estate_ids})
            # Reach everyone the alert reached: an urgent alert's update (even a downgrade)
            # passes the same subscriptions and quiet hours the alert did.
            urgent = urgent or any(e.urgent for e in told)
        row.outcome = "pushed" if estate_ids else "outside"
    else:
        row.outcome = "ignored"  # Ack, Error: messages between alerting systems
    if row.outcome == "pushed":
        if kind == "cancel":
            # Same category as the alert, so its cancellation passes the same filters; but an
            # emergency's cancellation needs no "I am safe" buttons.
            first = next(e.category for e in earlier if e.outcome == "pushed") or "convenience"
            category = "convenience" if first == "emergency" else first
        else:
            category = _category(alert, severe)
        texts = _texts(services, alert, kind, earlier)
        notice = await system_notice(session, category=category, estate_ids=estate_ids,
                                     texts=texts, urgent=urgent,
                                     dedupe_key=f"cap:{row.id}")
        row.estate_ids, row.urgent, row.category = estate_ids, urgent, category
        log.info("CAP %s (%s, %s) pushed to %s estates as notice %s", alert.identifier,
                 alert.msg_type, alert.severity, len(estate_ids), notice and notice.id)
    return row.outcome


async def poll(sessions: async_sessionmaker[AsyncSession], services: Services,
               deliverer: object, *, http: aiohttp.ClientSession | None = None
               ) -> dict[str, int]:
    """One look at the feed and the folder; outcomes counted, for logs and tests."""
    cfg = services.settings.cap
    if not cfg.feed_url and not cfg.folder:
        return {}
    found: list[CapAlert] = []
    if cfg.folder:
        found += await asyncio.to_thread(read_folder, Path(cfg.folder), cfg.max_bytes,
                                         await asyncio.to_thread(trusted_certs, cfg))
    if cfg.feed_url:
        http = http or services.http
        own = http is None  # a caller without the app's shared client (a one-off check)
        http = http or aiohttp.ClientSession()
        try:
            found += await read_feed(http, cfg)
        except (CapError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("CAP feed %s not read: %s", cfg.feed_url, exc)
        finally:
            if own:
                await http.close()
    # Oldest first, so an alert is recorded before the update or cancel that refers to it.
    found.sort(key=lambda a: a.sent.timestamp() if a.sent else math.inf)
    counts: dict[str, int] = {}
    now = services.clock()
    async with sessions() as session:
        where = Territory(await territory.estates(session))
    trusted = set(cfg.trusted_senders)
    for alert in found:
        if trusted and alert.sender not in trusted:
            log.warning("CAP %s dropped: sender %r is not in CAP_TRUSTED_SENDERS",
                        alert.identifier, alert.sender)
            counts["untrusted"] = counts.get("untrusted", 0) + 1
            continue
        if cfg.require_signature and not alert.signed:
            log.warning("CAP %s dropped: not signed by a CAP_TRUSTED_CERTS certificate "
                        "(CAP_REQUIRE_SIGNATURE)", alert.identifier)
            counts["unsigned"] = counts.get("unsigned", 0) + 1
            continue
        async with sessions() as session, session.begin():
            outcome = await handle_alert(session, services, alert, where, now)
        if outcome:
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts
