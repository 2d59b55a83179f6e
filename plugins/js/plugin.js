// `reference`: the reference filter in JavaScript (componentize-js, world `plugin` of
// sluice:plugin@0.2.0).
//
// It implements the behaviour written in plugins/README.md ("The reference filter"); the
// Rust version, plugins/rust/reference/src/lib.rs, is normative, and
// tests/cases/languages.rs checks that every language gives the same answers.
//
// Config: {"redact": [..], "drop_methods": [..], "drop_events": [..]}, all optional.
// Order: drop by event type, drop by JSON-RPC method (a byte rule, no JSON parser),
// then redact substrings with "[REDACTED]".
//
// Strings cross the component boundary as JS strings (UTF-16, always well-formed here).
// Searching and comparing well-formed UTF-16 gives exactly the same results as the
// contract's comparisons on UTF-8 bytes.
//
// The message is a host resource, borrowed for the call: `message.data()` and
// `message.sseEvent()` copy what they return into the guest, once each. `modify`
// carries only the new data; the host keeps the SSE id, event type and retry.
//
// State lives in module variables: sluice makes a fresh instance per exchange (and calls
// `init` on it first), so they are that exchange's state. Top-level code runs at build
// time (the engine is snapshotted), not once per instance.

import { log } from 'sluice:plugin/log@0.2.0';

// componentize-js 0.23.0 decodes every string the host hands over (arguments, and
// what `message.data()` returns) with a default TextDecoder, which strips a leading
// U+FEFF (byte order mark): data or an event type that starts with one would reach this
// code without it, and a `modify` would lose it. The bindings share this global's TextDecoder, so make its UTF-8 decoders
// keep the BOM. This has to run before the first call, which top-level code does.
{
  const decode = TextDecoder.prototype.decode;
  const keepBom = new TextDecoder('utf-8', { ignoreBOM: true });
  TextDecoder.prototype.decode = function (input, options) {
    return this.encoding === 'utf-8' && !this.ignoreBOM && !this.fatal
      ? decode.call(keepBom, input, options)
      : decode.call(this, input, options);
  };
}

const MARKER = '[REDACTED]';
const LOG_MESSAGE = 'reference: redacted data in this stream';
const KEYS = ['redact', 'drop_methods', 'drop_events'];
const METHOD_KEY = '"method"';

// Set by init; read by onMessage.
let redact = [];
let dropMethods = new Set();
let dropEvents = new Set();
// Whether this exchange has already logged a redaction (cleared by init).
let logged = false;

function isWs(c) {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r';
}

// A lone surrogate (JSON.parse accepts "\ud800") is not Unicode text.
function isWellFormed(s) {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (d < 0xdc00 || d > 0xdfff) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return false;
    }
  }
  return true;
}

// The config as {key: [string, ...]}; throws a string with the reason.
function parseConfig(text) {
  let blank = true;
  for (const c of text) {
    if (!isWs(c)) { blank = false; break; }
  }
  if (blank) return {};
  let config;
  try {
    config = JSON.parse(text);
  } catch (e) {
    throw `invalid config JSON: ${e && e.message ? e.message : e}`;
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw 'the config must be a JSON object';
  }
  for (const key of Object.keys(config)) {
    if (!KEYS.includes(key)) throw `unknown key ${JSON.stringify(key)}; expected one of ${KEYS.join(', ')}`;
    const value = config[key];
    if (!Array.isArray(value)) throw `${key} must be an array of strings`;
    value.forEach((item, i) => {
      if (typeof item !== 'string') throw `${key}[${i}] is not a string`;
      if (!isWellFormed(item)) throw `${key}[${i}] contains a lone surrogate escape`;
    });
  }
  const empty = (config.redact || []).indexOf('');
  if (empty !== -1) throw `redact[${empty}] is the empty string`;
  return config;
}

// Step 2, the method rule: the value of every "method" key in object-looking data,
// read up to the next double quote.
function methodMatches(data) {
  if (dropMethods.size === 0) return false;
  let first = 0;
  let last = data.length - 1;
  while (first <= last && isWs(data[first])) first++;
  while (last >= first && isWs(data[last])) last--;
  if (first > last || data[first] !== '{' || data[last] !== '}') return false;
  const n = data.length;
  for (let at = data.indexOf(METHOD_KEY); at !== -1; at = data.indexOf(METHOD_KEY, at + 1)) {
    let i = at + METHOD_KEY.length;
    while (i < n && isWs(data[i])) i++;
    if (data[i] !== ':') continue;
    i++;
    while (i < n && isWs(data[i])) i++;
    if (data[i] !== '"') continue;
    const end = data.indexOf('"', i + 1);
    if (end !== -1 && dropMethods.has(data.slice(i + 1, end))) return true;
  }
  return false;
}

// Step 3: the new data, or null when no entry occurs. split/join, not replaceAll, so
// that `$` in the marker could never be read as a replacement pattern.
function redacted(data) {
  let text = data;
  let changed = false;
  for (const entry of redact) {
    if (text.includes(entry)) {
      text = text.split(entry).join(MARKER);
      changed = true;
    }
  }
  return changed ? text : null;
}

// The exported interface `handler`. An error is returned to the host as the thrown
// value: throw a string, not an Error (componentize-js re-throws Error objects, which
// traps instead of returning err).
export const handler = {
  init(config) {
    let parsed;
    try {
      parsed = parseConfig(config);
    } catch (reason) {
      throw `reference: ${reason}`;
    }
    redact = parsed.redact || [];
    dropMethods = new Set(parsed.drop_methods || []);
    dropEvents = new Set(parsed.drop_events || []);
    logged = false;
  },

  onMessage(message) {
    const type = message.sseEvent() || 'message';
    if (dropEvents.has(type)) return { tag: 'drop' };
    const text = message.data();
    if (methodMatches(text)) return { tag: 'drop' };
    const data = redacted(text);
    if (data === null) return { tag: 'pass' };
    if (!logged) {
      logged = true;
      log('info', LOG_MESSAGE);
    }
    return { tag: 'modify', val: data };
  },
};
