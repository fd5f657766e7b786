// The status page in a real browser, while MCP traffic runs through `mcp-resume proxy`:
//   node check.mjs --mcp URL --admin URL --screenshot PATH --chromium PATH --profile DIR
//
// 1. Traffic, raw MCP over fetch against the Python SDK server (tests/interop/server.py) behind
//    the proxy: waves of `burst` calls read to their end; LONG_CALLS `long_task` calls each left
//    after its first notification (detached streams that run on), RESUMED of them resumed with
//    Last-Event-ID and left again; MALFORMED, UNKNOWN and FOREIGN refusals.
// 2. Chromium (playwright-core, the distribution's binary) loads the admin listener's `/`; each
//    time the page has fetched status.json, `/metrics` is fetched at once and every number the
//    page shows (its `data-metric` cells) is compared with the same metric in `/metrics`.
//    Passes when MATCHES_NEEDED readings agree exactly (traffic moves between two readings now
//    and then; a reading that differs is printed and retried), and when the exact figures the
//    traffic made are shown: live and detached streams, resumes, refusals by reason.
// 3. A screenshot of the page at PATH.
// Prints one line per step; exits non-zero on any failure.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const MCP = args.mcp;
const ADMIN = args.admin;
const VERSION = "2025-11-25";
const LONG_CALLS = 6;
const RESUMED = 3;
const MALFORMED = 2;
const UNKNOWN = 1;
const FOREIGN = 1;
const BURST_WAVES = 8;
const MATCHES_NEEDED = 3;
const ATTEMPTS = 20;

// The page's cards and the metrics behind them (names: mcp_resume::metrics).
const METRICS = {
  streams_live: ["mcp_resume_streams_live"],
  streams_detached: ["mcp_resume_streams_detached"],
  streams_opened: ["mcp_resume_streams_opened_total"],
  streams_completed: ["mcp_resume_streams_ended_total", 'end="completed"'],
  streams_abandoned: ["mcp_resume_streams_ended_total", 'end="abandoned"'],
  streams_unresumable: ["mcp_resume_streams_unresumable_total"],
  events_committed: ["mcp_resume_events_committed_total"],
  events_committed_bytes: ["mcp_resume_events_committed_bytes_total"],
  resumes_replayed: ["mcp_resume_resumes_total", 'outcome="replayed"'],
  store_errors: ["mcp_resume_store_errors_total"],
  connections_open: ["mcp_resume_proxy_connections_open"],
  upstream_errors: ["mcp_resume_proxy_upstream_errors_total"],
  "refusals.malformed": ["mcp_resume_resumes_total", 'outcome="malformed"'],
  "refusals.unknown": ["mcp_resume_resumes_total", 'outcome="unknown"'],
  "refusals.foreign": ["mcp_resume_resumes_total", 'outcome="foreign"'],
  "refusals.trimmed": ["mcp_resume_resumes_total", 'outcome="trimmed"'],
  "refusals.ended": ["mcp_resume_resumes_total", 'outcome="ended"'],
};

const t0 = Date.now();
const log = (text) => console.log(`[browser ${String(Math.round((Date.now() - t0) / 1000)).padStart(3)}s] ${text}`);
const fail = (text) => {
  console.error(`browser: FAIL: ${text}`);
  process.exit(1);
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------------------------------
// MCP over fetch

let session = null;

function headers(extra = {}) {
  const h = { accept: "application/json, text/event-stream", "content-type": "application/json", "mcp-protocol-version": VERSION, ...extra };
  if (session) h["mcp-session-id"] = session;
  return h;
}

// Reads SSE events from a fetch response; calls onEvent({id, data}) for each, stops when it returns true.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { id: null, data: "" };
      for (const line of block.split("\n")) {
        if (line.startsWith("id:")) event.id = line.slice(3).trim();
        else if (line.startsWith("data:")) event.data += line.slice(5).trim();
      }
      if (event.data && onEvent(event)) {
        await reader.cancel().catch(() => {});
        return true;
      }
    }
  }
}

let nextId = 1;
function call(tool, toolArgs) {
  const id = nextId++;
  return {
    jsonrpc: "2.0", id, method: "tools/call",
    params: { name: tool, arguments: toolArgs, _meta: { progressToken: `token-${id}` } },
  };
}

