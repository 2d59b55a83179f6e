#!/usr/bin/env python3
"""Smoke-test the built plugins (plugins/dist/*.wasm) in wasmtime-py, without sluice.

    plugins/.venv/bin/pip install wasmtime==50.0.1     # once
    plugins/.venv/bin/python plugins/check.py

Each plugin is instantiated on a linker that has only `sluice:plugin/host` (no WASI),
like sluice does, and fed a few events. This is a quick check of the guests; the
proxy's own tests are the real contract tests.
"""

import sys
import threading
import time
from pathlib import Path

try:
    from wasmtime import Config, Engine, Store, WasmtimeError
    from wasmtime.component import Component, Linker, Record
except ImportError:
    sys.exit("error: wasmtime-py missing: plugins/.venv/bin/pip install wasmtime==50.0.1")

DIST = Path(__file__).resolve().parent / "dist"

config = Config()
config.epoch_interruption = True
engine = Engine(config)
logs = []
failures = []


def host_log(_store, level, message):
    logs.append((level, message))
    print(f"      host log [{level}] {message}")


def event(data, id=None, kind=None, retry=None):
    r = Record()
    r.id, r.event, r.data, r.retry = id, kind, data, retry
    return r


def stream_info():
    r = Record()  # wasmtime-py looks fields up by their WIT names
    for name, value in [("stream-id", 1), ("direction", "to-client"), ("session-id", None),
                        ("method", "POST"), ("path", "/mcp"), ("rpc-method", "tools/call"),
                        ("protocol-version", None)]:
        setattr(r, name, value)
    return r


class Plugin:
    def __init__(self, name):
        self.name = name
        self.component = Component.from_file(engine, str(DIST / f"{name}.wasm"))
        linker = Linker(engine)
        with linker.root() as root:
            with root.add_instance("sluice:plugin/host@0.1.0") as host:
                host.add_func("log", host_log)
        self.store = Store(engine)
        self.store.set_epoch_deadline(1)
        self.instance = linker.instantiate(self.store, self.component)

    def call(self, export, *args):
        func = self.instance.get_func(self.store, export)
        assert func is not None, f"{self.name} has no export {export}"
        result = func(self.store, *args)
        func.post_return(self.store)
        return result


def check(what, ok, detail=""):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}")
    if not ok:
        failures.append(what)


def trap_line(e):
    lines = str(e).splitlines()
    return next((l.strip() for l in lines if "wasm trap" in l or "interrupt" in l), lines[-1].strip())


def verdict_str(v):
    if v.tag == "modify":
        e = v.payload
        return f"modify(id={e.id!r}, event={e.event!r}, data={e.data!r}, retry={e.retry!r})"
    return v.tag


def main():
    missing = [n for n in ("passthrough", "redact", "dropper", "trap", "spin") if not (DIST / f"{n}.wasm").exists()]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not built: run plugins/build.sh")
    print("passthrough")
    p = Plugin("passthrough")
    v = p.call("on-event", event("hello"))
    check("passthrough passes", v.tag == "pass", verdict_str(v))

    print("redact")
    p = Plugin("redact")
    check("init accepts a config", p.call("init", '{"patterns":["sk-[a-z0-9]+"]}') is None)
    p.call("on-stream-start", stream_info())
    v = p.call("on-event", event("key sk-abc123", id="7", kind="message", retry=1500))
    check("redact modifies 'key sk-abc123'",
          v.tag == "modify" and v.payload.data == "key [REDACTED]" and v.payload.id == "7"
          and v.payload.event == "message" and v.payload.retry == 1500, verdict_str(v))
    v = p.call("on-event", event("sk-a and sk-b"))
    check("second redaction in the stream", v.tag == "modify" and v.payload.data == "[REDACTED] and [REDACTED]", verdict_str(v))
    check("logged once per stream", sum("redacted" in m for _, m in logs) == 1)
    v = p.call("on-event", event("nothing secret here"))
    check("no match passes", v.tag == "pass", verdict_str(v))
    p.call("on-stream-end")
    p.call("on-stream-start", stream_info())
    p.call("on-event", event("sk-zzz"))
    check("on-stream-start resets the log-once flag", sum("redacted" in m for _, m in logs) == 2)
    p = Plugin("redact")
    check("custom marker", p.call("init", '{"patterns":["\\\\d{4}"],"marker":"#"}') is None)
    v = p.call("on-event", event("pin 1234, card 5678"))
    check("custom marker applied", v.tag == "modify" and v.payload.data == "pin #, card #", verdict_str(v))
    for bad in ["", "not json", '{"patterns":[]}', '{"patterns":["("]}', '{"patterns":["a*"]}', '{"pattern":["x"]}']:
        err = Plugin("redact").call("init", bad)
        check(f"init refuses {bad!r}", isinstance(err, str) and err.startswith("redact:"), repr(err))

    print("dropper")
    p = Plugin("dropper")
    check("init", p.call("init", '{"methods":["notifications/progress"],"events":["ping"]}') is None)
    v = p.call("on-event", event('{"jsonrpc":"2.0","method":"notifications/progress","params":{}}'))
    check("drops notifications/progress", v.tag == "drop", verdict_str(v))
    v = p.call("on-event", event('{"jsonrpc":"2.0","method":"notifications/message","params":{}}'))
    check("passes another method", v.tag == "pass", verdict_str(v))
    v = p.call("on-event", event('{"jsonrpc":"2.0","id":1,"result":{"method":"notifications/progress"}}'))
    check("passes a response", v.tag == "pass", verdict_str(v))
    v = p.call("on-event", event("", kind="ping"))
    check("drops event type ping", v.tag == "drop", verdict_str(v))
    v = p.call("on-event", event("not json {"))
    check("passes non-JSON data", v.tag == "pass", verdict_str(v))
    p = Plugin("dropper")
    check("only methods given", p.call("init", '{"methods":["notifications/progress"]}') is None)
    v = p.call("on-event", event('{"jsonrpc":"2.0","method":"notifications/progress","params":{}}'))
    check("drops notifications/progress", v.tag == "drop", verdict_str(v))
    err = Plugin("dropper").call("init", '{"methods":"notifications/progress"}')
    check("init refuses a non-list", isinstance(err, str) and err.startswith("dropper:"), repr(err))

    print("trap")
    p = Plugin("trap")
    try:
        p.call("on-event", event("x"))
        check("trap traps", False, "returned")
    except WasmtimeError as e:
        check("trap traps", "unreachable" in str(e), trap_line(e))

    print("spin")
    p = Plugin("spin")
    timer = threading.Timer(0.2, engine.increment_epoch)
    start = time.monotonic()
    timer.start()
    try:
        p.call("on-event", event("x"))
        check("spin is interrupted", False, "returned")
    except WasmtimeError as e:
        check("spin is interrupted by the epoch deadline", "interrupt" in str(e),
              f"after {time.monotonic() - start:.2f} s: {trap_line(e)}")

    print(f"{len(failures)} failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
