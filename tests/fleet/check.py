"""Checks the kill phase of tests/fleet/run.sh, and prints the fleet run's counts.

--killed-log FILE --killed-at UNIX_TIME: the kill phase. The streams the killed instance produced
  are read from its log ("stream started", with the stream's id); each call's stream from its
  fault proxy's log (the POST of `tools/call` carries the call's tag). Every call whose stream
  the killed instance produced must have failed, within --fail-seconds of the kill (the
  reference client's call end is exact; the SDK clients' is their start plus the call's
  duration, all calls starting at once); every other call must have completed with all of
  1..--expect (the reference client: "completed exact", nothing duplicated or out of order).
--counts-only: per phase and client, calls, completed, failed, cuts, resumes; and the resumes
  served by another instance than the one that produced the stream (from the instances' logs).

Exits 1 on any violation, printing each.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

CLIENTS = ("reference", "python", "typescript")
STREAM = re.compile(r"stream[=:]\s*\"?([0-9a-f]{32})")


def streams_in(log: Path, marker: str) -> list[str]:
    """The stream ids of the lines of an instance's log that contain `marker`."""
    found = []
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            if marker in line:
                match = STREAM.search(line)
                if match:
                    found.append(match.group(1))
    return found


def proxy_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stream_of_tag(records: list[dict[str, Any]]) -> dict[str, str]:
    tags = {}
    for r in records:
        if r.get("kind") == "response" and r.get("rpc_method") == "tools/call" and r.get("tag") and r.get("stream"):
            tags[str(r["tag"])] = r["stream"]
    return tags


def calls_of(run: Path, phase: str, client: str) -> tuple[list[dict[str, Any]], float | None]:
    """The client's calls, each with `ok`, `receipts` (when known), `end` (Unix time, when known)."""
    path = run / f"{phase}-{client}.json"
    if not path.exists():
        return [], None
    report = json.loads(path.read_text())
    started_file = run / f"{phase}-{client}.started"
    started = float(started_file.read_text()) if started_file.exists() else None
    if isinstance(report.get("calls"), int):
        # The reference client's calls mode: counts only (it fails itself on any violation).
        return ([{"tag": None, "ok": True}] * report.get("completed", 0)
                + [{"tag": None, "ok": False}] * report.get("failed", 0)), started
    calls = []
    for call in report.get("calls", []):
        if client == "reference" and "outcome" in call:
            end = started + call["began_at_seconds"] + call["seconds"] if started else None
            calls.append({"tag": call["tag"], "ok": call["outcome"] == "completed exact", "outcome": call["outcome"],
                          "detail": call.get("detail"), "end": end, "notifications": call.get("notifications")})
        elif client == "reference":
            calls.append({"tag": call.get("tag"), "ok": call.get("ok", False), "outcome": None, "end": None})
        else:
            end = started + call["seconds"] if started else None
            calls.append({"tag": call["tag"], "ok": call["ok"], "detail": call.get("error"), "end": end,
                          "receipts": call.get("receipts", [])})
    return calls, started


def first_refusal(records: list[dict[str, Any]], proxy_started: float | None) -> dict[str, float]:
    """Per stream, the Unix time the fleet first refused a resume of it (400)."""
    refused: dict[str, float] = {}
    if proxy_started is None:
        return refused
    for r in records:
        last = r.get("last_event_id") or ""
        if r.get("status") == 400 and "." in last and r.get("t_ms") is not None:
            stream = last.split(".")[0]
            at = proxy_started + r["t_ms"] / 1000
            refused[stream] = min(refused.get(stream, at), at)
    return refused


