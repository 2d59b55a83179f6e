"""`reference`: the reference filter in Python (componentize-py, world `plugin` of
`sluice:plugin@0.2.0`).

It implements the behaviour written in plugins/README.md ("The reference filter"); the
Rust version, plugins/rust/reference/src/lib.rs, is normative, and
tests/cases/languages.rs checks that every language gives the same answers.

Config: {"redact": [..], "drop_methods": [..], "drop_events": [..]}, all optional.
Order: drop by event type, drop by JSON-RPC method (a byte rule, no JSON parser),
then redact substrings with "[REDACTED]".

Strings cross the component boundary as Python `str` (valid Unicode). Because UTF-8 is
self-synchronising, comparing and searching code points gives exactly the same results
as the contract's comparisons on UTF-8 bytes.

The message is a host resource, borrowed for the call: `message.data()` and
`message.sse_event()` copy what they return into the guest, once each. `modify` carries
only the new data; the host keeps the SSE id, event type and retry.

State lives in module globals: sluice makes a fresh instance per exchange (and calls
`init` on it first), so they are that exchange's state. Module top-level code runs at
build time (componentize-py snapshots the initialised interpreter), not once per
instance.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types
from wit_world.imports.log import Level, log

MARKER = "[REDACTED]"
LOG_MESSAGE = "reference: redacted data in this stream"
KEYS = ("redact", "drop_methods", "drop_events")
JSON_WS = " \t\n\r"
METHOD_KEY = '"method"'

# Set by init; read by on_message.
_redact: list = []
_drop_methods: frozenset = frozenset()
_drop_events: frozenset = frozenset()
# Whether this exchange has already logged a redaction (cleared by init).
_logged = False


def _parse_config(text: str) -> dict:
    """The config as {key: [str, ...]}; raises ValueError with the reason."""
    if text.strip(JSON_WS) == "":
        return {}
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"invalid config JSON: {e}") from None
    if not isinstance(config, dict):
        raise ValueError("the config must be a JSON object")
    for key, value in config.items():
        if key not in KEYS:
            raise ValueError(f"unknown key {key!r}; expected one of {', '.join(KEYS)}")
        if not isinstance(value, list):
            raise ValueError(f"{key} must be an array of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"{key}[{i}] is not a string")
            try:
                # json.loads accepts a lone surrogate escape ("\ud800"); it is not
                # Unicode text, so refuse it as the Rust version does.
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{key}[{i}] contains a lone surrogate escape") from None
    if any(entry == "" for entry in config.get("redact", [])):
        raise ValueError(f"redact[{config['redact'].index('')}] is the empty string")
    return config


def _event_type(message: types.Message) -> str:
    """Step 1: the event type, "message" when absent or empty."""
    return message.sse_event() or "message"


def _method_matches(data: str) -> bool:
    """Step 2, the method rule: the value of every "method" key in object-looking data,
    read up to the next double quote."""
    if not _drop_methods:
        return False
    trimmed = data.strip(JSON_WS)
    if not trimmed or trimmed[0] != "{" or trimmed[-1] != "}":
        return False
    n = len(data)
    at = data.find(METHOD_KEY)
    while at != -1:
        i = at + len(METHOD_KEY)
        while i < n and data[i] in JSON_WS:
            i += 1
        if i < n and data[i] == ":":
            i += 1
            while i < n and data[i] in JSON_WS:
                i += 1
            if i < n and data[i] == '"':
                end = data.find('"', i + 1)
                if end != -1 and data[i + 1:end] in _drop_methods:
                    return True
        at = data.find(METHOD_KEY, at + 1)
    return False


def _redacted(data: str):
    """Step 3: the new data, or None when no entry occurs."""
    text = data
    changed = False
    for entry in _redact:
        if entry in text:
            text = text.replace(entry, MARKER)
            changed = True
    return text if changed else None


class Handler(exports.Handler):
    def init(self, config: str) -> None:
        global _redact, _drop_methods, _drop_events, _logged
        try:
            parsed = _parse_config(config)
        except ValueError as e:
            raise Err(f"reference: {e}")
        _redact = list(parsed.get("redact", []))
        _drop_methods = frozenset(parsed.get("drop_methods", []))
        _drop_events = frozenset(parsed.get("drop_events", []))
        _logged = False

    def on_message(self, message: types.Message) -> types.Verdict:
        global _logged
        if _event_type(message) in _drop_events:
            return types.Verdict_Drop()
        data = message.data()
        if _method_matches(data):
            return types.Verdict_Drop()
        data = _redacted(data)
        if data is None:
            return types.Verdict_Pass()
        if not _logged:
            _logged = True
            log(Level.INFO, LOG_MESSAGE)
        return types.Verdict_Modify(data)
