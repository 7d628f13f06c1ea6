"""Zone-vs-zone and team figures for a period, within the viewer's scope: the chat's /stats
(handlers/report_staff.py) and the staff dashboard's figures page both build them here, with
the same cells and the same CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from storage import access, territory
from storage import report_stats as stats
from storage.access import Scope

if TYPE_CHECKING:
    from services.geo import TerritoryIndex

COLUMNS = ("name", "received", "ack", "fix", "sla", "reopen", "rating")
MAX_DAYS = 3660

Translate = Callable[..., str]  # t(key, **values) in the reader's language


async def compute(session: AsyncSession, geo: TerritoryIndex, scope: Scope, days: int,
                  now: datetime) -> stats.StatsTable:
    """The figures of the reports received in the last `days` days that the scope reaches."""
    zone_ids, team_ids = await access.reach(session, scope, geo)
    return await stats.compute(session, now - timedelta(days=days), now,
                               estate_ids=None if scope.everything else scope.estate_ids,
                               zone_ids=zone_ids, team_ids=team_ids)


def cells(name: str, fig: stats.Figures) -> list[str]:
    def hours(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}h"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.0f}%"

    return [name, str(fig.received), hours(fig.median_ack), hours(fig.median_fix),
            pct(fig.in_sla_share), pct(fig.reopen_rate),
            "-" if fig.mean_rating is None else f"{fig.mean_rating:.2f}"]


def rows(t: Translate, lang: str, table: stats.StatsTable
         ) -> list[tuple[str, list[str], stats.Figures]]:
    """(kind, cells, figures) for every zone, then every team."""
    found = []
    for kind, items in (("zone", table.zones), ("team", table.teams)):
        for row, fig in items:
            name = territory.localized(row, lang) if row is not None else t("reports.stats_none")
            found.append((kind, cells(name, fig), fig))
    return found


def csv_bytes(t: Translate, lang: str, table: stats.StatsTable) -> bytes:
    """The table as CSV (UTF-8 with a BOM, so spreadsheet programs read the Chinese)."""
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow([t("reports.col_kind"), *[t(f"reports.col_{c}") for c in COLUMNS]])
    for kind, cells_, _ in rows(t, lang, table):
        out.writerow([t(f"reports.stats_{kind}"), *cells_])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")
