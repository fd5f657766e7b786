"""Checks one SDK client run of the interop tests and prints its counts.

Inputs: the client's --results JSON (client.py or client.mjs: per call its tag, whether it
succeeded, and every progress value the application received, in order; plus each
Last-Event-ID the SDK sent) and, for runs through the fault proxy, the proxy's --log
(one JSON line per response: the request, the stream, the ids of the complete events the
client was sent, how the response ended).

faults: the proxy cut at least one response and saw at least one resume; every resume the
  proxy saw was answered 200 (an SDK client retries a refused resume, so a 4xx/5xx before a
  later success is visible only here); every call succeeded; for every call all of 1..--expect
  arrived (none lost); and
  every duplicate is explained by a resume from an older id: for each stream, in order, a
  response that resumed from Last-Event-ID seq k and delivered messages k+1..d re-sent
  max(0, min(d, M) - k) events, where M is the newest message delivered before it. The
  call's duplicates (receipts minus distinct values) must equal that sum, call by call.
  The proxy log also proves the server side: each resumed response starts at k+1, and
  every response's messages are contiguous. --duplicates zero additionally requires no
  duplicate at all (a client that resumes from its newest id).
proxy (the reference client's run, which checks its own calls): the proxy's view of a faults
  run, its cuts, resumes and their statuses, and the server's replay invariants.
poll: the call succeeded, none lost, none duplicated, at least --min-resumes resumes.
restart: the call failed (the stream was abandoned by the killed process) within
  --max-fail-seconds of the restart; the client received every progress value the store
  committed (replayed from the stream's start), none twice; the replay ended; and (from the
  proxy log) the SDK's resume after the restart replayed events committed while it was away,
  then got a 400.

Prints one summary line and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from typing import Any


def seq_of(event_id: str | None) -> int | None:
    if not event_id or "." not in event_id:
        return None
    try:
        return int(event_id.rsplit(".", 1)[1])
    except ValueError:
        return None


def receipt_counts(call: dict[str, Any], expect: int) -> tuple[int, int, int]:
    receipts = call["receipts"]
    distinct = set(receipts)
    lost = sum(1 for p in range(1, expect + 1) if p not in distinct)
    return len(receipts), lost, len(receipts) - len(distinct)


def explain(log_path: str) -> tuple[dict[str, dict[str, Any]], list[str], dict[str, int]]:
    """Per call tag: how many events the proxy forwarded twice because of resumes from old ids."""
    responses = []
    with open(log_path) as f:
        for line in f:
            record = json.loads(line)
            if record.get("kind") == "response" and record.get("sse"):
                responses.append(record)
    tag_of: dict[str, str] = {}
    by_stream: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in responses:
        if r["method"] == "POST" and r.get("rpc_method") == "tools/call" and r.get("stream") and r.get("tag"):
            tag_of[r["stream"]] = r["tag"]
        if r.get("stream"):
            by_stream[r["stream"]].append(r)
    problems: list[str] = []
    totals = Counter()
    per_tag: dict[str, dict[str, Any]] = {}
    for stream, rs in by_stream.items():
        tag = tag_of.get(stream)
        if tag is None:
            continue  # initialize or standalone streams
        rs.sort(key=lambda r: (r["started_ms"], r["req"]))
        newest = 0
        resent = 0
        stale = 0
        resumes = 0
        for r in rs:
            if r["outcome"] == "cut":
                totals["cuts"] += 1
                totals["cuts_mid_event"] += 1 if r.get("mid_event") else 0
            k = 0 if r["method"] == "POST" else seq_of(r.get("last_event_id"))
            if r["method"] == "GET":
                totals["resumes"] += 1
                resumes += 1
                if k is None:
                    problems.append(f"{tag}: a resume with an unreadable Last-Event-ID {r.get('last_event_id')!r}")
                    continue
                if k < newest:
                    stale += 1
            first, last, messages = r.get("first_seq"), r.get("last_seq"), r.get("messages", 0)
            if r.get("irregular"):
                problems.append(f"{tag}: the server sent non-consecutive ids on one response (req {r['req']})")
            if messages:
                if first != k + 1:
                    problems.append(f"{tag}: resumed after seq {k} but the first message was seq {first}")
                if last - first + 1 != messages:
                    problems.append(f"{tag}: messages {first}..{last} are not contiguous")
                resent += max(0, min(last, newest) - k)
                newest = max(newest, last)
        per_tag[tag] = {"resent": resent, "stale_resumes": stale, "resumes": resumes, "stream": stream}
        totals["stale_resumes"] += stale
    return per_tag, problems, totals


def resume_answers(log_path: str) -> Counter:
    """How the server answered every resume (a GET with Last-Event-ID) the proxy saw, by status."""
    statuses: Counter = Counter()
    with open(log_path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "response" and r["method"] == "GET" and r.get("last_event_id"):
                statuses[r["status"]] += 1
    return statuses


def fault_run_problems(totals: Counter, statuses: Counter) -> list[str]:
    """What makes a fault run prove nothing or hide a failure: no cut, no resume, a refused resume."""
    problems = []
    if totals["cuts"] == 0:
        problems.append("the fault proxy cut no response: the run proves nothing")
    if totals["resumes"] == 0:
        problems.append("no resume reached the server: the run proves nothing")
    refused = {status: n for status, n in sorted(statuses.items()) if status != 200}
    if refused:
        answers = ", ".join(f"{n} x {status}" for status, n in refused.items())
        problems.append(f"resumes answered other than 200: {answers}")
    return problems


def check_faults(args: argparse.Namespace, results: dict[str, Any]) -> tuple[bool, str]:
    per_tag, problems, totals = explain(args.proxy_log)
    statuses = resume_answers(args.proxy_log)
    problems += fault_run_problems(totals, statuses)
    calls = results["calls"]
    failed = [c for c in calls if not c["ok"]]
    for c in failed:
        problems.append(f"{c['tag']} failed: {c['error']}")
    received = lost = duplicates = resent = 0
    for c in calls:
        n, l, d = receipt_counts(c, args.expect)
        received += n
        lost += l
        duplicates += d
        explained = per_tag.get(c["tag"], {}).get("resent")
        if explained is None:
            problems.append(f"{c['tag']}: no tools/call response for it in the proxy log")
            continue
        resent += explained
        if d != explained:
            problems.append(f"{c['tag']}: {d} duplicates, but resumes from older ids re-sent {explained}")
    if args.duplicates == "zero" and duplicates:
        problems.append(f"{duplicates} duplicates from a client that should resume from its newest id")
    if len(calls) != args.calls:
        problems.append(f"{len(calls)} calls reported, {args.calls} expected")
    if lost:
        problems.append(f"{lost} progress notifications lost")
    sdk_resumes = len(results.get("resumes", []))
    # Every resume the proxy saw must be one the SDK itself sent (its Last-Event-ID log).
    sent = Counter(r["last_event_id"] for r in results.get("resumes", []))
    seen = Counter()
    with open(args.proxy_log) as f:
        for line_ in f:
            r = json.loads(line_)
            if r.get("kind") == "response" and r["method"] == "GET" and r.get("last_event_id"):
                seen[r["last_event_id"]] += 1
    if seen - sent:
        problems.append(f"{sum((seen - sent).values())} resumes at the proxy that the SDK's log does not show")
    ok = not problems
    line = (f"calls={len(calls)} ok={len(calls) - len(failed)} failed={len(failed)} notifications={received} "
            f"expected={args.expect * len(calls)} lost={lost} duplicates={duplicates} "
            f"resent_by_resume_from_older_id={resent} stale_resumes={totals['stale_resumes']} "
            f"cuts={totals['cuts']} cuts_mid_event={totals['cuts_mid_event']} resumes={totals['resumes']} "
            f"resumes_not_200={refused_count(statuses)} sdk_resume_requests={sdk_resumes}")
    return ok, line + ("" if ok else "\n  " + "\n  ".join(problems[:20]))


def refused_count(statuses: Counter) -> int:
    return sum(n for status, n in statuses.items() if status != 200)


def check_proxy(args: argparse.Namespace, results: dict[str, Any]) -> tuple[bool, str]:
    """Only the fault proxy's view: the server's replay invariants, cuts and resumes."""
    per_tag, problems, totals = explain(args.proxy_log)
    invariant_violations = len(problems)
    statuses = resume_answers(args.proxy_log)
    problems += fault_run_problems(totals, statuses)
    resent = sum(t["resent"] for t in per_tag.values())
    ok = not problems
    line = (f"streams={len(per_tag)} cuts={totals['cuts']} cuts_mid_event={totals['cuts_mid_event']} "
            f"resumes={totals['resumes']} resumes_not_200={refused_count(statuses)} "
            f"stale_resumes={totals['stale_resumes']} resent={resent} "
            f"replay_invariant_violations={invariant_violations}")
    return ok, line + ("" if ok else "\n  " + "\n  ".join(problems[:20]))


def check_poll(args: argparse.Namespace, results: dict[str, Any]) -> tuple[bool, str]:
    problems = []
    (call,) = results["calls"]
    n, lost, dups = receipt_counts(call, args.expect)
    # All GETs with Last-Event-ID the SDK sent (the standalone GET stream is polled too) ...
    sdk_resumes = len(results.get("resumes", []))
    # ... and, from the recording proxy, those that resumed this call's stream.
    resumes = sdk_resumes
    if args.proxy_log:
        per_tag, invariant_problems, _ = explain(args.proxy_log)
        problems += invariant_problems
        resumes = per_tag.get(call["tag"], {}).get("resumes", 0)
    if not call["ok"]:
        problems.append(f"the call failed: {call['error']}")
    if lost:
        problems.append(f"{lost} lost")
    if dups:
        problems.append(f"{dups} duplicated")
    if resumes < args.min_resumes:
        problems.append(f"only {resumes} resumes (expected at least {args.min_resumes})")
    ok = not problems
    line = (f"ok={call['ok']} notifications={n} expected={args.expect} lost={lost} duplicates={dups} "
            f"call_stream_reconnections={resumes} all_sdk_resume_requests={sdk_resumes} seconds={call['seconds']}")
    return ok, line + ("" if ok else "\n  " + "\n  ".join(problems))


def check_restart(args: argparse.Namespace, results: dict[str, Any]) -> tuple[bool, str]:
    problems = []
    (call,) = results["calls"]
    committed = results.get("committed", {})
    values = committed.get("values", [])
    receipts = call["receipts"]
    if call["ok"]:
        problems.append("the call succeeded: mcp-resume was not killed mid-call")
    # When mcp-resume was started again (written by run.sh) and when the call failed.
    with open(args.restarted_at) as f:
        restarted = float(f.read().strip())
    fail_after = round(call["ended_wall"] - restarted, 3)
    if fail_after > args.max_fail_seconds:
        problems.append(f"the call failed only {fail_after}s after the restart (limit {args.max_fail_seconds}s)")
    if committed.get("error"):
        problems.append(committed["error"])
    if not committed.get("ended"):
        problems.append("the replay of the abandoned stream from its start did not end")
    if values != list(range(1, len(values) + 1)):
        problems.append("the committed progress values are not 1..N")
    missing = sorted(set(values) - set(receipts))
    extra = sorted(set(receipts) - set(values))
    dups = len(receipts) - len(set(receipts))
    if missing:
        problems.append(f"{len(missing)} committed notifications never reached the client (first {missing[:5]})")
    if extra:
        problems.append(f"{len(extra)} received notifications are not in the store")
    if dups:
        problems.append(f"{dups} duplicated")
    # From the proxy: what the client held at the cut, and what its resumes brought after it.
    held = replayed = refused = 0
    if args.proxy_log:
        with open(args.proxy_log) as f:
            records = [json.loads(line) for line in f]
        responses = [r for r in records if r.get("kind") == "response"]
        call_streams = {r["stream"] for r in responses
                        if r.get("rpc_method") == "tools/call" and r.get("stream")}
        for r in responses:
            if r.get("stream") in call_streams and r["method"] == "POST":
                held = r.get("last_seq") or 0
                if r["outcome"] != "cut":
                    problems.append("the fault proxy did not cut the call's response")
            elif r["method"] == "GET" and (r.get("last_event_id") or "").split(".")[0] in call_streams:
                if seq_of(r["last_event_id"]) == 0:
                    continue  # client.py's own replay from the start, after the call
                if r["status"] == 200:
                    replayed += r.get("messages", 0)
                elif r["status"] == 400:
                    refused += 1
        if replayed == 0:
            problems.append("no event was replayed after the restart: the test proves nothing")
        if refused == 0:
            problems.append("no 400 at the end of the abandoned stream")
    ok = not problems
    line = (f"held_at_cut={held} replayed_after_restart={replayed} received={len(receipts)} "
            f"committed={len(values)} lost={len(missing)} duplicates={dups} refusals_400={refused} "
            f"failed_s_after_restart={fail_after} error={call['error']!r}")
    return ok, line + ("" if ok else "\n  " + "\n  ".join(problems))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("--mode", choices=["faults", "poll", "restart", "proxy"], required=True)
    parser.add_argument("--results")
    parser.add_argument("--proxy-log")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--expect", type=int, default=200)
    parser.add_argument("--duplicates", choices=["explained", "zero"], default="explained")
    parser.add_argument("--min-resumes", type=int, default=5)
    parser.add_argument("--max-fail-seconds", type=float, default=20.0)
    parser.add_argument("--restarted-at", help="restart: file holding the Unix time mcp-resume was started again")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.results:
        with open(args.results) as f:
            results = json.load(f)
    check = {"faults": check_faults, "poll": check_poll, "restart": check_restart, "proxy": check_proxy}[args.mode]
    ok, line = check(args, results)
    print(f"{args.name}: {line} => {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
