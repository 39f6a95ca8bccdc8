"""Resident memory of server processes, sampled from /proc while something runs."""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MiB = 1024 * 1024


def proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/<pid>/status (VmRSS, VmHWM, RssAnon, RssFile, RssShmem), in bytes."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name, _sep, rest = line.partition(":")
                if name in {"VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"}:
                    values[name] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values


@dataclass
class Peak:
    rss: int = 0  # RssAnon + RssFile + RssShmem of the busiest single process
    anon: int = 0  # RssAnon alone (heap, not page cache mapped from files)
    total: int = 0  # all sampled processes added up, at the worst instant
    samples: int = 0
    per_pid: dict[int, tuple[int, int]] = field(default_factory=dict)


class RssSampler(threading.Thread):
    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self._pids = pids
        self._interval = interval
        self._stop_event = threading.Event()
        self.peak = Peak()

    def run(self) -> None:
        while not self._stop_event.is_set():
            total = 0
            for pid in self._pids():
                status = proc_status(pid)
                if not status:
                    continue
                rss = status.get("RssAnon", 0) + status.get("RssFile", 0) + status.get("RssShmem", 0)
                anon = status.get("RssAnon", 0)
                total += rss
                old_rss, old_anon = self.peak.per_pid.get(pid, (0, 0))
                self.peak.per_pid[pid] = (max(old_rss, rss), max(old_anon, anon))
                self.peak.rss = max(self.peak.rss, rss)
                self.peak.anon = max(self.peak.anon, anon)
            self.peak.total = max(self.peak.total, total)
            self.peak.samples += 1
            time.sleep(self._interval)

    def __enter__(self) -> "RssSampler":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join()
