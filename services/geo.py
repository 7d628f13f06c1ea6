"""Where things are: a point to a zone and an estate, a typed name to an estate.

Built once from the territory tables and reused; point-in-polygon with shapely, names matched
with rapidfuzz over Chinese names, English names, aliases and their pinyin.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from pypinyin import lazy_pinyin
from rapidfuzz import fuzz, process
from shapely.geometry import Point, shape
from shapely.prepared import PreparedGeometry, prep
from sqlalchemy.ext.asyncio import AsyncSession

from storage import territory as terr


class GeometryError(ValueError):
    pass


def validate_geometry(geometry: dict | None, label: str) -> None:
    if not geometry or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise GeometryError(f"{label}: expected a GeoJSON Polygon or MultiPolygon")
    try:
        geom = shape(geometry)
    except Exception as exc:  # shapely raises several types for malformed input
        raise GeometryError(f"{label}: {exc}") from None
    if not geom.is_valid or geom.is_empty:
        raise GeometryError(f"{label}: polygon is not valid")


def validate_territory(data: dict) -> None:
    """Every shape in a territory file must be a valid GeoJSON polygon."""
    sd = data.get("subdistrict") or {}
    if sd.get("boundary"):
        validate_geometry(sd["boundary"], sd.get("code", "subdistrict"))
    for st in data.get("stations", []):
        for cm in st.get("committees", []):
            for es in cm.get("estates", []):
                if es.get("boundary"):
                    validate_geometry(es["boundary"], es.get("code", "?"))
    zones = data.get("zones", {})
    if zones and zones.get("type") != "FeatureCollection":
        raise GeometryError("zones: expected a GeoJSON FeatureCollection")
    for feature in zones.get("features", []):
        validate_geometry(feature.get("geometry"), feature.get("properties", {}).get("code", "?"))


def _fold(text: str) -> str:
    """Lower-case, drop spaces, punctuation and zero-width characters."""
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\W_]+", "", text)


def _keys(*names: str) -> set[str]:
    keys = set()
    for name in names:
        if not name:
            continue
        keys.add(_fold(name))
        if re.search(r"[\u4e00-\u9fff]", name):
            keys.add(_fold("".join(lazy_pinyin(name))))
    keys.discard("")
    return keys


@dataclass(frozen=True)
class Place:
    estate_id: int | None
    zone_id: int | None
    inside: bool  # inside the sub-district at all


class TerritoryIndex:
    def __init__(self) -> None:
        self._zones: list[tuple[int, PreparedGeometry]] = []
        self._estates: list[tuple[int, PreparedGeometry]] = []
        self._boundary = None
        self._choices: dict[str, int] = {}
        self._estate_points: dict[int, Point] = {}

    @classmethod
    async def build(cls, session: AsyncSession) -> TerritoryIndex:
        index = cls()
        await index.reload(session)
        return index

    async def reload(self, session: AsyncSession) -> None:
        from sqlalchemy import select

        zones = await terr.zones(session)
        estates = await terr.estates(session)
        sub = await session.scalar(select(terr.Subdistrict).limit(1))
        self._zones = [(z.id, prep(shape(z.boundary))) for z in zones]
        self._estates = [(e.id, prep(shape(e.boundary))) for e in estates if e.boundary]
        self._estate_points = {e.id: Point(e.longitude, e.latitude) for e in estates}
        shapes = [shape(z.boundary) for z in zones]
        if sub is not None and sub.boundary:
            self._boundary = prep(shape(sub.boundary))
        elif shapes:
            from shapely.ops import unary_union

            self._boundary = prep(unary_union(shapes))
        choices: dict[str, int] = {}
        for e in estates:
            for key in _keys(e.name_zh, e.name_en, *(e.aliases or [])):
                choices[key] = e.id
        self._choices = choices

    def locate(self, latitude: float, longitude: float) -> Place:
        point = Point(longitude, latitude)
        inside = self._boundary.contains(point) if self._boundary is not None else False
        zone_id = next((zid for zid, geom in self._zones if geom.contains(point)), None)
        estate_id = next((eid for eid, geom in self._estates if geom.contains(point)), None)
        return Place(estate_id=estate_id, zone_id=zone_id, inside=inside or zone_id is not None)

    def zone_of_estate(self, estate_id: int) -> int | None:
        point = self._estate_points.get(estate_id)
        if point is None:
            return None
        return next((zid for zid, geom in self._zones if geom.contains(point)), None)

    def match_estate(self, text: str, limit: int = 3, cutoff: float = 60) -> list[tuple[int, float]]:
        """Estates whose names look like `text`, best first, as (estate id, score 0-100)."""
        query = _fold(text)
        if not query or not self._choices:
            return []
        variants = {query}
        if re.search(r"[\u4e00-\u9fff]", text):
            variants.add(_fold("".join(lazy_pinyin(text))))
        best: dict[int, float] = {}
        for variant in variants:
            for key, score, _ in process.extract(
                variant, list(self._choices), scorer=_score, limit=10, score_cutoff=cutoff
            ):
                eid = self._choices[key]
                best[eid] = max(best.get(eid, 0), score)
        return sorted(best.items(), key=lambda kv: -kv[1])[:limit]


def _score(a: str, b: str, **kwargs: object) -> float:
    # A whole-word ratio for typos, a partial one for short names typed inside longer text;
    # the partial score is damped so "中海" does not tie with "中海名城" exactly.
    full = fuzz.ratio(a, b)
    if min(len(a), len(b)) < 2:
        return full
    return max(full, 0.9 * fuzz.partial_ratio(a, b))
