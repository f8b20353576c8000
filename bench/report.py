"""The results as a table against the targets, and the heartbeat latency plot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

BARE = ("starlette", "websockets")
SERVERS = ("presence", *BARE)
LABELS = {"presence": "presence", "starlette": "bare starlette", "websockets": "bare websockets"}

Results = dict[str, Any]
Row = tuple[str, str, str, str, str, str, str]


def _fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value * scale:,.{digits}f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return "-" if ours is None or not theirs else f"{ours / theirs:.2f}x"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("met" if ok else "MISSED")


def _compare(
    results: Results,
    scenario: str,
    name: str,
    key: str,
    scale: float,
    target: str = "",
    check: Callable[[float, float], bool] | None = None,
    relative: bool = True,
) -> Row:
    """A row of one figure for our server and the bare ones, with ratios."""
    figures = results.get(scenario, {})
    ours, starlette, websockets = (figures.get(s, {}).get(key) for s in SERVERS)
    ok = None
    if check is not None and ours is not None and (starlette or not relative):
        ok = check(ours, starlette or 0.0)
    return (
        name,
        _fmt(ours, scale),
        _fmt(starlette, scale),
        _fmt(websockets, scale),
        f"{_ratio(ours, starlette)} / {_ratio(ours, websockets)}",
        target,
        _verdict(ok),
    )


def rows(results: Results) -> list[Row]:
    """The table: each figure of ours, of the bare servers, the ratios, the target."""
    table: list[Row] = []
    hold = results.get("hold", {}).get("presence")
    if hold:
        n = f"{hold['sessions']:,}"
        table += [
            _compare(results, "hold", f"hold {n}: KiB per session", "kib_per_session", 1,
                     "<= 1.2x starlette", lambda o, s: o <= 1.2 * s),
            _compare(results, "hold", f"hold {n}: KiB per session, absolute", "kib_per_session",
                     1, "<= 10", lambda o, s: o <= 10, relative=False),
            _compare(results, "hold", f"hold {n}: CPU us per heartbeat", "cpu_per_heartbeat",
                     1e6, "<= 1.5x starlette", lambda o, s: o <= 1.5 * s),
            _compare(results, "hold", f"hold {n}: server CPU, cores", "cpu_share", 1,
                     "<= 1 core", lambda o, s: o <= 1, relative=False),
            _compare(results, "hold", f"hold {n}: heartbeat p50 ms", "rtt_p50", 1e3),
            _compare(results, "hold", f"hold {n}: heartbeat p99 ms", "rtt_p99", 1e3,
                     "<= 50 ms", lambda o, s: o <= 0.050, relative=False),
        ]  # fmt: skip
    storm = results.get("storm", {}).get("presence")
    if storm:
        n = f"{storm['logins']:,}"
        table += [
            _compare(results, "storm", f"storm {n}: logins per s", "logins_per_s", 1,
                     ">= 1,000", lambda o, s: o >= 1000, relative=False),
            _compare(results, "storm", f"storm {n}: hello->welcome p50 ms", "p50", 1e3),
            _compare(results, "storm", f"storm {n}: hello->welcome p99 ms", "p99", 1e3),
            _compare(results, "storm", f"storm {n}: CPU ms per login", "cpu_per_login", 1e3,
                     "<= 2x starlette", lambda o, s: o <= 2 * s),
        ]  # fmt: skip
    race = results.get("contention")
    if race:
        name = f"contention {race['contenders']:,} for {race['seats']}"
        table += [
            (f"{name}: grants", str(race["granted"]), "", "", "", f"exactly {race['seats']}",
             _verdict(race["ok"])),
            (f"{name}: all answered ms", _fmt(race["all_answered_s"], 1e3), "", "", "", "", ""),
        ]  # fmt: skip
    for k, fan in results.get("fanout", {}).items():
        name = f"fan-out {int(k):,}"
        big = int(k) >= 10_000
        table += [
            (f"{name}: p50 ms", _fmt(fan["p50"], 1e3), "", "", "", "", ""),
            (f"{name}: p99 ms", _fmt(fan["p99"], 1e3), "", "", "",
             "<= 250 ms" if big else "", _verdict(fan["p99"] <= 0.25) if big else ""),
            (f"{name}: missed deliveries", str(fan["missing"]), "", "", "", "0",
             _verdict(fan["missing"] == 0)),
            (f"{name}: CPU us per delivery, server / generator",
             f"{_fmt(fan['cpu_per_delivery'], 1e6)} / "
             f"{_fmt(fan['generator_cpu_per_delivery'], 1e6)}", "", "", "", "", ""),
        ]  # fmt: skip
    cluster = results.get("cluster", {})
    if "skipped" in cluster:
        table.append(("cluster (2 nodes, PostgreSQL)", "not run", "", "", "", "", ""))
    storms = cluster.get("storms", {})
    for name, c in storms.items():
        table += [
            (f"cluster storm, {name}: logins per s", _fmt(c["logins_per_s"]), "", "", "",
             *_storm_target(name, c, storms)),
            (f"cluster storm, {name}: p99 ms", _fmt(c["p99"], 1e3), "", "", "", "", ""),
            (f"cluster storm, {name}: CPU ms per login, nodes / PostgreSQL",
             f"{_fmt(c['cpu_per_login'], 1e3)} / {_fmt(c['postgres_cpu_per_login'], 1e3)}",
             "", "", "", "", ""),
        ]  # fmt: skip
    for k, fan in cluster.get("fanout", {}).items():
        table += [
            (f"cluster fan-out {int(k):,}: p50 ms", _fmt(fan["p50"], 1e3), "", "", "", "", ""),
            (f"cluster fan-out {int(k):,}: p99 ms", _fmt(fan["p99"], 1e3), "", "", "", "", ""),
        ]
    return table


def _storm_target(
    name: str, storm: dict[str, Any], storms: dict[str, dict[str, Any]]
) -> tuple[str, str]:
    """The target of a cluster storm's logins per second, and its verdict."""
    if name.startswith("one domain"):
        return ">= 1,500", _verdict(storm["logins_per_s"] >= 1500)
    one_node = next((s for n, s in storms.items() if n.endswith("1 node")), None)
    if one_node is None or storm is one_node:
        return "", ""
    ratio = storm["logins_per_s"] / one_node["logins_per_s"]
    return f">= 1.7x 1 node ({ratio:.2f}x)", _verdict(ratio >= 1.7)


