"""How long a free-text question takes to match against the service guides (this runs on every
message nobody else understood), and how long matching a CAP area to the territory takes.

Run: python -m bench.guide_search
"""

from __future__ import annotations

import time
from pathlib import Path

from services import cap
from services.guides import GuideIndex, load_guides

QUESTIONS = ["怎么办居住证", "how do I register my residence", "我爸爸80岁了有补贴吗",
             "楼道灯坏了好几天了", "the lift in building 3 is broken again", "交医保在哪里交",
             "I want to get married", "今天下午社区有活动吗"]


class _Estate:
    def __init__(self, i: int) -> None:
        lat, lon = 30.60 + (i // 100) * 0.004, 104.03 + (i % 100) * 0.0003
        self.id, self.latitude, self.longitude = i, lat, lon
        self.boundary = {"type": "Polygon", "coordinates": [[
            [lon, lat], [lon + 0.0002, lat], [lon + 0.0002, lat + 0.0002], [lon, lat + 0.0002],
            [lon, lat]]]}


def main() -> None:
    t0 = time.perf_counter()
    index = GuideIndex(load_guides())
    index.search("居住证")  # loads jieba's dictionary
    print(f"guide index built and jieba loaded: {time.perf_counter() - t0:.2f} s")
    rounds = 300
    t0 = time.perf_counter()
    for _ in range(rounds):
        for q in QUESTIONS:
            index.search(q, cutoff=70)
    per = (time.perf_counter() - t0) / (rounds * len(QUESTIONS))
    print(f"guide search: {per * 1e3:.3f} ms a question ({1 / per:,.0f} questions/s, one core)")

    where = cap.Territory([_Estate(i) for i in range(1000)])
    alert = cap.parse_document((Path(__file__).parent.parent / "tests" / "data" / "cap" /
                                "01-south-rainstorm.xml").read_bytes())
    t0 = time.perf_counter()
    for _ in range(20):
        hits = where.estates_in(alert.area)
    per = (time.perf_counter() - t0) / 20
    print(f"CAP area against 1,000 estates: {per * 1e3:.2f} ms, {len(hits)} estates inside")


if __name__ == "__main__":
    main()
