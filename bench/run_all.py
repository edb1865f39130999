"""Run every benchmark, print a table, write the figures into docs/benchmarks.md.

`make bench` runs `python -m bench.run_all`. It waits (up to `--wait-minutes`) for the
machine to be quiet (1-minute load below `--quiet-load`), then measures, each figure the
median of `--runs` runs (3 by default; other test suites on the machine make single runs
noisy):

- full sync of `--pods` (100,000) Pods into an empty table and the no-change re-sync: the
  service as shipped (msgspec decoder, gc.freeze() after start-up), each other
  garbage-collector mode, page size 250, 16 senders, batch 1000;
- watch throughput (replay of `--events` pre-made changes) and change→commit latency at
  `--rate` events/s, as shipped and with a shorter linger;
- the naive peer (`bench.naive_peer`) on the same workloads (its full sync on
  `--naive-pods` Pods, our engine measured on the same size for the ratio);
- a py-spy profile of each phase (skipped without py-spy).

Results go to bench/results.json (merged with earlier runs per section, so `--only`
re-runs one section) and into the sections "Full sync", "Watch throughput and latency",
"Naive peer and ratios" and "Profile" of docs/benchmarks.md; other sections (and any
"Findings" written by hand) are kept as they are.

    .venv/bin/python -m bench.run_all                       # everything (about 40 minutes)
    .venv/bin/python -m bench.run_all --only full_sync --runs 1 --pods 20000
    .venv/bin/python -m bench.run_all --render              # rewrite the docs from results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from . import full_sync, profile, watch_throughput
from .common import ROOT, SimProcess, load, machine

RESULTS = ROOT / "bench" / "results.json"
DOC = ROOT / "docs" / "benchmarks.md"
SECTIONS = ("full_sync", "watch", "naive", "profile")

SHIPPED = ["--gc", "freeze"]
"""The service as `synchronizer run` runs it: msgspec decoder, gc.freeze() after start-up."""
FULL_SYNC_VARIANTS: list[tuple[str, list[str]]] = [
    ("service as shipped (msgspec decoder, gc.freeze() after start-up; page 500, 8 senders,"
     " batch 500)", SHIPPED),
    ("without gc.freeze()", []),
    ("gc.freeze() after start-up and after loading the index", ["--gc", "freeze-index"]),
    ("cyclic GC off (a bound, not a proposal)", ["--gc", "off"]),
    ("page size 250", [*SHIPPED, "--page-size", "250"]),
    ("16 senders", [*SHIPPED, "--senders", "16"]),
    ("batch 1000", [*SHIPPED, "--batch-size", "1000"]),
]
WATCH_VARIANTS: list[tuple[str, list[str]]] = [
    ("service as shipped (msgspec, gc.freeze(); 8 senders, batch 500, linger 20 ms)", SHIPPED),
    ("as shipped, linger 5 ms", [*SHIPPED, "--linger", "0.005"]),
]


def chosen(variants: list[tuple[str, list[str]]], args: argparse.Namespace
           ) -> list[tuple[str, list[str]]]:
    """The variants to run: all, the first (`--quick`), or those `--variant` names."""
    if args.variant:
        return [v for v in variants if any(name in v[0] for name in args.variant)]
    return variants[:1] if args.quick else variants


def merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A section's new results, keeping the old runs of (current) variants not measured
    again; results of variants no longer listed are dropped."""
    if not old:
        return new
    for key in ("variants", "throughput", "latency"):
        if key in new and key in old:
            labels = {v["label"] for v in new[key]}
            order = [label for label, _ in
                     (FULL_SYNC_VARIANTS if key == "variants" else WATCH_VARIANTS)]
            kept = [v for v in old[key] if v["label"] not in labels and v["label"] in order]
            new[key] = sorted(kept + new[key], key=lambda v: order.index(v["label"])
                              if v["label"] in order else len(order))
    return new


