"""Summarize the development A/B runs in this directory (quick runs, busy machine).

Each subdirectory is one `bench/dns_vs_dnsmasq.py --rumor agent --quick` run (2 interleaved
rounds of dnsmasq and the agent). For each run: the ratio agent / dnsmasq of the round medians;
then, per variant (before / batch / batch-serve), the median of those ratios over the runs,
with min and max.  python bench/results/dev/2026-12-06-dnsperf/summarize.py
"""

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYS = [("A_qps", "peak A q/s"), ("SRV_qps", "peak SRV q/s"),
        ("A_cpu_us_per_query", "CPU/query @peak A"), ("SRV_cpu_us_per_query", "CPU/query @peak SRV"),
        ("cpu_us_per_query", "CPU/query @5000/s"), ("rate_p99_us", "p99 @5000/s"),
        ("rate_loss_pct", "loss % @5000/s (agent, max of rounds)")]


def ratios(run: Path) -> dict[str, float]:
    rows = [json.loads(x) for x in (run / "rounds.jsonl").read_text().splitlines() if x.strip()]
    out = {}
    for k, _ in KEYS:
        r = statistics.median(x[k] for x in rows if x["who"] == "rumor")
        d = statistics.median(x[k] for x in rows if x["who"] == "dnsmasq")
        out[k] = max(x[k] for x in rows if x["who"] == "rumor") if k == "rate_loss_pct" else r / d
    return out


variants: dict[str, list[tuple[str, dict[str, float], str]]] = {}
for run in sorted(p for p in HERE.iterdir() if (p / "rounds.jsonl").exists()):
    info = json.loads((run / "run.json").read_text())
    variant = run.name.rsplit("-", 1)[0]
    variants.setdefault(variant, []).append((run.name, ratios(run), info["loadavg_before"]))
for variant in ("before", "batch", "batch-serve"):
    runs = variants.get(variant, [])
    loads = [float(la.split()[0]) for _, _, la in runs]
    print(f"{variant}: {len(runs)} runs, 1-min load average before each {min(loads):.2f}-{max(loads):.2f}")
    for k, label in KEYS:
        vals = [r[k] for _, r, _ in runs]
        unit = "" if k == "rate_loss_pct" else "x"
        print(f"  {label:40s} median {statistics.median(vals):.2f}{unit}  "
              f"(min {min(vals):.2f}, max {max(vals):.2f})")