def check_kill(args: argparse.Namespace) -> list[str]:
    run = Path(args.run)
    killed_streams = set(streams_in(Path(args.killed_log), "stream started"))
    problems = []
    totals = Counter()
    for client in CLIENTS:
        calls, _ = calls_of(run, "kill", client)
        records = proxy_records(run / f"kill-{client}-proxy.jsonl")
        tags = stream_of_tag(records)
        started_file = run / f"kill-{client}-proxy.started"
        refused = first_refusal(records, float(started_file.read_text()) if started_file.exists() else None)
        limit = args.fail_seconds + (args.typescript_timeout if client == "typescript" else 0)
        slowest_refusal = 0.0
        if len(calls) != args.calls:
            problems.append(f"{client}: {len(calls)} calls reported, {args.calls} made")
        slowest = 0.0
        for call in calls:
            stream = tags.get(str(call["tag"]))
            if stream is None:
                problems.append(f"{client} {call['tag']}: no stream in the fault proxy's log")
                continue
            if stream in killed_streams:
                totals[f"{client} on the killed instance"] += 1
                if call["ok"]:
                    problems.append(f"{client} {call['tag']}: its producer was killed, yet it completed")
                    continue
                if client == "reference" and call["outcome"] != "failed clearly":
                    problems.append(f"{client} {call['tag']}: {call['outcome']}, not a clear failure: {call['detail']}")
                if stream not in refused:
                    problems.append(f"{client} {call['tag']}: no resume of its stream was refused")
                else:
                    after = refused[stream] - args.killed_at
                    slowest_refusal = max(slowest_refusal, after)
                    if after > args.fail_seconds:
                        problems.append(f"{client} {call['tag']}: its resume first refused {after:.1f}s after "
                                        f"the kill (limit {args.fail_seconds}s)")
                if call["end"] is not None:
                    after = call["end"] - args.killed_at
                    slowest = max(slowest, after)
                    if after > limit:
                        problems.append(f"{client} {call['tag']}: failed {after:.1f}s after the kill "
                                        f"(limit {limit}s): {call['detail']}")
                totals[f"{client} failed"] += 1
            else:
                totals[f"{client} elsewhere"] += 1
                lost = [p for p in range(1, args.expect + 1) if p not in set(call.get("receipts", range(1, args.expect + 1)))]
                if not call["ok"] or lost:
                    problems.append(f"{client} {call['tag']}: produced by a live instance, yet "
                                    f"{'lost ' + str(len(lost)) if lost else 'failed'}: {call.get('detail')}")
                    continue
                totals[f"{client} completed"] += 1
        print(f"fleet kill {client}: calls={len(calls)} on_killed_instance={totals[f'{client} on the killed instance']} "
              f"failed={totals[f'{client} failed']} (first refused resume at most {slowest_refusal:.1f}s "
              f"after the kill, call failed at most {slowest:.1f}s after it) "
              f"elsewhere={totals[f'{client} elsewhere']} completed={totals[f'{client} completed']}")
    if not killed_streams:
        problems.append("the killed instance's log names no stream it started")
    if sum(totals[f"{c} on the killed instance"] for c in CLIENTS) == 0:
        problems.append("no call was produced by the killed instance: the kill proved nothing")
    if sum(totals[f"{c} elsewhere"] for c in CLIENTS) == 0:
        problems.append("every call was produced by the killed instance")
    return problems


def counts(args: argparse.Namespace) -> None:
    run = Path(args.run)
    producer: dict[str, str] = {}
    resumed_on: list[tuple[str, str]] = []
    for log in sorted(run.glob("instance-*.err")):
        name = log.stem.removeprefix("instance-")
        for stream in streams_in(log, "stream started"):
            producer[stream] = name
        for stream in streams_in(log, "resuming stream"):
            resumed_on.append((stream, name))
    elsewhere = sum(1 for stream, name in resumed_on if producer.get(stream) not in (None, name))
    print(f"fleet: resumes={len(resumed_on)} served_by_another_instance={elsewhere} "
          f"streams={len(producer)} per_instance={dict(Counter(producer.values()))}")
    for phase in ("cuts", "kill"):
        for client in CLIENTS:
            calls, _ = calls_of(run, phase, client)
            records = proxy_records(run / f"{phase}-{client}-proxy.jsonl")
            cuts = sum(1 for r in records if r.get("outcome") == "cut")
            resumes = Counter(r.get("status") for r in records if r.get("last_event_id"))
            print(f"fleet {phase} {client}: calls={len(calls)} completed={sum(1 for c in calls if c['ok'])} "
                  f"failed={sum(1 for c in calls if not c['ok'])} cuts={cuts} "
                  f"resumes={sum(resumes.values())} resume_statuses={dict(resumes)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--killed-log")
    parser.add_argument("--killed-at", type=float)
    parser.add_argument("--expect", type=int, default=80)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--fail-seconds", type=float, default=15.0)
    parser.add_argument("--typescript-timeout", type=float, default=10.0,
                        help="the TypeScript client's request timeout in the kill phase, seconds")
    parser.add_argument("--counts-only", action="store_true")
    args = parser.parse_args()
    if args.counts_only:
        counts(args)
        return 0
    problems = check_kill(args)
    for problem in problems:
        print(f"fleet kill: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
