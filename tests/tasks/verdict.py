"""The conformance suite's `tasks-*` scenarios: directly against a server without tasks, and through
`mcp-resume proxy --tasks`.

Each run directory holds the suite's output for one or more `--scenario tasks-*` runs
(`server-<scenario>-<time>/checks.json`), read with tests/conformance/compare.py's loader.

Usage: verdict.py DIRECT_DIR GATEWAY_DIR SCENARIO...

Prints a table scenario x {direct, through the gateway} with passed/failed check counts, then
every check that does not pass through the gateway. Exits 1 when a scenario has no report
through the gateway, or any of its checks there is a FAILURE or a WARNING; 0 otherwise. A check
the suite itself marks SKIPPED (it has no harness for it yet) is listed, not judged. The direct
column is shown, not judged: the server has no task support, so it is expected to fail there.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "conformance"))
from compare import counts, load  # noqa: E402

JUDGED = ("FAILURE", "WARNING")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    direct, gateway = load(Path(argv[0])), load(Path(argv[1]))
    scenarios = argv[2:]
    width = max(len("scenario"), *(len(name) for name in scenarios))
    print(f"\ntasks-* scenarios: {len(scenarios)}, directly (no task support) and through mcp-resume proxy --tasks")
    print(f"  {'scenario':<{width}}  {'direct':<22}  through the gateway")
    print(f"  {'-' * width}  {'-' * 22}  {'-' * 22}")
    problems: list[str] = []
    notes: list[str] = []
    totals = {"direct": Counter(), "gateway": Counter()}
    for name in scenarios:
        d, g = direct.get(name), gateway.get(name)
        for side, checks in (("direct", d), ("gateway", g)):
            totals[side].update(check.get("status") for check in checks or [])
        skipped = sum(1 for check in g or [] if check.get("status") == "SKIPPED")
        note = f", {skipped} skipped by the suite" if skipped else ""
        print(f"  {name:<{width}}  {counts(d):<22}  {counts(g)}{note}")
        if g is None:
            problems.append(f"{name}: no report through the gateway")
            continue
        for check in g:
            status = check.get("status")
            if status in JUDGED:
                problems.append(f"{name}: {status} {check.get('id')}: {check.get('errorMessage', '')}")
            elif status == "SKIPPED":
                notes.append(f"{name}: SKIPPED by the suite: {check.get('id')}: {check.get('errorMessage', '')}")
    total = {side: f"{n['SUCCESS']} passed, {n['FAILURE']} failed" for side, n in totals.items()}
    print(f"  {'total':<{width}}  {total['direct']:<22}  {total['gateway']}")
    print()
    for line in notes:
        print(f"tasks: note: {line}")
    for line in problems:
        print(f"tasks: NOT PASSED through the gateway: {line}")
    if problems:
        return 1
    print(f"tasks: every check of the {len(scenarios)} tasks-* scenarios passes through mcp-resume proxy --tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