def wait_quiet(threshold: float, minutes: float) -> float:
    """Wait until the 1-minute load is below `threshold` (at most `minutes`); return it."""
    deadline = time.monotonic() + minutes * 60
    while (now := load()) >= threshold and time.monotonic() < deadline:
        print(f"load {now:.2f} >= {threshold}: waiting for a quieter machine", flush=True)
        time.sleep(60)
    return load()


def stamp() -> dict[str, Any]:
    """When and in what conditions a section was measured."""
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "load": load(),
            "machine": machine()}


def run_full_sync(sim: SimProcess, args: argparse.Namespace) -> dict[str, Any]:
    """Every full-sync variant on `args.pods` Pods."""
    out: dict[str, Any] = {**stamp(), "pods": args.pods, "runs": args.runs, "variants": []}
    for label, options in chosen(FULL_SYNC_VARIANTS, args):
        s = full_sync.measure(sim, pods=args.pods, runs=args.runs, options=options)
        s["label"], s["date"] = label, stamp()["date"]
        print(full_sync.describe(s), flush=True)
        out["variants"].append(s)
    return out


def run_watch(sim: SimProcess, args: argparse.Namespace) -> dict[str, Any]:
    """Throughput and latency of each `WATCH_VARIANTS` entry."""
    out: dict[str, Any] = {**stamp(), "pods": args.watch_pods, "events": args.events,
                           "rate": args.rate, "seconds": args.seconds, "runs": args.runs,
                           "throughput": [], "latency": []}
    for label, options in chosen(WATCH_VARIANTS, args):
        t = watch_throughput.measure_throughput(sim, pods=args.watch_pods, events=args.events,
                                                runs=args.runs, options=options)
        t["label"], t["date"] = label, stamp()["date"]
        print(watch_throughput.describe_throughput(t), flush=True)
        out["throughput"].append(t)
        lat = watch_throughput.measure_latency(sim, pods=args.watch_pods, rate=args.rate,
                                               seconds=args.seconds, runs=args.runs,
                                               options=options)
        lat["label"], lat["date"] = label, stamp()["date"]
        print(watch_throughput.describe_latency(lat), flush=True)
        out["latency"].append(lat)
    return out


def run_naive(sim: SimProcess, args: argparse.Namespace) -> dict[str, Any]:
    """The naive peer and our engine on the same workloads."""
    out: dict[str, Any] = {**stamp(), "pods": args.naive_pods, "events": args.naive_events,
                           "watch_pods": args.watch_pods, "rate": args.rate,
                           "seconds": args.seconds, "runs": args.runs}
    old = args.previous.get("naive") if args.keep_naive else None
    for impl in ("naive", "ours"):
        if impl == "naive" and old:
            out.update({k: old[k] for k in ("naive_full_sync", "naive_throughput",
                                             "naive_latency")})
            out["naive_date"], out["naive_load"] = old["date"], old["load"]
            continue
        options = SHIPPED if impl == "ours" else []
        s = full_sync.measure(sim, impl=impl, pods=args.naive_pods, runs=args.runs,
                              options=options)
        print(full_sync.describe(s), flush=True)
        out[f"{impl}_full_sync"] = s
        t = watch_throughput.measure_throughput(sim, impl=impl, pods=args.watch_pods,
                                                events=args.naive_events, runs=args.runs,
                                                options=options)
        print(watch_throughput.describe_throughput(t), flush=True)
        out[f"{impl}_throughput"] = t
        if impl == "naive":
            lat = watch_throughput.measure_latency(sim, impl="naive", pods=args.watch_pods,
                                                   rate=args.rate, seconds=args.seconds,
                                                   runs=args.runs)
            print(watch_throughput.describe_latency(lat), flush=True)
            out["naive_latency"] = lat
    return out


def run_profile(sim: SimProcess, args: argparse.Namespace) -> dict[str, Any]:
    """One py-spy profile of each phase."""
    if profile.PYSPY is None:
        print("py-spy is not installed (.venv/bin/pip install py-spy): no profile", flush=True)
        return {**stamp(), "skipped": "py-spy not installed"}
    out = {**stamp(), **profile.profile(sim, pods=args.pods, events=args.events, rate=200,
                                        options=SHIPPED)}
    print(profile.render(out), flush=True)
    return out