async function post(message, signal) {
  const response = await fetch(MCP, { method: "POST", headers: headers(), body: JSON.stringify(message), signal });
  if (!response.ok) fail(`POST ${message.method}: HTTP ${response.status} ${await response.text()}`);
  return response;
}

async function initialize() {
  const response = await post({
    jsonrpc: "2.0", id: 0, method: "initialize",
    params: { protocolVersion: VERSION, capabilities: {}, clientInfo: { name: "browser-test", version: "1.0" } },
  });
  session = response.headers.get("mcp-session-id");
  await response.text();
  const initialized = await fetch(MCP, { method: "POST", headers: headers(), body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }) });
  await initialized.text();
  if (!session) fail("initialize: no session id");
}

// A call read to its end: how many messages it carried.
async function wholeCall(tool, toolArgs) {
  const response = await post(call(tool, toolArgs));
  let messages = 0;
  await readEvents(response, () => {
    messages++;
    return false;
  });
  return messages;
}

// A call left after its first message: the id of that message.
async function leftCall(tool, toolArgs) {
  const controller = new AbortController();
  const response = await post(call(tool, toolArgs), controller.signal);
  let first = null;
  await readEvents(response, (event) => ((first = event.id), true));
  controller.abort();
  if (!first) fail(`${tool}: no first event`);
  return first;
}

async function resumeFrom(lastEventId, sessionId = session) {
  const controller = new AbortController();
  const response = await fetch(MCP, {
    method: "GET",
    headers: { ...headers({ "last-event-id": lastEventId, accept: "text/event-stream" }), "mcp-session-id": sessionId },
    signal: controller.signal,
  });
  return { response, controller };
}

async function refuse(lastEventId, sessionId) {
  const { response } = await resumeFrom(lastEventId, sessionId);
  await response.text();
  if (response.status !== 400) fail(`resume from ${lastEventId}: expected 400, got ${response.status}`);
}

// ------------------------------------------------------------------------------------------
// /metrics

function metricValue(exposition, [name, label]) {
  let total = 0;
  for (const line of exposition.split("\n")) {
    if (line.startsWith("#") || !line.trim()) continue;
    const space = line.lastIndexOf(" ");
    const series = line.slice(0, space);
    if (series !== name && !series.startsWith(name + "{")) continue;
    if (label && !series.includes(label)) continue;
    total += Number(line.slice(space + 1));
  }
  return total;
}

// ------------------------------------------------------------------------------------------

await initialize();
log(`session open on ${MCP}`);

// One notification every 5 s: the streams run on, detached, through the whole check, and
// move its numbers seldom enough that most readings of the page and /metrics agree.
const longCalls = Array.from({ length: LONG_CALLS }, (_, i) => leftCall("long_task", { seconds: 90, count: 18, tag: `long-${i}` }));
const long = await Promise.all(longCalls);
log(`${LONG_CALLS} long_task calls left after their first notification`);
for (let i = 0; i < RESUMED; i++) {
  const { response, controller } = await resumeFrom(long[i]);
  if (response.status !== 200) fail(`resume ${long[i]}: HTTP ${response.status}`);
  await readEvents(response, () => true);
  controller.abort();
}
log(`${RESUMED} of them resumed and left again`);
for (let i = 0; i < MALFORMED; i++) await refuse(`not-an-id-${i}`, session);
for (let i = 0; i < UNKNOWN; i++) await refuse(`${"0".repeat(32)}.1`, session);
for (let i = 0; i < FOREIGN; i++) await refuse(long[0], "another-session");
log(`refusals sent: ${MALFORMED} malformed, ${UNKNOWN} unknown, ${FOREIGN} foreign`);

