"""Where the time goes: py-spy samples of the synchronizer process in each phase.

py-spy (a sampling profiler in its own process: no instrumentation, so the profile does
not distort what it measures) samples `bench.ours` at `--rate` Hz during three phases:
the first full sync of `--pods` Pods into an empty table, the no-change re-sync, and a
watch replay of `--events` changes (as in `bench.watch_throughput`). Idle samples are
kept, so "waiting" (the event loop in `select`, i.e. for the network or the database)
shows up as such. Reported per phase: the functions with the most samples of their own
(self) and in total (inclusive, children included), as a share of all samples of the
event-loop thread. Frames are aggregated by function (line numbers dropped).

Needs py-spy in the venv (`.venv/bin/pip install py-spy`); without it the profile is skipped.

    .venv/bin/python -m bench.profile --pods 100000 --events 100000
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from . import full_sync, watch_throughput
from .common import ROOT, SimProcess, Worker, drop_database, fresh_database, load

PYSPY = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
PLUMBING = frozenset({"<module>", "_run_module_as_main", "_run_code", "run_until_complete",
                      "run_forever", "_run_once", "run", "_run", "main", "main_async"})
"""Frames every sample passes through (interpreter and event loop): left out of "inclusive"."""
_FRAME = re.compile(r"^(?P<name>.*) \((?P<path>.*?)(?::\d+)?\)$")


def short(path: str) -> str:
    """A frame's file relative to the checkout or to site-packages."""
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return path


def function(frame: str) -> str:
    """`name (path)` of a py-spy frame, without its line number."""
    m = _FRAME.match(frame.strip())
    return f"{m['name']} ({short(m['path'])})" if m else frame.strip()


class Sampler:
    """py-spy recording one process until `stop()`."""

    def __init__(self, pid: int, rate: int) -> None:
        self.out = Path(tempfile.mkstemp(prefix="bench-pyspy-", suffix=".txt")[1])
        assert PYSPY is not None
        self.proc = subprocess.Popen(
            [PYSPY, "record", "--pid", str(pid), "--rate", str(rate), "--idle",
             "--format", "raw", "--output", str(self.out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self) -> dict[str, Any]:
        """Stop sampling; return the profile summary (see `summarise`)."""
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=120)
        text = self.out.read_text() if self.out.exists() else ""
        self.out.unlink(missing_ok=True)
        if not text:
            raise RuntimeError(f"py-spy wrote nothing: {err.strip()[-500:]}")
        return summarise(text)


def summarise(raw: str, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares per function, event-loop thread only."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        frames = [function(f) for f in stack.split(";")]
        if any(f.startswith("Thread._bootstrap ") for f in frames):
            continue  # helper threads (the stdin reader), not the event loop
        count = int(count_text)
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            incl[name] += count
    return {"samples": total,
            "self": [(name, n / total) for name, n in own.most_common(top)],
            "inclusive": [(name, n / total) for name, n in incl.most_common(top * 3)]}


def profile(sim: SimProcess, *, pods: int, events: int, rate: int,
            options: list[str]) -> dict[str, Any]:
    """Profile the three phases; return {phase: summary} plus the conditions."""
    out: dict[str, Any] = {"load": load(), "pods": pods, "events": events, "rate": rate}
    cluster = full_sync.prepare(sim, pods)
    dsn = fresh_database(full_sync.DATABASE)
    with Worker(full_sync.MODULES["ours"],
                full_sync.worker_args(sim, cluster, dsn, options)) as worker:
        worker.call("ping")  # set-up (imports, store) done: sample the sync only
        sampler = Sampler(worker.pid, rate)
        out["full_sync_seconds"] = worker.call("start")["seconds"]
        out["full_sync"] = sampler.stop()
        sampler = Sampler(worker.pid, rate)
        out["resync_seconds"] = worker.call("resync")["seconds"]
        out["resync"] = sampler.stop()
    drop_database(full_sync.DATABASE)

    cluster = watch_throughput.prepare(sim, watch_throughput_pods(pods))
    sim.stall(cluster, True)
    worker = watch_throughput.start_worker(sim, cluster, "ours", options)
    try:
        with worker:
            sim.wait_watchers(cluster, 1)
            sim.churn_flat_out(cluster, events, seed=300)
            target = sim.stats(cluster)["resourceVersion"]
            worker.call("arm")
            sampler = Sampler(worker.pid, rate)
            sim.stall(cluster, False)
            r = worker.call("catch_up", rv=target)
            out["watch"] = sampler.stop()
            out["watch_events_s"] = r["events"] / (r["done"] - r["first_event"])
    finally:
        sim.stall(cluster, False)
    drop_database(watch_throughput.DATABASE)
    return out


def watch_throughput_pods(pods: int) -> int:
    """The watch cluster's size: that of the throughput benchmark, at most `pods`."""
    return min(pods, 20_000)


def render(result: dict[str, Any], top: int = 12) -> str:
    """Markdown tables of a profile."""
    lines = []
    titles = {"full_sync": f"first full sync ({result.get('full_sync_seconds', 0):.1f} s)",
              "resync": f"no-change re-sync ({result.get('resync_seconds', 0):.1f} s)",
              "watch": f"watch replay ({result.get('watch_events_s', 0):,.0f} events/s)"}
    for phase, title in titles.items():
        summary = result.get(phase)
        if not summary:
            continue
        lines += [f"**{title}**, {summary['samples']:,} samples", "",
                  "| self % | function | | inclusive % | function |",
                  "| --: | --- | --- | --: | --- |"]
        inclusive = [row for row in summary["inclusive"]
                     if row[0].split(" (", 1)[0].rsplit(".", 1)[-1] not in PLUMBING]
        for i in range(top):
            left = summary["self"][i] if i < len(summary["self"]) else ("", 0.0)
            right = inclusive[i] if i < len(inclusive) else ("", 0.0)
            lines.append(f"| {left[1] * 100:.1f} | `{left[0]}` | | {right[1] * 100:.1f} |"
                         f" `{right[0]}` |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    """Parse options, profile, print Markdown."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=100_000)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--rate", type=int, default=200)
    args, options = p.parse_known_args()
    if PYSPY is None:
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    with SimProcess() as sim:
        print(render(profile(sim, pods=args.pods, events=args.events, rate=args.rate,
                             options=options)))


if __name__ == "__main__":
    main()
