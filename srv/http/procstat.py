"""CPU and memory of the server's processes, as the API and the exporter report them.

psutil measures a process's CPU percent since the previous call on the same `Process` object,
so whoever reads must keep its own objects: a `ProcessSampler` is that state. The API and the
exporter each own one, so a scrape does not shorten the API's interval (or the reverse) and
neither reports CPU over the few milliseconds since the other one asked.
"""

from __future__ import annotations

import psutil  # type: ignore[import-untyped]


class ProcessSampler:
    """Per-pid psutil handles of one reader; `forget` drops the pids that are gone."""

    def __init__(self) -> None:
        self.procs: dict[int, psutil.Process] = {}

    def figures(self, pid: int) -> dict[str, float]:
        """CPU (since this sampler's previous call for `pid`) and memory of `pid`; zeros if gone."""
        p = self.procs.get(pid)
        try:
            if p is None:
                p = self.procs[pid] = psutil.Process(pid)
            with p.oneshot():
                return {"cpu_percent": p.cpu_percent(None), "rss": float(p.memory_info().rss),
                        "mem_percent": p.memory_percent()}
        except psutil.Error:
            self.procs.pop(pid, None)
            return {"cpu_percent": 0.0, "rss": 0.0, "mem_percent": 0.0}

    def forget(self, alive: set[int]) -> None:
        for pid in list(self.procs):
            if pid not in alive:
                del self.procs[pid]