def collections(passes: dict[str, dict[str, float]], threshold: int) -> str:
    """The collector's passes over the node's run (:class:`bench.census.Collections`)."""
    lines = [f"collector, young-generation threshold {threshold:,}:"]
    for generation, figures in passes.items():
        lines.append(
            f"  generation {generation}: {int(figures['count']):,} passes, "
            f"{figures['seconds'] * 1e3:,.0f} ms in all, longest {figures['longest'] * 1e3:.1f} ms"
        )
    return "\n".join(lines)


def census(figures: dict[str, Any], types: int = 20) -> str:
    """Where a held session's memory goes (:func:`bench.census.per_session`)."""
    lines = [
        f"census of {figures['sessions']:,} sessions, per session: "
        f"{figures['rss_bytes']:,.0f} B of resident memory; "
        f"{figures['object_bytes']:,.0f} B in {figures['objects']:.1f} Python objects "
        f"({figures['tracked_objects']:.1f} tracked by the collector); a full collection "
        f"took {figures['full_collection_seconds'] * 1e3:,.0f} ms",
        f"{'type':<60} {'objects':>8} {'bytes':>8}",
    ]
    for name, count, size in figures["types"][:types]:
        lines.append(f"{name[:60]:<60} {count:>8.2f} {size:>8.0f}")
    if "lines" in figures:
        lines.append(f"traced allocations: {figures['traced_bytes']:,.0f} B per session")
        lines.append(f"{'source line':<60} {'blocks':>8} {'bytes':>8}")
        for line, size, count in figures["lines"]:
            lines.append(f"{line[-60:]:<60} {count:>8.2f} {size:>8.0f}")
    return "\n".join(lines)


HEADER: Row = ("figure", "presence", "starlette", "websockets", "ratio st / ws", "target", "")


def table(results: Results) -> str:
    body = [HEADER, *rows(results)]
    widths = [max(len(row[i]) for row in body) for i in range(len(HEADER))]
    lines = []
    for n, row in enumerate(body):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def markdown(results: Results) -> str:
    """The same table in Markdown, for docs/PERFORMANCE.md."""
    lines = ["| " + " | ".join(HEADER[:-1]) + " | |", "|---" + "|---:" * 4 + "|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    return "\n".join(lines)


def plot(results: Results, path: Path) -> None:
    """Heartbeat round trip (p50 and p99) against connected devices, per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for server, color in zip(SERVERS, ("tab:red", "tab:blue", "tab:green"), strict=True):
        points = results.get("hold", {}).get(server, {}).get("points", [])
        if not points:
            continue
        sessions = [p["sessions"] for p in points]
        label = LABELS[server]
        axes.plot(sessions, [p["rtt_p50"] * 1e3 for p in points], "o-", color=color,
                  label=f"{label} p50")  # fmt: skip
        axes.plot(sessions, [p["rtt_p99"] * 1e3 for p in points], "s--", color=color,
                  label=f"{label} p99")  # fmt: skip
    axes.axhline(50, color="grey", linestyle=":", label="target p99 (50 ms)")
    axes.set_yscale("log")
    axes.set_xlabel("connected devices, each heartbeating every "
                    f"{results['options']['interval']:g} s")  # fmt: skip
    axes.set_ylabel("heartbeat round trip (ms)")
    axes.set_title("Heartbeat latency against connected devices")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
