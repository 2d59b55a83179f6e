#!/usr/bin/env node
// Usage: node conformance-server.mjs PORT     (run it via conformance-server.sh)
//
// A small MCP server (Streamable HTTP, POST/GET/DELETE /mcp on 127.0.0.1:PORT)
// that implements exactly what the server scenarios of
// @modelcontextprotocol/conformance ask for (tool, resource and prompt names
// and payloads as written in each scenario's "Server Implementation
// Requirements"; see `conformance list --server`). server-everything is not
// that server: its tools have other names, so most scenarios fail against it.
//
// Wire behaviour worth knowing when it sits behind sluice:
//  - Host/Origin check (DNS-rebinding protection, scenario
//    dns-rebinding-protection): 403 unless the Host hostname is localhost,
//    127.0.0.1 or [::1] (any port) and Origin, when present, is too.
//  - Sessions (Mcp-Session-Id) and resumability: every SSE event carries an id
//    from a per-session event store; GET with Last-Event-ID replays the events
//    of that one stream after that id; the priming event carries retry: 100.
//  - Ready: prints "READY http://127.0.0.1:<port>/mcp" on stdout (PORT 0 = any free port).
import http from "node:http";
import { randomUUID } from "node:crypto";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import {
  CallToolRequestSchema, CompleteRequestSchema, ElicitResultSchema,
  CreateMessageResultSchema, GetPromptRequestSchema, ListPromptsRequestSchema,
  ListResourcesRequestSchema, ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema, ReadResourceRequestSchema, SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

const port = Number(process.argv[2] ?? process.env.PORT);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error("usage: conformance-server.mjs PORT");
  process.exit(2);
}

// 1x1 red PNG, and a 10 ms silent 8 kHz mono 8-bit WAV built at startup.
const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const WAV = (() => {
  const n = 80, b = Buffer.alloc(44 + n, 0x80);
  b.write("RIFF", 0); b.writeUInt32LE(36 + n, 4); b.write("WAVEfmt ", 8);
  b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22);
  b.writeUInt32LE(8000, 24); b.writeUInt32LE(8000, 28); b.writeUInt16LE(1, 32);
  b.writeUInt16LE(8, 34); b.write("data", 36); b.writeUInt32LE(n, 40);
  return b.toString("base64");
})();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (t) => ({ content: [{ type: "text", text: t }] });
const noArgs = { type: "object", properties: {} };

