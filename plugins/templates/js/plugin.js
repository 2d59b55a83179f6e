// {{name}}: a sluice plugin (world `plugin` of sluice:plugin@0.2.0), in JavaScript.
//
// What it does: refuses the `tools/call` of every tool named in its configuration with
// a JSON-RPC error, and lets every other message through.
//
//   config: {"deny": ["delete_file", "shell"]}      (empty config: deny nothing)
//
// It declares in `init` that it wants only `tools/call` requests going to the server,
// so every other message passes it without a call.
//
// Built by build.sh with componentize-js (stdio, random and clocks disabled: sluice
// gives plugins no WASI, so console.log goes nowhere; use `log`). sluice makes a fresh
// instance per exchange and calls `init` on it first, so module variables are that
// exchange's state. Top-level code runs at build time (the engine is snapshotted).

import { directions, methods } from 'sluice:plugin/interest@0.2.0';

const NAME = '{{name}}';
// The JSON-RPC error code of a refusal (MCP servers use -32000 to -32099).
const DENIED_CODE = -32001n; // an s64 in the WIT: a BigInt

// Set by init.
let denied = new Set();

// The tool names to deny; throws a string with the reason.
function parseConfig(text) {
  if (text.trim() === '') return new Set();
  let config;
  try {
    config = JSON.parse(text);
  } catch (e) {
    throw `invalid config JSON: ${e && e.message ? e.message : e}`;
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw 'the config must be a JSON object like {"deny": ["tool"]}';
  }
  for (const key of Object.keys(config)) {
    if (key !== 'deny') throw `unknown config key ${JSON.stringify(key)}; expected "deny"`;
  }
  const deny = config.deny ?? [];
  if (!Array.isArray(deny) || !deny.every((t) => typeof t === 'string')) {
    throw '"deny" must be an array of tool names';
  }
  return new Set(deny);
}

// The exported interface `handler`. To refuse a configuration, throw a string, not an
// Error (componentize-js re-throws Error objects, which traps instead of returning err).
export const handler = {
  init(config) {
    try {
      denied = parseConfig(config);
    } catch (reason) {
      throw `${NAME}: ${reason}`;
    }
    // Only requests going to the server, and only tools/call.
    directions(true, false);
    methods(['tools/call']);
  },

  onMessage(message) {
    if (message.kind() !== 'request') return { tag: 'pass' };
    let request;
    try {
      request = JSON.parse(message.data());
    } catch {
      return { tag: 'pass' };
    }
    const tool = request?.params?.name;
    if (typeof tool === 'string' && denied.has(tool)) {
      return {
        tag: 'respond',
        val: {
          tag: 'err',
          val: { code: DENIED_CODE, message: `tool ${tool} is denied by ${NAME}`, data: undefined },
        },
      };
    }
    return { tag: 'pass' };
  },
};
