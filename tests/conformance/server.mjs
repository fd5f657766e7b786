// Upstream MCP server for the conformance comparison: the official TypeScript SDK
// (@modelcontextprotocol/sdk 1.32.x), with the same fixtures as server.py.
//
// Streamable HTTP at 127.0.0.1:<port>/mcp, stateful sessions (one transport per session), SSE
// responses. Its DNS-rebinding protection is the SDK's default for a loopback server:
// createMcpExpressApp() refuses a request whose Host is not a loopback name (403). It checks
// Host only, not Origin, so a proxy that replaces Host with the upstream's address would let
// a rebinding request through unless it checks Host itself: the case issue 24 found with the
// suite's own TypeScript reference server. (server.py checks Origin too, which the proxy
// forwards unchanged, so it refuses such a request whatever the proxy does.)
//
// Usage: node server.mjs [--port 0]   (the SDK from $CONFORMANCE_NODE_MODULES)
// Prints one line `server.mjs listening on http://127.0.0.1:<port>/mcp` once it accepts connections.

import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.env.CONFORMANCE_NODE_MODULES;
if (!modules) {
    console.error('server.mjs: set CONFORMANCE_NODE_MODULES to the node_modules holding @modelcontextprotocol/sdk');
    process.exit(2);
}
const load = (path) => import(pathToFileURL(join(modules, path)).href);
const { McpServer, ResourceTemplate } = await load('@modelcontextprotocol/sdk/dist/esm/server/mcp.js');
const { StreamableHTTPServerTransport } = await load('@modelcontextprotocol/sdk/dist/esm/server/streamableHttp.js');
const { createMcpExpressApp } = await load('@modelcontextprotocol/sdk/dist/esm/server/express.js');
const { CompleteRequestSchema, SubscribeRequestSchema, UnsubscribeRequestSchema, isInitializeRequest } = await load(
    '@modelcontextprotocol/sdk/dist/esm/types.js'
);
const { z } = await load('zod/index.js');

// A 1x1 PNG and a minimal WAV: the scenarios check the content type and that data is base64.
const PNG_BASE64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const WAV_BASE64 = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (value) => ({ type: 'text', text: value });
const textResult = (value) => ({ content: [text(value)] });

// The elicitation schemas of the three elicitation scenarios (plain, SEP-1034 defaults, SEP-1330 enums).
const USER_RESPONSE = {
    type: 'object',
    properties: { response: { type: 'string', description: "User's response" } },
    required: ['response'],
};
const DEFAULTS = {
    type: 'object',
    properties: {
        name: { type: 'string', default: 'John Doe', description: 'User name' },
        age: { type: 'integer', default: 30, description: 'User age' },
        score: { type: 'number', default: 95.5, description: 'User score' },
        status: { type: 'string', enum: ['active', 'inactive', 'pending'], default: 'active', description: 'User status' },
        verified: { type: 'boolean', default: true, description: 'Verification status' },
    },
};
const ENUMS = {
    type: 'object',
    properties: {
        untitledSingle: { type: 'string', enum: ['active', 'inactive', 'pending'], description: 'Simple enum without titles' },
        titledSingle: {
            type: 'string',
            description: 'Enum with titled options (oneOf)',
            oneOf: [
                { const: 'low', title: 'Low Priority' },
                { const: 'medium', title: 'Medium Priority' },
                { const: 'high', title: 'High Priority' },
            ],
        },
        untitledMulti: {
            type: 'array',
            description: 'Multi-select without titles',
            items: { type: 'string', enum: ['read', 'write', 'execute'] },
        },
        titledMulti: {
            type: 'array',
            description: 'Multi-select with titled options',
            items: {
                anyOf: [
                    { const: 'feature', title: 'New Feature' },
                    { const: 'bug', title: 'Bug Fix' },
                    { const: 'docs', title: 'Documentation' },
                ],
            },
        },
        legacyEnum: {
            type: 'string',
            description: 'Legacy enum with enumNames',
            enum: ['small', 'medium', 'large'],
            enumNames: ['Small Size', 'Medium Size', 'Large Size'],
        },
    },
    required: ['untitledSingle', 'titledSingle', 'untitledMulti', 'titledMulti', 'legacyEnum'],
};