// Per-session event store: ids are "<n>" (one counter per session), replay is
// limited to the stream the Last-Event-ID belongs to.
class EventStore {
  #events = []; // [{id, streamId, message}]
  async storeEvent(streamId, message) {
    const id = String(this.#events.length + 1);
    this.#events.push({ id, streamId, message });
    return id;
  }
  async getStreamIdForEventId(eventId) {
    return this.#events.find((e) => e.id === eventId)?.streamId;
  }
  async replayEventsAfter(lastEventId, { send }) {
    const i = this.#events.findIndex((e) => e.id === lastEventId);
    if (i < 0) throw new Error(`unknown event id ${lastEventId}`);
    const { streamId } = this.#events[i];
    for (const e of this.#events.slice(i + 1)) {
      // Skip other streams and priming events (empty message).
      if (e.streamId === streamId && "jsonrpc" in e.message) await send(e.id, e.message);
    }
    return streamId;
  }
}

const elicitSchemas = {
  test_elicitation_sep1034_defaults: {
    type: "object",
    properties: {
      name: { type: "string", default: "John Doe" },
      age: { type: "integer", default: 30 },
      score: { type: "number", default: 95.5 },
      status: { type: "string", enum: ["active", "inactive", "pending"], default: "active" },
      verified: { type: "boolean", default: true },
    },
  },
  test_elicitation_sep1330_enums: {
    type: "object",
    properties: {
      untitledSingle: { type: "string", enum: ["option1", "option2", "option3"] },
      titledSingle: { type: "string", oneOf: [
        { const: "value1", title: "First Option" },
        { const: "value2", title: "Second Option" },
        { const: "value3", title: "Third Option" }] },
      legacyEnum: { type: "string", enum: ["opt1", "opt2", "opt3"],
        enumNames: ["Option One", "Option Two", "Option Three"] },
      untitledMulti: { type: "array", items: { type: "string", enum: ["option1", "option2", "option3"] } },
      titledMulti: { type: "array", items: { anyOf: [
        { const: "value1", title: "First Choice" },
        { const: "value2", title: "Second Choice" },
        { const: "value3", title: "Third Choice" }] } },
    },
  },
};

const tools = [
  { name: "test_simple_text", description: "Returns simple text", inputSchema: noArgs },
  { name: "test_image_content", description: "Returns a PNG image", inputSchema: noArgs },
  { name: "test_audio_content", description: "Returns WAV audio", inputSchema: noArgs },
  { name: "test_embedded_resource", description: "Returns an embedded resource", inputSchema: noArgs },
  { name: "test_multiple_content_types", description: "Returns text, image and resource", inputSchema: noArgs },
  { name: "test_tool_with_logging", description: "Logs 3 messages while running", inputSchema: noArgs },
  { name: "test_tool_with_progress", description: "Reports progress 0, 50, 100 of 100", inputSchema: noArgs },
  { name: "test_error_handling", description: "Always fails (isError)", inputSchema: noArgs },
  { name: "test_sampling", description: "Asks the client for sampling/createMessage",
    inputSchema: { type: "object", properties: { prompt: { type: "string" } }, required: ["prompt"] } },
  { name: "test_elicitation", description: "Asks the client for elicitation/create",
    inputSchema: { type: "object", properties: { message: { type: "string" } }, required: ["message"] } },
  { name: "test_elicitation_sep1034_defaults", description: "Elicitation with defaults", inputSchema: noArgs },
  { name: "test_elicitation_sep1330_enums", description: "Elicitation with enum variants", inputSchema: noArgs },
  { name: "test_reconnection", description: "Closes its SSE stream mid-call, then answers (client must resume)", inputSchema: noArgs },
  { name: "json_schema_2020_12_tool", description: "Tool with JSON Schema 2020-12 features",
    inputSchema: {
      $schema: "https://json-schema.org/draft/2020-12/schema", type: "object",
      $defs: { address: { type: "object", properties: { street: { type: "string" }, city: { type: "string" } } } },
      properties: { name: { type: "string" }, address: { $ref: "#/$defs/address" } },
      additionalProperties: false,
    } },
];

async function callTool(name, args, extra, transport) {
  const log = (data) => extra.sendNotification({ method: "notifications/message", params: { level: "info", data } });
  switch (name) {
    case "test_simple_text": return text("This is a simple text response for testing.");
    case "test_image_content": return { content: [{ type: "image", data: PNG, mimeType: "image/png" }] };
    case "test_audio_content": return { content: [{ type: "audio", data: WAV, mimeType: "audio/wav" }] };
    case "test_embedded_resource": return { content: [{ type: "resource", resource: {
      uri: "test://embedded-resource", mimeType: "text/plain", text: "This is an embedded resource content." } }] };
    case "test_multiple_content_types": return { content: [
      { type: "text", text: "Multiple content types test:" },
      { type: "image", data: PNG, mimeType: "image/png" },
      { type: "resource", resource: { uri: "test://mixed-content-resource", mimeType: "application/json",
        text: JSON.stringify({ test: "data", value: 123 }) } }] };
    case "test_tool_with_logging":
      await log("Tool execution started"); await sleep(50);
      await log("Tool processing data"); await sleep(50);
      await log("Tool execution completed");
      return text("Tool with logging executed successfully");
    case "test_tool_with_progress": {
      const progressToken = extra._meta?.progressToken;
      for (const progress of [0, 50, 100]) {
        if (progress) await sleep(50);
        if (progressToken !== undefined) {
          await extra.sendNotification({ method: "notifications/progress", params: { progressToken, progress, total: 100 } });
        }
      }
      return text("Tool with progress executed successfully");
    }
    case "test_error_handling":
      return { isError: true, content: [{ type: "text", text: "This tool intentionally returns an error for testing" }] };
    case "test_sampling": {
      const r = await extra.sendRequest({ method: "sampling/createMessage", params: {
        messages: [{ role: "user", content: { type: "text", text: String(args.prompt ?? "") } }], maxTokens: 100 } },
        CreateMessageResultSchema);
      return text(`LLM response: ${r.content?.type === "text" ? r.content.text : JSON.stringify(r.content)}`);
    }
    case "test_elicitation": {
      const r = await extra.sendRequest({ method: "elicitation/create", params: {
        message: String(args.message ?? ""),
        requestedSchema: { type: "object", properties: {
          username: { type: "string", description: "User's response" },
          email: { type: "string", description: "User's email address" } }, required: ["username", "email"] } } },
        ElicitResultSchema);
      return text(`User response: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
    }
    case "test_elicitation_sep1034_defaults":
    case "test_elicitation_sep1330_enums": {
      const r = await extra.sendRequest({ method: "elicitation/create", params: {
        message: `Conformance: ${name}`, requestedSchema: elicitSchemas[name] } }, ElicitResultSchema);
      return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
    }
    case "test_reconnection":
      // An event with an id first, so the client has a Last-Event-ID to resume
      // from; then end this request's SSE stream and answer later: the result
      // is only in the event store, so the client must GET with Last-Event-ID.
      // (extra.closeSSEStream exists only for protocol >= 2025-11-25 clients,
      // and the scenario speaks 2025-03-26, hence the transport's own method.)
      await log("test_reconnection: closing stream");
      await sleep(50);
      transport.closeSSEStream(extra.requestId);
      await sleep(200);
      return text("Reconnection test completed");
    case "json_schema_2020_12_tool": return text(`json_schema_2020_12_tool: ${JSON.stringify(args)}`);
    default:
      return { isError: true, content: [{ type: "text", text: `Unknown tool: ${name}` }] };
  }
}

const resources = [
  { uri: "test://static-text", name: "static-text", description: "Static text resource", mimeType: "text/plain" },
  { uri: "test://static-binary", name: "static-binary", description: "Static binary resource (PNG)", mimeType: "image/png" },
  { uri: "test://watched-resource", name: "watched-resource", description: "Resource for subscribe tests", mimeType: "text/plain" },
];

function readResource(uri) {
  if (uri === "test://static-text")
    return { contents: [{ uri, mimeType: "text/plain", text: "This is the content of the static text resource." }] };
  if (uri === "test://static-binary") return { contents: [{ uri, mimeType: "image/png", blob: PNG }] };
  if (uri === "test://watched-resource") return { contents: [{ uri, mimeType: "text/plain", text: "Watched resource content." }] };
  const m = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
  if (m) return { contents: [{ uri, mimeType: "application/json",
    text: JSON.stringify({ id: m[1], templateTest: true, data: `Data for ID: ${m[1]}` }) }] };
  throw Object.assign(new Error(`Resource not found: ${uri}`), { code: -32002 });
}

const prompts = [
  { name: "test_simple_prompt", description: "Simple prompt without arguments" },
  { name: "test_prompt_with_arguments", description: "Prompt with two arguments", arguments: [
    { name: "arg1", description: "First test argument", required: true },
    { name: "arg2", description: "Second test argument", required: true }] },
  { name: "test_prompt_with_embedded_resource", description: "Prompt embedding a resource", arguments: [
    { name: "resourceUri", description: "URI of the resource to embed", required: true }] },
  { name: "test_prompt_with_image", description: "Prompt with an image" },
];

function getPrompt(name, a = {}) {
  const user = (content) => ({ role: "user", content });
  switch (name) {
    case "test_simple_prompt":
      return { messages: [user({ type: "text", text: "This is a simple prompt for testing." })] };
    case "test_prompt_with_arguments":
      return { messages: [user({ type: "text", text: `Prompt with arguments: arg1='${a.arg1}', arg2='${a.arg2}'` })] };
    case "test_prompt_with_embedded_resource":
      return { messages: [
        user({ type: "resource", resource: { uri: a.resourceUri, mimeType: "text/plain", text: "Embedded resource content for testing." } }),
        user({ type: "text", text: "Please process the embedded resource above." })] };
    case "test_prompt_with_image":
      return { messages: [user({ type: "image", data: PNG, mimeType: "image/png" }),
        user({ type: "text", text: "Please analyze the image above." })] };
    default:
      throw Object.assign(new Error(`Unknown prompt: ${name}`), { code: -32602 });
  }
}

function createServer(transport) {
  const server = new Server({ name: "sluice-conformance-server", version: "1.0.0" }, {
    capabilities: { tools: {}, resources: { subscribe: true }, prompts: {}, logging: {}, completions: {} },
  });
  const subscriptions = new Set();
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) =>
    callTool(req.params.name, req.params.arguments ?? {}, extra, transport));
  server.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({ resourceTemplates: [
    { uriTemplate: "test://template/{id}/data", name: "template-data", description: "Templated JSON", mimeType: "application/json" }] }));
  server.setRequestHandler(ReadResourceRequestSchema, async (req) => readResource(req.params.uri));
  server.setRequestHandler(SubscribeRequestSchema, async (req) => { subscriptions.add(req.params.uri); return {}; });
  server.setRequestHandler(UnsubscribeRequestSchema, async (req) => { subscriptions.delete(req.params.uri); return {}; });
  server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts }));
  server.setRequestHandler(GetPromptRequestSchema, async (req) => getPrompt(req.params.name, req.params.arguments));
  server.setRequestHandler(CompleteRequestSchema, async (req) => {
    const words = ["paris", "park", "party"];
    const values = words.filter((w) => w.startsWith(req.params.argument?.value ?? ""));
    return { completion: { values, total: values.length, hasMore: false } };
  });
  return server;
}

// DNS-rebinding protection, port-agnostic so it holds behind a proxy too.
const LOCAL = new Set(["localhost", "127.0.0.1", "[::1]"]);
const hostname = (hostPort) => /^(\[[^\]]*\]|[^:]*)/.exec(hostPort ?? "")[1].toLowerCase();
function localRequest(req) {
  if (!LOCAL.has(hostname(req.headers.host))) return false;
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try { return LOCAL.has(new URL(origin).hostname.toLowerCase()); } catch { return false; }
}

const sessions = new Map(); // sessionId -> transport
function jsonError(res, status, message) {
  res.writeHead(status, { "content-type": "application/json" })
    .end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message }, id: null }));
}

const httpServer = http.createServer(async (req, res) => {
  try {
    if (new URL(req.url, "http://x").pathname !== "/mcp") return jsonError(res, 404, "Not found");
    if (!localRequest(req)) return jsonError(res, 403, "Forbidden: non-localhost Host or Origin");
    const sid = req.headers["mcp-session-id"];
    if (sid !== undefined) {
      const transport = sessions.get(sid);
      if (!transport) return jsonError(res, 404, "Session not found");
      return await transport.handleRequest(req, res);
    }
    if (req.method !== "POST") return jsonError(res, 400, "Bad Request: Mcp-Session-Id header required");
    // No session id: must be an initialize request; the transport rejects anything else.
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: new EventStore(),
      retryInterval: 100,
      onsessioninitialized: (id) => sessions.set(id, transport),
      onsessionclosed: (id) => sessions.delete(id),
    });
    transport.onclose = () => { if (transport.sessionId) sessions.delete(transport.sessionId); };
    await createServer(transport).connect(transport);
    await transport.handleRequest(req, res);
    if (!transport.sessionId) await transport.close(); // initialize was refused
  } catch (err) {
    console.error("request failed:", err);
    if (!res.headersSent) jsonError(res, 500, "Internal server error");
    else res.end();
  }
});

httpServer.listen(port, "127.0.0.1", () => {
  // The line the Rust tests wait for (same convention as everything.sh).
  process.stdout.write(`READY http://127.0.0.1:${httpServer.address().port}/mcp\n`);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
