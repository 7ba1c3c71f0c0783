"""Make the RESULTS.md tables from the raw rounds under bench/results/ (never typed by hand).

    python bench/report.py                  # print the tables of the latest complete runs
    python bench/report.py --write          # and put them into bench/RESULTS.md
    python bench/report.py --results bench/out/quick --quick   # try it on smoke runs
    python bench/report.py --run DIR --region NAME [--title T] [--write]   # one given run

For each comparison it takes the latest complete, non-quick run directory written by
``bench/runinfo.py`` (``bench/results/<date>/<bench>-<time>/``), and from its ``rounds.jsonl``
computes for every figure the median over rounds, with the min and max beside it, and the ratio
Rumor / peer of the medians, against the targets of issue 18. Each table says which run it
comes from: the date, the machine (CPU, cores, kernel, tool versions), the load average before
and after, the commit and the command. ``--write`` replaces what lies between
``<!-- report:NAME:begin -->`` and ``<!-- report:NAME:end -->`` in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = ROOT / "bench" / "RESULTS.md"


@dataclass(frozen=True)
class Metric:
    test: str                 # the rounds' "test" field
    key: str                  # the figure in each round
    label: str
    fmt: str = "{:,.0f}"
    target: str = ""          # e.g. ">= 0.75x"
    higher_is_better: bool = True


@dataclass(frozen=True)
class Bench:
    name: str                 # run directory prefix, and the RESULTS.md region
    title: str
    peer: str                 # the rounds' "who" of the reference
    metrics: tuple[Metric, ...]
    make_cmd: str
    subject: str = "rumor"    # the rounds' "who" of the side measured


LB = Bench("lb_vs_haproxy", "Load balancer (lb/) vs HAProxy", "haproxy", (
    Metric("http-small", "rps", "HTTP mode, 100 B: req/s", target=">= 0.75x"),
    Metric("http-small", "p99_ms", "HTTP mode: p99 (ms)", "{:.2f}", "<= 1.5x", False),
    Metric("http-small", "cpu_us_per_req", "HTTP mode: CPU per request (us)", "{:.1f}",
           "<= 1.4x", False),
    Metric("tcp-small", "rps", "TCP mode, 100 B: req/s (HAProxy: splice-auto)",
           target=">= 0.95x"),
    Metric("tcp-small", "p99_ms", "TCP mode: p99 (ms)", "{:.2f}", "", False),
    Metric("tcp-small", "cpu_us_per_req", "TCP mode: CPU per request (us)", "{:.1f}",
           "<= 1.1x", False),
    Metric("tcp-1mb", "mib_s", "TCP mode, 1 MiB: MiB/s (HAProxy: splice forced)", "{:,.1f}",
           ">= 1.0x"),
    Metric("tcp-1mb", "cpu_ms_per_mib", "TCP mode, 1 MiB: CPU per MiB (ms)", "{:.2f}", "",
           False),
    Metric("tcp-idle", "kib_per_conn", "TCP mode, idle connection: KiB", "{:.1f}", "", False),
), "python bench/lb_vs_haproxy.py")

TLS = Bench("tls_vs_haproxy", "TLS listener (lb/) vs HAProxy, same ECDSA P-256 certificate",
            "haproxy", (
    Metric("tls-handshakes", "handshakes_per_s", "new TLS handshakes/s (openssl s_time -new)",
           target=">= 0.8x"),
    Metric("tls-handshakes", "cpu_us_per_handshake", "CPU per handshake (us)", "{:.0f}", "",
           False),
    Metric("tls-keepalive", "rps", "keep-alive over TLS, 100 B: req/s", target=">= 0.6x"),
    Metric("tls-keepalive", "p99_ms", "keep-alive over TLS: p99 (ms)", "{:.2f}", "", False),
    Metric("tls-keepalive", "cpu_us_per_req", "keep-alive over TLS: CPU per request (us)",
           "{:.1f}", "", False),
), "python bench/tls_vs_haproxy.py")

DNS = Bench("dns_vs_dnsmasq-agent", "DNS (dnsserver/, real agent) vs dnsmasq", "dnsmasq", (
    Metric("dns", "A_qps", "peak A q/s", target=">= 1.0x"),
    Metric("dns", "SRV_qps", "peak SRV q/s", target=">= 1.0x"),
    Metric("dns", "A_loss_pct", "peak A loss %", "{:.2f}", "", False),
    Metric("dns", "SRV_loss_pct", "peak SRV loss %", "{:.2f}", "", False),
    Metric("dns", "A_cpu_us_per_query", "CPU per query at peak A (us)", "{:.1f}", "", False),
    Metric("dns", "SRV_cpu_us_per_query", "CPU per query at peak SRV (us)", "{:.1f}", "",
           False),
    Metric("dns", "cpu_us_per_query", "CPU per query at 5,000 q/s (us)", "{:.1f}", "<= 1.1x",
           False),
    Metric("dns", "rate_loss_pct", "loss % at 5,000 q/s", "{:.2f}", "= 0", False),
    Metric("dns", "rate_p99_us", "p99 at 5,000 q/s (us)", "{:,.0f}", "<= 1.2x", False),
), "python bench/dns_vs_dnsmasq.py --rumor agent")

_GOSSIP_METRICS = (
    ("join_median", "join, median agent (s)", "<= 1.0x"),
    ("join_max", "join, slowest agent (s)", ""),
    ("detect_median", "kill -9 seen, median observer (s)", "<= 1.0x"),
    ("detect_max", "kill -9 seen, last observer (s)", ""),
    ("leave_median", "leave seen, median observer (s)", "<= 1.0x"),
    ("leave_max", "leave seen, last observer (s)", ""),
    ("idle_cpu_s_per_min", "idle CPU s/agent/min", "<= 1.3x"),
    ("rss_mib", "RSS MiB/agent", "<= 2.5x"),
    ("bytes_per_node_s", "idle gossip B/s/node", ""),
)


STARTUP = Bench("startup", "Agent start-up vs Serf (one agent, CPU and memory until it answers)",
                "serf", (
    Metric("start", "cpu_s", "default agent: CPU-s from exec to first answer", "{:.3f}",
           "<= 0.2", False),
    Metric("start", "wall_s", "default agent: wall s to first answer", "{:.3f}", "", False),
    Metric("start", "rss_mib", "default agent: RSS at first answer (MiB)", "{:.1f}", "", False),
    Metric("start", "rss_settled_mib", "default agent: RSS 2 s later (MiB)", "{:.1f}", "",
           False),
    Metric("start-dev", "cpu_s", "`-dev` agent: CPU-s to first answer", "{:.3f}", "<= 0.2",
           False),
    Metric("start-dev", "rss_settled_mib", "`-dev` agent: RSS 2 s later (MiB)", "{:.1f}", "",
           False),
    Metric("start-compile", "cpu_s", "default agent compiling its modules (no .pyc): CPU-s",
           "{:.3f}", "", False),
), "python bench/startup.py --compile")
"""A target without ``x`` (``<= 0.2``) is on Rumor's own median, not on the ratio."""