# -- the document -----------------------------------------------------------------------------

def _conditions(r: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> str:
    m = r["machine"]
    dates = sorted({row["date"] for row in rows or () if "date" in row} | {r["date"]})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    return (f"Measured {when}: {m['cores']} cores ({m['cpu']}), {m['mem_gib']} GiB,"
            f" Python {m['python']}, MariaDB {m['mariadb']} on loopback (Debian defaults:"
            f" 128 MB buffer pool, `innodb_flush_log_at_trx_commit=1`), the simulated API"
            f" server in its own process on loopback. Other engineers' test suites shared the"
            f" machine: each figure carries the median 1-minute load of its runs (the load"
            f" when this section's latest invocation started: {r['load']:.2f})."
            f" Medians of {r['runs']} runs.")


def _runs(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def render_full_sync(r: dict[str, Any]) -> str:
    """The "Full sync" section."""
    v0 = r["variants"][0]
    lines = [
        "How long the first full sync of a cluster takes into an empty `pods` table (list",
        "page by page, diff against the empty index, write every Pod), then a second full",
        "sync with nothing changed (list again, diff against the stored index, write",
        "nothing), and the synchronizer process's peak RSS (VmHWM: interpreter, imports and",
        f"all). {r['pods']:,} Pods made by the simulator's `populate` (about 5.5 KB of JSON",
        "each); the synchronizer side (`bench/ours.py`: `KubePodSource`, `ClusterReconciler`",
        "with Prometheus metrics, `MySQLStore` with lease and fence, as `synchronizer.app`",
        "wires them) runs in a fresh process per run, on a freshly created database.",
        "",
        _conditions(r, r["variants"]),
        "",
        "```sh",
        f".venv/bin/python -m bench.full_sync --pods {r['pods']} --runs {r['runs']} --gc freeze"
        "  # as shipped",
        f".venv/bin/python -m bench.full_sync --pods {r['pods']} --runs {r['runs']} --page-size"
        " 250  # any variant's options (see bench/ours.py --help)",
        "```",
        "",
        f"Aim (issue \"Foundation\"): initial ≤ 15 s, no-change re-sync ≤ 6 s, peak RSS ≤ 600 MB."
        f" As shipped: initial **{v0['initial_s']:.1f} s**"
        f" ({v0['initial_pods_s']:,.0f} pods/s), re-sync **{v0['resync_s']:.1f} s**"
        f" ({v0['resync_pods_s']:,.0f} pods/s), peak RSS **{v0['vmhwm_mib']:.0f} MiB**.",
        "",
        "| variant | initial s (pods/s) | re-sync s (pods/s) | peak RSS MiB | sync CPU s:"
        " ours / sim / MariaDB (initial; re-sync) | GC s (initial; re-sync) | load |"
        " initial s, each run |",
        "| --- | --: | --: | --: | --- | --- | --: | --- |",
    ]
    for s in r["variants"]:
        lines.append(
            f"| {s['label']} | {s['initial_s']:.2f} ({s['initial_pods_s']:,.0f}) |"
            f" {s['resync_s']:.2f} ({s['resync_pods_s']:,.0f}) | {s['vmhwm_mib']:.0f} |"
            f" {s['initial_cpu_s']:.1f} / {s.get('initial_sim_cpu_s', 0):.1f} /"
            f" {s.get('initial_db_cpu_s', 0):.1f}; {s['resync_cpu_s']:.1f} /"
            f" {s.get('resync_sim_cpu_s', 0):.1f} / {s.get('resync_db_cpu_s', 0):.1f} |"
            f" {s.get('initial_gc_s', 0):.2f}; {s.get('resync_gc_s', 0):.2f} |"
            f" {s['load']:.2f} | {_runs([x['initial_s'] for x in s['runs']], '.1f')} |")
    lines += ["", "CPU is per process over the phase (MariaDB's includes whatever other",
              "clients did meanwhile); GC is the wall time inside the cyclic collector",
              "(`gc.callbacks`) in the synchronizer process.", ""]
    return "\n".join(lines)


def render_watch(r: dict[str, Any]) -> str:
    """The "Watch throughput and latency" section."""
    lines = [
        f"Both start from a cluster of {r['pods']:,} Pods, a fresh database and a synchronizer",
        "process that has finished its first full sync.",
        "",
        "*Throughput.* So that the simulator is not the bottleneck, the history is made",
        "first: once the synchronizer's watch is open, the simulator holds the stream (its",
        f"stall switch), its churn makes {r['events']:,} changes flat out (creates, deletes,",
        "re-creates, module moves, in-place updates including status-only ones — the test",
        "mix), then the stream is released and replays them as fast as they are read.",
        "Measured from the first event received to the return of",
        "`ClusterReconciler.caught_up(final version)` (everything received is committed);",
        "the table is then checked against the simulator's live Pods. rows/s counts the",
        "records handed to the store: the senders coalesce several events of one Pod.",
        "",
        f"*Latency.* The simulator (`bench/simproc.py`) makes changes at {r['rate']:,.0f}/s for",
        f"{r['seconds']:.0f} s and logs each change's resourceVersion, Pod uid and wall time;",
        "the synchronizer logs, for every record of every committed batch, its uid, version,",
        "receipt time and the time `Store.apply` returned. An event's latency runs from its",
        "change in the simulator to the first commit of that Pod at that version or newer.",
        "It includes the simulator waking the stream and writing the chunk, loopback HTTP,",
        "parsing and projection, the gate, the sender's linger (20 ms) and batching, the",
        "transaction and its commit (an fsync: `innodb_flush_log_at_trx_commit=1`).",
        "receipt→commit is the synchronizer's own part (from the record's `query_at`).",
        "",
        _conditions(r, r["throughput"] + r["latency"]),
        "",
        "```sh",
        f".venv/bin/python -m bench.watch_throughput --pods {r['pods']} --events {r['events']}"
        f" --rate {r['rate']:.0f} --seconds {r['seconds']:.0f} --runs {r['runs']} --gc freeze",
        "```",
        "",
        "Aim: ≥ 5,000 events/s sustained; p99 ≤ 500 ms at 1,000 events/s.",
        "",
        "| variant | events/s | rows/s | CPU µs/event: ours (sim, MariaDB) | load |"
        " events/s, each run |",
        "| --- | --: | --: | --- | --: | --- |",
    ]
    for t in r["throughput"]:
        n = t["events"]
        lines.append(
            f"| {t['label']} | **{t['events_s']:,.0f}** | {t['rows_s']:,.0f} |"
            f" {t['cpu_per_event_us']:.0f} ({t.get('sim_cpu_s', 0) / n * 1e6:.0f},"
            f" {t.get('db_cpu_s', 0) / n * 1e6:.0f}) | {t['load']:.2f} |"
            f" {_runs([x['events_s'] for x in t['runs']], ',.0f')} |")
    lines += ["", "| variant | offered events/s | change→commit p50 / p99 / max ms |"
              " receipt→commit p50 / p99 ms | load | p99 ms, each run |",
              "| --- | --: | --- | --- | --: | --- |"]
    for lat in r["latency"]:
        lines.append(
            f"| {lat['label']} | {lat['offered_s']:,.0f} | **{lat['p50_ms']:.1f}** /"
            f" **{lat['p99_ms']:.1f}** / {lat['max_ms']:.0f} | {lat['in_p50_ms']:.1f} /"
            f" {lat['in_p99_ms']:.1f} | {lat['load']:.2f} |"
            f" {_runs([x['p99_ms'] for x in lat['runs']], '.0f')} |")
    lines.append("")
    return "\n".join(lines)


def render_naive(r: dict[str, Any]) -> str:
    """The "Naive peer and ratios" section."""
    nf, of = r["naive_full_sync"], r["ours_full_sync"]
    nt, ot = r["naive_throughput"], r["ours_throughput"]
    nl = r["naive_latency"]
    lines = [
        "`bench/naive_peer.py` is the synchronizer as it is usually first written: the",
        "official kubernetes Python client (`list_pod_for_all_namespaces` in pages of 500,",
        "`watch.Watch().stream(...)` from the list's version), every Pod deserialised into",
        "the client's `V1Pod` models, projected to the same columns, and written with one",
        "single-row autocommit `INSERT ... ON DUPLICATE KEY UPDATE` per Pod or event",
        "(pymysql): no batching, no checksum (so the no-change re-sync rewrites every row).",
        "Same simulator, same database server, same table, same measurement as ours.",
        f"The naive full sync is measured on {r['pods']:,} Pods (its 100,000-Pod sync takes",
        "minutes per run); ours is measured on the same size for the ratio. Throughput",
        f"replays {r['events']:,} pre-made changes on a {r['watch_pods']:,}-Pod cluster for",
        "both.",
        "",
        _conditions(r) + (f" The naive peer's figures were measured {r['naive_date']} (load"
                          f" {r['naive_load']:.2f}) and reused: they do not depend on our code."
                          if "naive_date" in r else ""),
        "",
        "```sh",
        f".venv/bin/python -m bench.full_sync --impl naive --pods {r['pods']} --runs {r['runs']}",
        f".venv/bin/python -m bench.full_sync --impl ours --pods {r['pods']} --runs {r['runs']}"
        " --gc freeze",
        f".venv/bin/python -m bench.watch_throughput --impl naive --pods {r['watch_pods']}"
        f" --events {r['events']} --rate {r['rate']:.0f} --seconds {r['seconds']:.0f}"
        f" --runs {r['runs']}",
        f".venv/bin/python -m bench.watch_throughput --impl ours --only throughput --pods"
        f" {r['watch_pods']} --events {r['events']} --runs {r['runs']} --gc freeze",
        "```",
        "",
        "| workload | naive | ours | ours / naive | load (naive; ours) |",
        "| --- | --: | --: | --: | --- |",
        f"| full sync, {r['pods']:,} Pods into an empty table, pods/s |"
        f" {nf['initial_pods_s']:,.0f} | {of['initial_pods_s']:,.0f} |"
        f" **{of['initial_pods_s'] / nf['initial_pods_s']:.1f}x** |"
        f" {nf['load']:.2f}; {of['load']:.2f} |",
        f"| no-change re-sync, pods/s | {nf['resync_pods_s']:,.0f} |"
        f" {of['resync_pods_s']:,.0f} | **{of['resync_pods_s'] / nf['resync_pods_s']:.1f}x** |"
        f" {nf['load']:.2f}; {of['load']:.2f} |",
        f"| peak RSS of the full-sync process, MiB | {nf['vmhwm_mib']:.0f} |"
        f" {of['vmhwm_mib']:.0f} | {of['vmhwm_mib'] / nf['vmhwm_mib']:.2f}x | |",
        f"| watch events/s (replay) | {nt['events_s']:,.0f} | {ot['events_s']:,.0f} |"
        f" **{ot['events_s'] / nt['events_s']:.1f}x** | {nt['load']:.2f}; {ot['load']:.2f} |",
        f"| CPU µs per event (synchronizer process) | {nt['cpu_per_event_us']:.0f} |"
        f" {ot['cpu_per_event_us']:.0f} | {nt['cpu_per_event_us'] / ot['cpu_per_event_us']:.1f}x"
        " less | |",
        "",
        f"The naive peer at {r['rate']:,.0f} events/s for {r['seconds']:.0f} s (it cannot keep up,",
        "so its backlog, and the latency, grow for the whole run): change→commit p50"
        f" {nl['p50_ms'] / 1000:.1f} s, p99 {nl['p99_ms'] / 1000:.1f} s (load {nl['load']:.2f});"
        " its receipt→commit (one autocommit upsert) p50"
        f" {nl['in_p50_ms']:.1f} ms, p99 {nl['in_p99_ms']:.1f} ms.",
        "",
    ]
    return "\n".join(lines)


def render_profile(r: dict[str, Any]) -> str:
    """The "Profile" section (the tables; the reading of them is in "Findings")."""
    if r.get("skipped"):
        return f"Not measured: {r['skipped']}.\n"
    return "\n".join([
        "py-spy (`bench/profile.py`) sampled the synchronizer process at 200 Hz, idle",
        "frames included (the event loop in `select` = waiting for the network or the",
        "database), in three phases: the first full sync of"
        f" {r['pods']:,} Pods, the no-change re-sync, and a watch replay of"
        f" {r['events']:,} changes. Shares are of the event-loop thread's samples; a",
        "C function (orjson, the driver) counts as the Python line that called it.",
        f"Measured {r['date']}, load {r['load']:.2f}.",
        "",
        "```sh",
        ".venv/bin/pip install py-spy",
        f".venv/bin/python -m bench.profile --pods {r['pods']} --events {r['events']}"
        " --gc freeze",
        "```",
        "",
        profile.render(r),
    ])


RENDER: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "full_sync": ("Full sync", render_full_sync),
    "watch": ("Watch throughput and latency", render_watch),
    "naive": ("Naive peer and ratios", render_naive),
    "profile": ("Profile", render_profile),
}


def replace_sections(text: str, sections: dict[str, str]) -> str:
    """Replace (or append) `## title` sections of a Markdown text; keep every other one."""
    parts: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.startswith("## "):
            parts.append([])
        parts[-1].append(line)
    out: list[str] = []
    done: set[str] = set()
    for part in parts:
        title = part[0][3:].strip() if part and part[0].startswith("## ") else None
        if title in sections:
            out.append(f"## {title}\n\n{sections[title].strip()}\n")
            done.add(title)
        else:
            out.append("\n".join(part).rstrip() + "\n")
    for title, body in sections.items():
        if title not in done:
            out.append(f"## {title}\n\n{body.strip()}\n")
    return "\n".join(p for p in out if p.strip()).rstrip() + "\n"


def write_doc(results: dict[str, Any]) -> None:
    """Render every measured section into docs/benchmarks.md."""
    sections = {RENDER[k][0]: RENDER[k][1](results[k]) for k in SECTIONS if k in results}
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    DOC.write_text(replace_sections(text, sections))


def main() -> None:
    """Parse options, wait for a quiet machine, measure, write."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", choices=SECTIONS)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--pods", type=int, default=100_000)
    p.add_argument("--watch-pods", type=int, default=20_000)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--naive-pods", type=int, default=20_000)
    p.add_argument("--naive-events", type=int, default=20_000)
    p.add_argument("--quick", action="store_true", help="defaults only, no variants")
    p.add_argument("--variant", action="append",
                   help="only the variants whose label contains this (repeat); the other"
                        " variants' earlier results are kept")
    p.add_argument("--quiet-load", type=float, default=1.0)
    p.add_argument("--wait-minutes", type=float, default=10)
    p.add_argument("--render", action="store_true", help="only rewrite the docs")
    p.add_argument("--keep-naive", action="store_true",
                   help="reuse the naive peer's figures from results.json (they do not"
                        " depend on our code); measure only ours again")
    args = p.parse_args()
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    args.previous = results
    if not args.render:
        print(f"load {wait_quiet(args.quiet_load, args.wait_minutes):.2f}; measuring",
              flush=True)
        steps = {"full_sync": run_full_sync, "watch": run_watch, "naive": run_naive,
                 "profile": run_profile}
        with SimProcess() as sim:
            for name in args.only or SECTIONS:
                results[name] = merge(results.get(name), steps[name](sim, args))
                RESULTS.write_text(json.dumps(results, indent=1, default=str) + "\n")
                write_doc(results)
    write_doc(results)
    print(f"wrote {DOC.relative_to(ROOT)} and {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
