"""Compares conformance-suite runs made directly against a server and through `mcp-resume proxy`.

Each run is an output directory of `conformance server -o DIR`: one `server-<scenario>-<time>/`
folder per scenario with its `checks.json` (a list of checks, each with an `id` and a `status`:
SUCCESS, FAILURE, WARNING, SKIPPED, INFO).

Usage: compare.py LABEL DIRECT_DIR PROXIED_DIR [LABEL DIRECT_DIR PROXIED_DIR ...]

Prints, per label (an upstream and a spec version), a table scenario x {direct, proxied} with passed/failed
check counts, then every regression. A regression is a check id that fails through the proxy
more often than it fails directly, or a scenario that reports directly but not through the
proxy. Exits 1 when there is any regression, or when a direct run reported no scenario at all
(nothing was compared); 0 otherwise. Failures that happen directly as well are printed but
are the server's (or the suite's), not the proxy's.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

# `server-<scenario>-2026-12-07T03-56-08-437Z`: the suite's folder name for one scenario's results.
SCENARIO_DIR = re.compile(r"^server-(?P<scenario>.+)-(?P<time>\d{4}-\d{2}-\d{2}T[\d-]+Z)$")


def load(run_dir: Path) -> dict[str, list[dict]]:
    """scenario name -> its checks, for every scenario the run reported."""
    found = []
    for checks_file in run_dir.glob("*/checks.json"):
        match = SCENARIO_DIR.match(checks_file.parent.name)
        if match is not None:
            found.append((match["time"], match["scenario"], checks_file))
    # In the order the suite ran them (it runs one scenario at a time).
    return {scenario: json.loads(checks_file.read_text()) for _, scenario, checks_file in sorted(found)}


def counts(checks: list[dict] | None) -> str:
    if checks is None:
        return "no report"
    status = Counter(check.get("status") for check in checks)
    text = f"{status['SUCCESS']} passed, {status['FAILURE']} failed"
    if status["WARNING"]:
        text += f", {status['WARNING']} warned"
    return text


def failures(checks: list[dict] | None) -> Counter:
    return Counter(check.get("id") for check in checks or [] if check.get("status") == "FAILURE")


def compare(label: str, direct_dir: Path, proxied_dir: Path) -> tuple[list[str], bool]:
    """Prints one table; returns the regressions and whether the direct run reported anything."""
    direct, proxied = load(direct_dir), load(proxied_dir)
    scenarios = list(direct) + [name for name in proxied if name not in direct]
    width = max([len("scenario")] + [len(name) for name in scenarios])
    print(f"\n{label}: {len(direct)} scenarios directly, {len(proxied)} through the proxy")
    print(f"  {'scenario':<{width}}  {'direct':<22}  proxied")
    print(f"  {'-' * width}  {'-' * 22}  {'-' * 22}")
    regressions: list[str] = []
    totals = {"direct": Counter(), "proxied": Counter()}
    for name in scenarios:
        d, p = direct.get(name), proxied.get(name)
        for side, checks in (("direct", d), ("proxied", p)):
            totals[side].update(check.get("status") for check in checks or [])
        mark = ""
        if d is not None and p is None:
            regressions.append(f"{label}, {name}: reports directly, not through the proxy")
            mark = "  <- regression"
        else:
            worse = failures(p) - failures(d)
            for check_id, extra in sorted(worse.items()):
                messages = [c.get("errorMessage", "") for c in p if c.get("id") == check_id and c.get("status") == "FAILURE"]
                regressions.append(f"{label}, {name}: check {check_id} fails through the proxy ({extra}x more): {messages[0]}")
            if worse:
                mark = "  <- regression"
            elif failures(d):
                mark = "  (fails directly too)"
        print(f"  {name:<{width}}  {counts(d):<22}  {counts(p):<22}{mark}".rstrip())
    total = {side: f"{n['SUCCESS']} passed, {n['FAILURE']} failed" for side, n in totals.items()}
    print(f"  {'total':<{width}}  {total['direct']:<22}  {total['proxied']}")
    return regressions, bool(direct)


def main(argv: list[str]) -> int:
    if len(argv) % 3 != 0 or not argv:
        print(__doc__, file=sys.stderr)
        return 2
    regressions: list[str] = []
    empty: list[str] = []
    for i in range(0, len(argv), 3):
        found, reported = compare(argv[i], Path(argv[i + 1]), Path(argv[i + 2]))
        regressions += found
        if not reported:
            empty.append(argv[i])
    print()
    for label in empty:
        print(f"conformance: the direct run at {label} reported no scenario: nothing was compared")
    for line in regressions:
        print(f"conformance: REGRESSION {line}")
    if regressions or empty:
        return 1
    print("conformance: no check fails through mcp-resume proxy that does not fail directly")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