JOIN_COST = Bench("join_cost", "What each join costs the pool: this tree against another",
                  "base", (
    Metric("", "join_cpu_ms_per_agent", "CPU per agent already in, per join (ms)", "{:.2f}", "",
           False),
    Metric("", "converge_median_s", "converged after the last start, median agent (s)",
           "{:.2f}", "", False),
    Metric("", "converge_max_s", "converged after the last start, last agent (s)", "{:.2f}",
           "", False),
    Metric("", "cpu_s_per_agent_median", "CPU-s per agent, start to the end", "{:.2f}", "",
           False),
    Metric("", "stranger_syncs", "stranger syncs in the pool (gossip.stranger_sync)", "{:.0f}",
           "", False),
    Metric("", "record_pulls", "record pulls in the pool (a joiner's record missing)",
           "{:.0f}", "", False),
), "python bench/join_cost.py --tree base=DIR", subject="main")
"""``bench/join_cost.py``: Metric tests are filled in from the run (the test names the size)."""


def gossip_bench(sizes: list[int]) -> Bench:
    metrics = tuple(Metric(f"N={n}", key, f"N={n}: {label}", "{:.2f}", target, False)
                    for n in sizes for key, label, target in _GOSSIP_METRICS)
    return Bench("gossip_vs_serf", "Gossip (whole agents) vs Serf", "serf", metrics,
                 "python bench/gossip_vs_serf.py --rounds 5 --trials 2 --idle 30")


