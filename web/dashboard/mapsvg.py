"""The territory as an SVG drawing: zone and estate polygons from the GeoJSON boundaries the
territory file loaded, and reports as points (overdue in red). No tiles, nothing fetched."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime

from markupsafe import Markup, escape

from storage import territory
from storage.reports import OPEN, Report

WIDTH = 640
PAD = 8


def _rings(geometry: dict | None) -> list[list[tuple[float, float]]]:
    if not geometry:
        return []
    kind, coords = geometry.get("type"), geometry.get("coordinates") or []
    polygons = [coords] if kind == "Polygon" else coords if kind == "MultiPolygon" else []
    return [[(float(x), float(y)) for x, y, *_ in ring] for poly in polygons for ring in poly]


class Projection:
    """Longitude/latitude to the drawing's x/y (equirectangular at the area's latitude)."""

    def __init__(self, points: Iterable[tuple[float, float]]) -> None:
        xs, ys = zip(*points, strict=True) if points else ((0.0, 1.0), (0.0, 1.0))
        self.west, self.east, self.south, self.north = min(xs), max(xs), min(ys), max(ys)
        self.k = math.cos(math.radians((self.south + self.north) / 2))
        span_x = max((self.east - self.west) * self.k, 1e-9)
        span_y = max(self.north - self.south, 1e-9)
        self.scale = (WIDTH - 2 * PAD) / span_x
        self.height = int(span_y * self.scale + 2 * PAD)

    def __call__(self, lon: float, lat: float) -> tuple[float, float]:
        return (PAD + (lon - self.west) * self.k * self.scale,
                PAD + (self.north - lat) * self.scale)


def draw(zones: Sequence[territory.Zone], estates: Sequence[territory.Estate],
         reports: Sequence[Report], now: datetime, lang: str) -> Markup:
    shapes = [(z, _rings(z.boundary)) for z in zones]
    areas = [(e, _rings(e.boundary)) for e in estates]
    points = [p for _, rings in shapes + areas for ring in rings for p in ring]
    if not points:
        return Markup("")
    proj = Projection(points)

    def path(rings: list[list[tuple[float, float]]]) -> str:
        return " ".join("M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in map(
            lambda p: proj(*p), ring)) + " Z" for ring in rings)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="map" role="img" '
           f'viewBox="0 0 {WIDTH} {proj.height}">']
    labels = []
    for zone, rings in shapes:
        name = escape(territory.localized(zone, lang))
        out.append(f'<path class="zone" d="{path(rings)}"><title>{name}</title></path>')
        if rings:  # the name in the zone's north-west corner, drawn over the estates
            west = min(x for x, _ in rings[0])
            north = max(y for _, y in rings[0])
            x, y = proj(west, north)
            labels.append(f'<text class="zone-name" x="{x + 6:.1f}" y="{y + 16:.1f}">{name}</text>')
    for estate, rings in areas:
        name = escape(territory.localized(estate, lang))
        out.append(f'<path class="estate" d="{path(rings)}"><title>{name}</title></path>')
    out.extend(labels)
    open_values = {s.value for s in OPEN}
    for report in reports:
        if report.latitude is None or report.longitude is None:
            continue
        x, y = proj(report.longitude, report.latitude)
        late = report.fix_due_at < now and report.status in open_values
        ref = escape(report.reference)
        out.append(f'<a href="/dashboard/reports/{ref}"><circle class="report'
                   f'{" late" if late else ""}" cx="{x:.1f}" cy="{y:.1f}" r="5">'
                   f'<title>{ref}</title></circle></a>')
    out.append("</svg>")
    return Markup("".join(out))
