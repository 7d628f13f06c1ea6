"""/stats figures: zones and teams side by side over a period.

One query reads the period's reports from a covering index, with the durations computed by the
database (seconds, no datetimes to parse); medians and shares are then summed up here.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import territory
from storage.reports import period_rows


@dataclass
class Figures:
    received: int = 0
    ack_hours: list[float] = field(default_factory=list)
    fix_hours: list[float] = field(default_factory=list)
    fixed_in_sla: int = 0
    reopened: int = 0
    ratings: list[int] = field(default_factory=list)

    @property
    def median_ack(self) -> float | None:
        return statistics.median(self.ack_hours) if self.ack_hours else None

    @property
    def median_fix(self) -> float | None:
        return statistics.median(self.fix_hours) if self.fix_hours else None

    @property
    def in_sla_share(self) -> float | None:
        return self.fixed_in_sla / self.received if self.received else None

    @property
    def reopen_rate(self) -> float | None:
        return self.reopened / self.received if self.received else None

    @property
    def mean_rating(self) -> float | None:
        return statistics.fmean(self.ratings) if self.ratings else None

    def extend(self, rows: list[tuple]) -> None:
        """Rows of (seconds to ack, seconds to fix, fixed in SLA 0/1, reopened 0/1, rating)."""
        self.received += len(rows)
        self.ack_hours += [float(r[0]) / 3600 for r in rows if r[0] is not None]
        self.fix_hours += [float(r[1]) / 3600 for r in rows if r[1] is not None]
        self.fixed_in_sla += sum(r[2] for r in rows)
        self.reopened += sum(r[3] for r in rows)
        self.ratings += [r[4] for r in rows if r[4] is not None]


@dataclass
class StatsTable:
    zones: list[tuple[territory.Zone | None, Figures]]  # None: "no zone"
    teams: list[tuple[territory.Team | None, Figures]]
    total: Figures


async def compute(session: AsyncSession, since: datetime, until: datetime, *,
                  estate_ids: set[int] | None = None, zone_ids: set[int] | None = None,
                  team_ids: set[int] | None = None) -> StatsTable:
    """Figures of reports received in the period. A viewer who does not see everything passes
    the estates, zones and teams their scope covers: only those reports count, and only those
    zones and teams are listed (None: all of them)."""
    by_zone: dict[int | None, Figures] = {}
    by_team: dict[int | None, Figures] = {}
    total = Figures()
    combos: dict[tuple, list[tuple]] = {}
    for row in await period_rows(session, since, until, estate_ids):
        combos.setdefault((row[0], row[1]), []).append(row[2:])
    for (zone_id, team_id), rows in combos.items():
        by_zone.setdefault(zone_id, Figures()).extend(rows)
        by_team.setdefault(team_id, Figures()).extend(rows)
        total.extend(rows)
    zones = {z.id: z for z in await territory.zones(session)
             if zone_ids is None or z.id in zone_ids or z.id in by_zone}
    teams = {t.id: t for t in (await session.scalars(select(territory.Team))).all()
             if team_ids is None or t.id in team_ids or t.id in by_team}
    # Every zone and team shows up, even with nothing received, so they compare side by side.
    zone_rows: list[tuple[territory.Zone | None, Figures]] = [
        (zones[zid], by_zone.get(zid, Figures())) for zid in sorted(zones)]
    if None in by_zone:
        zone_rows.append((None, by_zone[None]))
    team_rows: list[tuple[territory.Team | None, Figures]] = [
        (teams[tid], by_team.get(tid, Figures())) for tid in sorted(teams)]
    if None in by_team:
        team_rows.append((None, by_team[None]))
    return StatsTable(zone_rows, team_rows, total)