def latest_run(results: Path, name: str, quick: bool) -> Path | None:
    """The newest run directory of ``name`` that completed (and is quick only if asked)."""
    best: tuple[str, Path] | None = None
    for info_path in results.glob(f"**/{name}-*/run.json"):
        if not re.fullmatch(re.escape(name) + r"-\d{6}", info_path.parent.name):
            continue
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            continue
        if not info.get("completed") or bool(info.get("quick")) != quick:
            continue
        key = info.get("start", "")
        if best is None or key > best[0]:
            best = (key, info_path.parent)
    return best[1] if best else None


def read_rounds(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "rounds.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def summarize(rounds: list[dict[str, Any]], who: str, m: Metric) -> tuple[float, float, float,
                                                                            int] | None:
    xs = [x for r in rounds if r["who"] == who and r["test"] == m.test
          if (x := _num(r.get(m.key))) is not None]
    if not xs:
        return None
    return statistics.median(xs), min(xs), max(xs), len(xs)


def _met(ratio: float, rumor: float, target: str) -> str:
    if not target:
        return ""
    if target.startswith("= "):
        return "yes" if rumor == float(target[2:]) else "no"
    op, value = target.split()
    v = float(value.rstrip("x"))
    x = ratio if value.endswith("x") else rumor     # without "x": an absolute target
    ok = x >= v if op == ">=" else x <= v
    return "yes" if ok else "no"


def _cell(s: tuple[float, float, float, int] | None, fmt: str) -> str:
    if s is None:
        return "n/a"
    med, lo, hi, _n = s
    return f"{fmt.format(med)} ({fmt.format(lo)}-{fmt.format(hi)})"


def _header(bench: Bench, run_dir: Path, rounds: list[dict[str, Any]]) -> list[str]:
    info = json.loads((run_dir / "run.json").read_text())
    m = info["machine"]
    tools = "; ".join(f"{k} {v}" for k, v in m["tools"].items())
    n_rounds = len({r["round"] for r in rounds})
    rel = run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir
    argv = " ".join(info.get("argv", []))
    return [
        f"### {bench.title}",
        "",
        (f"Generated by `bench/report.py` from `{rel}/` (raw rounds in `rounds.jsonl`"
         f"{', tool output in `raw/`' if (run_dir / 'raw').is_dir() else ''}). "
         "Do not edit by hand."),
        "",
        (f"- Run: {info['start']} to {info.get('end', '?')} UTC, commit {info['commit']}, "
         f"`{argv}`{' (QUICK smoke run: not figures)' if info.get('quick') else ''}."),
        (f"- Machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, Python "
         f"{m['python']}; {tools}."),
        (f"- Load average (1/5/15 min): {info['loadavg_before']} before, "
         f"{info.get('loadavg_after', '?')} after."),
        (f"- Each cell: median of {n_rounds} interleaved rounds (min-max). Ratio: Rumor's "
         f"median / {bench.peer}'s median."),
        "",
    ]


