// TypeScript SDK client (@modelcontextprotocol/sdk 1.32.x) for the interop tests, unmodified.
//
// StreamableHTTPClientTransport resumes a broken SSE response by itself: GET + Last-Event-ID
// with the newest id it saw on that stream, after the server's `retry` (or its backoff), and
// gives up after `reconnectionOptions.maxRetries` consecutive failed attempts (2 by default).
// The test passes reconnectionOptions with maxRetries 1000 so it keeps resuming through the
// fault proxy's cuts; a `fetch` wrapper records each Last-Event-ID the SDK sends.
//
// Usage: node client.mjs --url URL --results FILE [--mode faults|poll] [--calls 50]
//          [--concurrency 10] [--tool burst] [--args JSON]
// The SDK is loaded from $INTEROP_NODE_MODULES (run.sh installs it under target/interop/).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.env.INTEROP_NODE_MODULES;
if (!modules) {
    console.error('client.mjs: set INTEROP_NODE_MODULES to the node_modules holding @modelcontextprotocol/sdk');
    process.exit(2);
}
const sdk = (path) => import(pathToFileURL(join(modules, '@modelcontextprotocol/sdk/dist/esm', path)).href);
const { Client } = await sdk('client/index.js');
const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js');
const { CallToolResultSchema } = await sdk('types.js');

const options = {
    url: '',
    results: '',
    mode: 'faults',
    calls: 50,
    concurrency: 10,
    tool: 'burst',
    args: '{"count": 200, "interval_ms": 10}',
    timeoutMs: 120000,
    maxRetries: 1000,
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(key in options)) {
        console.error(`client.mjs: unknown option ${argv[i]}`);
        process.exit(2);
    }
    options[key] = typeof options[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
}
if (!options.url || !options.results) {
    console.error('client.mjs: --url and --results are required');
    process.exit(2);
}

const started = performance.now();
const resumes = [];
const errors = [];
// Records every Last-Event-ID the SDK sends; the request itself is untouched.
const recordingFetch = (url, init) => {
    const headers = new Headers(init?.headers);
    const last = headers.get('last-event-id');
    if ((init?.method ?? 'GET') === 'GET' && last) {
        resumes.push({ t: Math.round(performance.now() - started) / 1000, last_event_id: last });
    }
    return fetch(url, init);
};

const transport = new StreamableHTTPClientTransport(new URL(options.url), {
    fetch: recordingFetch,
    reconnectionOptions: {
        initialReconnectionDelay: 250, // used only when the server sent no `retry`
        maxReconnectionDelay: 2000,
        reconnectionDelayGrowFactor: 1.5,
        maxRetries: options.maxRetries, // consecutive failed attempts before giving up (default 2)
    },
});
const client = new Client({ name: 'interop-ts-client', version: '1.0.0' });
client.onerror = (error) => errors.push(String(error?.message ?? error));
await client.connect(transport);

async function oneCall(tag) {
    const receipts = [];
    const record = { tag, ok: false, error: null };
    const callStarted = performance.now();
    try {
        const result = await client.callTool(
            { name: options.tool, arguments: { ...JSON.parse(options.args), tag } },
            CallToolResultSchema,
            {
                onprogress: (progress) => receipts.push(Math.round(progress.progress)),
                timeout: options.timeoutMs,
                resetTimeoutOnProgress: true,
            },
        );
        record.ok = !result.isError;
        if (result.isError) record.error = `tool error: ${JSON.stringify(result.content)}`;
    } catch (error) {
        record.error = `${error?.name ?? 'Error'}: ${error?.message ?? error}`;
    }
    record.seconds = Math.round(performance.now() - callStarted) / 1000;
    record.receipts = receipts;
    return record;
}

const calls = [];
if (options.mode === 'poll') {
    calls.push(await oneCall('ts-poll'));
} else {
    let next = 0;
    const worker = async () => {
        while (next < options.calls) {
            const index = next++;
            calls.push(await oneCall(`ts-${index}`));
        }
    };
    await Promise.all(Array.from({ length: options.concurrency }, worker));
}

try {
    await transport.terminateSession();
} catch {
    // not part of what is tested
}
await client.close();

const results = {
    client: 'typescript',
    mode: options.mode,
    calls,
    resumes,
    transport_errors: errors.length,
    max_retries: options.maxRetries,
    seconds: Math.round(performance.now() - started) / 1000,
};
writeFileSync(options.results, JSON.stringify(results, null, 1) + '\n');
const ok = calls.filter((c) => c.ok).length;
console.log(`client.mjs ${options.mode}: calls=${calls.length} ok=${ok} resumes=${resumes.length} seconds=${results.seconds}`);
process.exit(0);