// One McpServer per session, as the SDK's stateful examples do.
function conformanceServer() {
    const server = new McpServer(
        { name: 'conformance-upstream', version: '1.0.0' },
        { capabilities: { logging: {}, resources: { subscribe: true }, completions: {} } }
    );

    server.registerTool('test_simple_text', { description: 'Return one text block.' }, async () =>
        textResult('This is a simple text response for testing.')
    );
    server.registerTool('test_image_content', { description: 'Return one image block.' }, async () => ({
        content: [{ type: 'image', data: PNG_BASE64, mimeType: 'image/png' }],
    }));
    server.registerTool('test_audio_content', { description: 'Return one audio block.' }, async () => ({
        content: [{ type: 'audio', data: WAV_BASE64, mimeType: 'audio/wav' }],
    }));
    server.registerTool('test_embedded_resource', { description: 'Return one embedded text resource.' }, async () => ({
        content: [
            {
                type: 'resource',
                resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
            },
        ],
    }));
    server.registerTool(
        'test_multiple_content_types',
        { description: 'Return a text, an image and an embedded resource block.' },
        async () => ({
            content: [
                text('Multiple content types test:'),
                { type: 'image', data: PNG_BASE64, mimeType: 'image/png' },
                {
                    type: 'resource',
                    resource: {
                        uri: 'test://mixed-content-resource',
                        mimeType: 'application/json',
                        text: JSON.stringify({ test: 'data', value: 123 }),
                    },
                },
            ],
        })
    );
    server.registerTool('test_tool_with_logging', { description: 'Send three log notifications while running.' }, async (extra) => {
        for (const data of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
            await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data } });
            await sleep(50);
        }
        return textResult('Tool with logging executed successfully');
    });
    server.registerTool('test_tool_with_progress', { description: 'Report progress 0, 50 and 100 of 100.' }, async (extra) => {
        const progressToken = extra._meta?.progressToken;
        for (const progress of [0, 50, 100]) {
            if (progressToken !== undefined) {
                await extra.sendNotification({
                    method: 'notifications/progress',
                    params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` },
                });
            }
            await sleep(50);
        }
        return textResult(String(progressToken ?? 0));
    });
    server.registerTool('test_error_handling', { description: 'Fail: the result carries isError.' }, async () => {
        throw new Error('This tool intentionally returns an error for testing');
    });
    server.registerTool(
        'test_sampling',
        { description: "Ask the client's LLM (sampling/createMessage).", inputSchema: { prompt: z.string() } },
        async ({ prompt }, extra) => {
            const result = await server.server.createMessage(
                { messages: [{ role: 'user', content: text(prompt) }], maxTokens: 100 },
                { relatedRequestId: extra.requestId }
            );
            return textResult(`LLM response: ${result.content?.type === 'text' ? result.content.text : 'No response'}`);
        }
    );
    // Server-to-client requests go on the call's own stream (relatedRequestId), as server.py's
    // do: without it the SDK sends them on the standalone GET stream, and drops them when the
    // client has not opened that stream yet, so the call waits for an answer that never comes.
    const elicit = async (extra, message, requestedSchema, prefix) => {
        const result = await server.server.elicitInput({ message, requestedSchema }, { relatedRequestId: extra.requestId });
        const content = result.action === 'accept' ? JSON.stringify(result.content ?? {}) : '{}';
        return textResult(`${prefix}: action=${result.action}, content=${content}`);
    };
    server.registerTool(
        'test_elicitation',
        { description: 'Ask the user (elicitation/create) for one string.', inputSchema: { message: z.string() } },
        async ({ message }, extra) => elicit(extra, message, USER_RESPONSE, 'User response')
    );
    server.registerTool('test_elicitation_sep1034_defaults', { description: 'Elicit with a default on every field.' }, async (extra) =>
        elicit(extra, 'Please provide user information', DEFAULTS, 'Elicitation result')
    );
    server.registerTool('test_elicitation_sep1330_enums', { description: 'Elicit with every enum shape.' }, async (extra) =>
        elicit(extra, 'Please select values using different enum schema types', ENUMS, 'Elicitation completed')
    );

    server.registerResource(
        'static-text',
        'test://static-text',
        { description: 'A fixed text resource.', mimeType: 'text/plain' },
        async (uri) => ({
            contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }],
        })
    );
    server.registerResource(
        'static-binary',
        'test://static-binary',
        { description: 'A fixed binary resource (the PNG).', mimeType: 'image/png' },
        async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG_BASE64 }] })
    );
    server.registerResource(
        'template-data',
        new ResourceTemplate('test://template/{id}/data', { list: undefined }),
        { description: 'A template resource: {id} is substituted.', mimeType: 'application/json' },
        async (uri, { id }) => ({
            contents: [
                {
                    uri: uri.href,
                    mimeType: 'application/json',
                    text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
                },
            ],
        })
    );
    server.registerResource(
        'watched-resource',
        'test://watched-resource',
        { description: 'A resource clients subscribe to.', mimeType: 'text/plain' },
        async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'Watched resource content' }] })
    );
    server.server.setRequestHandler(SubscribeRequestSchema, async () => ({}));
    server.server.setRequestHandler(UnsubscribeRequestSchema, async () => ({}));
    // Completion is declared and answers; the scenario needs no suggestions.
    server.server.setRequestHandler(CompleteRequestSchema, async () => ({ completion: { values: [], total: 0, hasMore: false } }));

    server.registerPrompt('test_simple_prompt', { description: 'A prompt without arguments.' }, async () => ({
        messages: [{ role: 'user', content: text('This is a simple prompt for testing.') }],
    }));
    server.registerPrompt(
        'test_prompt_with_arguments',
        { description: 'A prompt with two required arguments.', argsSchema: { arg1: z.string(), arg2: z.string() } },
        async ({ arg1, arg2 }) => ({
            messages: [{ role: 'user', content: text(`Prompt with arguments: arg1='${arg1}', arg2='${arg2}'`) }],
        })
    );
    server.registerPrompt(
        'test_prompt_with_embedded_resource',
        { description: 'A prompt that embeds the resource it is given.', argsSchema: { resourceUri: z.string() } },
        async ({ resourceUri }) => ({
            messages: [
                {
                    role: 'user',
                    content: {
                        type: 'resource',
                        resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' },
                    },
                },
                { role: 'user', content: text('Please process the embedded resource above.') },
            ],
        })
    );
    server.registerPrompt('test_prompt_with_image', { description: 'A prompt with an image.' }, async () => ({
        messages: [
            { role: 'user', content: { type: 'image', data: PNG_BASE64, mimeType: 'image/png' } },
            { role: 'user', content: text('Please analyze the image above.') },
        ],
    }));
    return server;
}

let port = 0;
for (let i = 2; i < process.argv.length; i++) {
    if (process.argv[i] === '--port') port = Number(process.argv[++i]);
    else {
        console.error(`server.mjs: unknown argument ${process.argv[i]}`);
        process.exit(2);
    }
}

const app = createMcpExpressApp(); // host 127.0.0.1: Host validation on
const transports = new Map();

app.post('/mcp', async (req, res) => {
    const sessionId = req.headers['mcp-session-id'];
    let transport = sessionId ? transports.get(sessionId) : undefined;
    if (!transport) {
        if (sessionId || !isInitializeRequest(req.body)) {
            res.status(sessionId ? 404 : 400).json({
                jsonrpc: '2.0',
                error: { code: -32000, message: sessionId ? 'Session not found' : 'Bad Request: no session id' },
                id: null,
            });
            return;
        }
        transport = new StreamableHTTPServerTransport({
            sessionIdGenerator: () => randomUUID(),
            onsessioninitialized: (id) => transports.set(id, transport),
        });
        transport.onclose = () => transport.sessionId && transports.delete(transport.sessionId);
        await conformanceServer().connect(transport);
    }
    await transport.handleRequest(req, res, req.body);
});

// GET (the standalone stream) and DELETE (session end) need an existing session.
const existing = async (req, res) => {
    const transport = transports.get(req.headers['mcp-session-id']);
    if (!transport) {
        res.status(req.headers['mcp-session-id'] ? 404 : 400).send('Unknown or missing session id');
        return;
    }
    await transport.handleRequest(req, res);
};
app.get('/mcp', existing);
app.delete('/mcp', existing);

const listener = app.listen(port, '127.0.0.1', () => {
    console.log(`server.mjs listening on http://127.0.0.1:${listener.address().port}/mcp`);
});