def render(bench: Bench, run_dir: Path | None) -> str:
    if run_dir is None:
        return (f"### {bench.title}\n\nNo complete `make bench` run of this comparison is "
                f"committed under bench/results/ yet\n(`{bench.make_cmd}`).\n")
    rounds = read_rounds(run_dir)
    lines = _header(bench, run_dir, rounds)
    peer = bench.peer
    me = "Rumor" if bench.subject == "rumor" else bench.subject
    lines += [f"| figure | {peer} | {me} | {me} / {peer} | target | met |",
              "|---|---|---|---|---|---|"]
    for m in bench.metrics:
        p, r = summarize(rounds, peer, m), summarize(rounds, bench.subject, m)
        if p is None and r is None:
            continue
        ratio = r[0] / p[0] if p and r and p[0] else float("nan")
        ratio_s = "n/a" if math.isnan(ratio) else f"{ratio:.2f}x"
        met = ""
        if r is not None and m.target:
            absolute = not m.target.endswith("x")
            met = (_met(ratio, r[0], m.target)
                   if not math.isnan(ratio) or absolute else "n/a")
        lines.append(f"| {m.label} | {_cell(p, m.fmt)} | {_cell(r, m.fmt)} | {ratio_s} | "
                     f"{m.target} | {met} |")
    info = json.loads((run_dir / "run.json").read_text())
    notes = info.get("notes") or {}
    if notes:
        lines += ["", "Also recorded: " + "; ".join(
            f"{k} {json.dumps(v)}" for k, v in notes.items()) + "."]
    return "\n".join(lines) + "\n"


def benches(results: Path, quick: bool) -> list[tuple[Bench, Path | None]]:
    out: list[tuple[Bench, Path | None]] = [
        (DNS, latest_run(results, DNS.name, quick)), (LB, latest_run(results, LB.name, quick)),
        (TLS, latest_run(results, TLS.name, quick))]
    g = latest_run(results, "gossip_vs_serf", quick)
    sizes = [10, 30, 50]
    if g is not None:
        sizes = sorted({int(r["test"].split("=")[1]) for r in read_rounds(g)})
    out.append((gossip_bench(sizes), g))
    out.append((STARTUP, latest_run(results, STARTUP.name, quick)))
    return out


def bench_of(run_dir: Path, title: str | None = None) -> Bench:
    """The comparison a run directory holds (its run.json's ``bench``), titled ``title``."""
    name = json.loads((run_dir / "run.json").read_text()).get("bench", "")
    if name == "gossip_vs_serf":
        b = gossip_bench(sorted({int(r["test"].split("=")[1]) for r in read_rounds(run_dir)}))
    else:
        found = [x for x in (DNS, LB, TLS, STARTUP, JOIN_COST) if x.name == name]
        if not found:
            raise SystemExit(f"{run_dir}: run.json names no known bench ({name!r})")
        b = found[0]
        if b is JOIN_COST:
            test = read_rounds(run_dir)[0]["test"]
            b = replace(b, metrics=tuple(replace(m, test=test) for m in b.metrics))
    return replace(b, title=title or b.title)


def replace_region(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- report:{name}:begin -->", f"<!-- report:{name}:end -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"bench/RESULTS.md has no {begin} ... {end} region")
    return pattern.sub(lambda _m: f"{begin}\n{body}{end}", text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results",
                    help="where the run directories are (default bench/results)")
    ap.add_argument("--quick", action="store_true", help="read quick (smoke) runs instead")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    ap.add_argument("--md", type=Path, default=RESULTS_MD, help=argparse.SUPPRESS)
    ap.add_argument("--run", type=Path,
                    help="render this one run directory (any name, e.g. a check run kept apart "
                         "from the headline tables) instead of the latest runs")
    ap.add_argument("--region", help="with --run: the RESULTS.md region --write replaces")
    ap.add_argument("--title", help="with --run: the table's title")
    args = ap.parse_args(argv)
    if args.run is not None:
        if args.write and not args.region:
            ap.error("--run with --write needs --region NAME")
        one = bench_of(args.run.resolve(), args.title)
        rendered = [(args.region or one.name, render(one, args.run.resolve()))]
    else:
        rendered = [(b.name, render(b, d)) for b, d in benches(args.results, args.quick)]
    if args.write:
        text = args.md.read_text()
        for region, body in rendered:
            text = replace_region(text, region, body)
        args.md.write_text(text)
        print(f"updated {args.md}")
    else:
        print("\n".join(body for _b, body in rendered))
    return 0


if __name__ == "__main__":
    sys.exit(main())