const profile = mkdtempSync(join(args.profile || tmpdir(), "chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: args.chromium || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 1000 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let status = 0;
try {
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  page.on("console", (message) => message.type() === "error" && problems.push(message.text()));
  page.on("pageerror", (error) => problems.push(error.message));
  await page.goto(`${ADMIN}/`);
  await page.waitForSelector("body[data-updated]");
  log(`page loaded from ${ADMIN}/`);

  // Waves of bursts while the page polls: the chart's events per second.
  let burstMessages = 0;
  for (let wave = 0; wave < BURST_WAVES; wave++) {
    const counts = await Promise.all([0, 1, 2].map((i) => wholeCall("burst", { count: 40 + 20 * wave, interval_ms: 10, tag: `w${wave}-${i}` })));
    burstMessages += counts.reduce((a, b) => a + b, 0);
    await sleep(1000);
  }
  log(`${BURST_WAVES * 3} burst calls read to their end (${burstMessages} messages)`);

  // The page's numbers against /metrics, each time the page has fetched its data.
  let matches = 0;
  let shown = null;
  for (let attempt = 1; attempt <= ATTEMPTS && matches < MATCHES_NEEDED; attempt++) {
    // The page's own fetch of its data; /metrics right after it; then what the page shows of
    // that very document (it marks the body with the document's now_ms once rendered).
    const polled = await page.waitForResponse((response) => response.url().endsWith("/status.json"));
    const exposition = await (await fetch(`${ADMIN}/metrics`)).text();
    const { now_ms } = await polled.json();
    await page.waitForFunction((ms) => document.body.dataset.updated === String(ms), now_ms);
    shown = await page.$$eval("[data-metric]", (cells) =>
      Object.fromEntries(cells.map((cell) => [cell.dataset.metric, Number(cell.textContent.replace(/,/g, ""))])));
    const differences = Object.entries(METRICS)
      .filter(([key, metric]) => shown[key] !== metricValue(exposition, metric))
      .map(([key, metric]) => `${key}: page ${shown[key]}, /metrics ${metricValue(exposition, metric)}`);
    if (Object.keys(METRICS).some((key) => !(key in shown))) fail(`the page lacks a number: ${JSON.stringify(shown)}`);
    if (differences.length === 0) matches++;
    else log(`reading ${attempt} differs (traffic moved between the two?): ${differences.join("; ")}`);
  }
  if (matches < MATCHES_NEEDED) fail(`only ${matches} of the page's readings matched /metrics`);
  log(`${matches} readings: every number on the page equals /metrics`);

  // The figures the traffic made.
  const expect = (key, predicate, what) => {
    if (!predicate(shown[key])) fail(`${key} is ${shown[key]}, expected ${what}`);
  };
  expect("streams_live", (v) => v >= LONG_CALLS, `at least ${LONG_CALLS}`);
  expect("streams_detached", (v) => v >= LONG_CALLS, `at least ${LONG_CALLS} (left, or resumed and left)`);
  expect("resumes_replayed", (v) => v === RESUMED, RESUMED);
  expect("refusals.malformed", (v) => v === MALFORMED, MALFORMED);
  expect("refusals.unknown", (v) => v === UNKNOWN, UNKNOWN);
  expect("refusals.foreign", (v) => v === FOREIGN, FOREIGN);
  expect("streams_completed", (v) => v >= BURST_WAVES * 3, `at least ${BURST_WAVES * 3}`);
  const rows = await page.$$eval("#streams tr", (rows) => rows.map((row) => row.textContent));
  // The proxy reads each call's method and tool from the request: the rows name the tool.
  const detachedRows = rows.filter((row) => row.includes("detached") && row.includes("long_task")).length;
  if (detachedRows < LONG_CALLS) fail(`${detachedRows} detached long_task streams listed, expected ${LONG_CALLS}: ${rows.join(" | ")}`);
  const outcomes = await page.$$eval("#resumes tr", (rows) => rows.map((row) => row.dataset.outcome));
  const refused = outcomes.filter((o) => o === "refused").length;
  const replayed = outcomes.filter((o) => o === "replayed").length;
  if (refused !== MALFORMED + UNKNOWN + FOREIGN || replayed !== RESUMED) fail(`recent resumes: ${outcomes.join(", ")}`);
  const lines = await page.$$eval("#chart polyline", (lines) => lines.map((line) => line.getAttribute("points").split(" ").length));
  if (lines.length !== 3 || lines[0] < 10) fail(`the chart has ${JSON.stringify(lines)} points per line`);
  log(`shown: ${shown.streams_live} live (${shown.streams_detached} detached), ${detachedRows} detached rows, ${shown.events_committed} events, ${replayed} resumes and ${refused} refusals listed, ${lines[0]} chart points`);
  if (problems.length) fail(`the page logged errors: ${problems.join("; ")}`);

  if (args.screenshot) {
    await page.screenshot({ path: args.screenshot, fullPage: true });
    log(`screenshot: ${args.screenshot}`);
  }
  console.log("browser: PASS");
} catch (error) {
  console.error(`browser: FAIL: ${error.stack || error}`);
  status = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(status);
