"""bench/report.py: the RESULTS.md tables come from the recorded rounds (median, min, max)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import report


def _run(results: Path, name: str, start: str, rounds: list[dict[str, object]], *,
         quick: bool = False, completed: bool = True) -> Path:
    d = results / start[:10] / f"{name}-{start[11:19].replace(':', '')}"
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({
        "bench": name, "quick": quick, "argv": ["bench/lb_vs_haproxy.py"], "commit": "abc1234",
        "start": start, "end": start, "completed": completed, "loadavg_before": "0.10 0.20 0.30",
        "loadavg_after": "1.00 0.50 0.40",
        "machine": {"cpu": "Test CPU", "cores": 2, "kernel": "6.1", "python": "3.11.7",
                    "tools": {"haproxy": "HAProxy version 2.6"}}}))
    (d / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))
    return d


def _lb_rounds(rumor: list[float], haproxy: list[float]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i, (r, h) in enumerate(zip(rumor, haproxy, strict=True)):
        rows.append({"round": i + 1, "who": "haproxy", "test": "http-small", "rps": h})
        rows.append({"round": i + 1, "who": "rumor", "test": "http-small", "rps": r})
    return rows


def test_table_is_median_min_max_of_the_latest_complete_run(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _run(results, "lb_vs_haproxy", "2026-12-01T10:00:00+00:00", _lb_rounds([1.0] * 5, [2.0] * 5))
    _run(results, "lb_vs_haproxy", "2026-12-02T10:00:00+00:00",
         _lb_rounds([700, 800, 750, 900, 600], [1000, 1000, 900, 1100, 1000]))
    _run(results, "lb_vs_haproxy", "2026-12-03T10:00:00+00:00", _lb_rounds([5.0], [5.0]),
         completed=False)                                     # interrupted: not used
    _run(results, "lb_vs_haproxy", "2026-12-04T10:00:00+00:00", _lb_rounds([5.0], [5.0]),
         quick=True)                                          # smoke run: not used
    md = tmp_path / "RESULTS.md"
    md.write_text("before\n<!-- report:lb_vs_haproxy:begin -->\nold\n"
                  "<!-- report:lb_vs_haproxy:end -->\nafter\n"
                  "<!-- report:dns_vs_dnsmasq-agent:begin --><!-- report:dns_vs_dnsmasq-agent:end -->"
                  "\n<!-- report:gossip_vs_serf:begin --><!-- report:gossip_vs_serf:end -->\n"
                  "<!-- report:tls_vs_haproxy:begin --><!-- report:tls_vs_haproxy:end -->\n"
                  "<!-- report:startup:begin --><!-- report:startup:end -->\n")
    assert report.main(["--results", str(results), "--write", "--md", str(md)]) == 0
    text = md.read_text()
    assert text.startswith("before\n") and "\nafter\n" in text and "\nold\n" not in text
    assert ("| HTTP mode, 100 B: req/s | 1,000 (900-1,100) | 750 (600-900) | 0.75x | >= 0.75x "
            "| yes |") in text
    assert "lb_vs_haproxy-100000" in text and "2026-12-02" in text
    assert "Test CPU, 2 cores, kernel 6.1" in text and "0.10 0.20 0.30 before" in text
    assert "median of 5 interleaved rounds" in text
    # no run of the other two yet: said so, with the command that makes one
    assert text.count("No complete `make bench` run") == 4   # DNS, gossip, TLS, start-up


def test_a_target_without_x_is_on_rumors_own_figure() -> None:
    assert report._met(9.0, 0.15, "<= 0.2") == "yes"      # 9x Serf, but under 0.2 CPU-s
    assert report._met(0.5, 0.30, "<= 0.2") == "no"
    assert report._met(0.5, 0.30, "<= 2.5x") == "yes"


def test_one_given_run_goes_into_its_own_region(tmp_path: Path) -> None:
    # a check run kept apart from the headline (renamed, so the latest-run search skips it)
    results = tmp_path / "results"
    d = _run(results, "lb_vs_haproxy", "2026-12-02T10:00:00+00:00",
             _lb_rounds([700, 800, 750], [1000, 1000, 900]))
    check = d.with_name("lb_check-100000")
    d.rename(check)
    md = tmp_path / "RESULTS.md"
    md.write_text("<!-- report:lb_vs_haproxy:begin -->\nheadline\n<!-- report:lb_vs_haproxy:end -->\n"
                  "<!-- report:lb_check:begin -->\nold\n<!-- report:lb_check:end -->\n")
    assert report.main(["--run", str(check), "--region", "lb_check", "--title", "LB check",
                        "--write", "--md", str(md)]) == 0
    text = md.read_text()
    assert "\nheadline\n" in text and "\nold\n" not in text      # only its own region
    assert "### LB check" in text and "lb_check-100000" in text
    assert "| HTTP mode, 100 B: req/s | 1,000 (900-1,000) | 750 (700-800) | 0.75x" in text
    assert "median of 3 interleaved rounds" in text
