"""`cookbook-python`: the recipes of the MCP cookbook (docs/writing-plugins.md#cookbook)
in Python, one component (componentize-py, world `plugin` of `sluice:plugin@0.2.0`).

The config names the recipe, the other keys are the recipe's own:

    {"recipe": "refuse-tool", "tools": ["delete_file"], "message": "optional text"}
    {"recipe": "hide-tools", "tools": ["get_secret"]}
    {"recipe": "edit-result", "find": "sk-live-", "replace": "sk-****-", "tools": [...]}
    {"recipe": "redact-arguments", "arguments": ["password"], "marker": "[redacted]"}
    {"recipe": "audit"}

Each recipe does what its Rust twin in plugins/rust/cookbook-<recipe>/ does, and the
tests (tests/cases/cookbook.rs) hold both to the same answers. One component, not five:
a Python component carries CPython (about 18 MB, 10-20 s to build, as long again for
sluice to compile once), so five would cost five times that for a few lines each.

sluice makes a fresh instance per exchange and calls `init` on it first, so module
globals are that exchange's memory. Module top-level code runs at build time.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import context, interest, types
from wit_world.imports.log import Level, log

PASS = types.Verdict_Pass()


def dumps(value) -> str:
    """The JSON text of `value`, for a `modify`.

    Key order: a dict keeps the order its keys were inserted in, and `json.loads` inserts
    them in the order of the text, so an edited message keeps the server's order.
    `separators=(",", ":")`: compact, as servers send it. The default (`", "`, `": "`)
    is valid too (sluice forwards the text as it is, and needs only one JSON object
    with distinct member names), but adds a space per member. `ensure_ascii` stays on:
    non-ASCII goes out as `\\u` escapes, which every JSON parser reads as the same text,
    and a lone surrogate a server escaped (`"\\ud800"`) stays an escape instead of
    making a string that cannot leave the component.
    """
    return json.dumps(value, separators=(",", ":"))


# --- per exchange (set by init, and as messages go by) -------------------------------

_recipe = None  # the recipe's function (RECIPES)
_config: dict = {}
# The requests this instance saw going to the server, by JSON-RPC id (its JSON text):
# (method, tool name or None). An answer carries only the id; the proxy knows its
# method when the client's body was one request, not in a batch.
_requests: dict = {}


def _remember(message: types.Message) -> None:
    if message.kind() != types.Kind.REQUEST or message.direction() != types.Direction.TO_SERVER:
        return
    method = message.method()
    tool = tool_call(message)[0] if method == "tools/call" else None
    if len(_requests) < 256:  # a batch of a few, bounded against a hostile one
        _requests[message.rpc_id()] = (method, tool)


def method_of(message: types.Message):
    """The method of a message, for an answer the method of its request."""
    method = message.method()
    if method is None and message.direction() == types.Direction.TO_CLIENT:
        method = _requests.get(message.rpc_id(), (None, None))[0]
    return method


def tool_call(message: types.Message):
    """(tool name, the parsed request) of a `tools/call` request, else (None, None)."""
    if message.kind() != types.Kind.REQUEST or message.method() != "tools/call":
        return None, None
    request = json.loads(message.data())
    params = request.get("params")
    name = params.get("name") if isinstance(params, dict) else None
    return (name, request) if isinstance(name, str) else (None, None)


def tool_of_result(message: types.Message):
    """The tool a `tools/call` result answers (when this instance saw the request)."""
    if message.kind() != types.Kind.RESPONSE or message.direction() != types.Direction.TO_CLIENT:
        return None
    return _requests.get(message.rpc_id(), (None, None))[1]


def each_string(value, edit):
    """`value` with `edit` applied to every string in it (not to object keys)."""
    if isinstance(value, str):
        return edit(value)
    if isinstance(value, list):
        return [each_string(item, edit) for item in value]
    if isinstance(value, dict):
        return {key: each_string(item, edit) for key, item in value.items()}
    return value


# --- the recipes ------------------------------------------------------------------------


def refuse_tool(message: types.Message) -> types.Verdict:
    """Refuse a tool by name with a custom error."""
    name, _ = tool_call(message)
    if name in _config["tools"]:
        text = _config.get("message") or f"tool {name} is not allowed here"
        return types.Verdict_Respond(Err(types.RpcError(code=-32001, message=text, data=None)))
    return PASS


def hide_tools(message: types.Message) -> types.Verdict:
    """Hide tools from `tools/list` results."""
    if message.kind() != types.Kind.RESPONSE or method_of(message) != "tools/list":
        return PASS
    answer = json.loads(message.data())
    result = answer.get("result")
    tools = result.get("tools") if isinstance(result, dict) else None
    if not isinstance(tools, list):
        return PASS
    kept = [tool for tool in tools if not (isinstance(tool, dict) and tool.get("name") in _config["tools"])]
    if len(kept) == len(tools):
        return PASS
    result["tools"] = kept  # assigning keeps the key's place
    return types.Verdict_Modify(dumps(answer))


def edit_result(message: types.Message) -> types.Verdict:
    """Edit a tool result: its text items and its `structuredContent`."""
    if message.kind() != types.Kind.RESPONSE or method_of(message) != "tools/call":
        return PASS
    tools = _config.get("tools")
    if tools is not None and tool_of_result(message) not in tools:
        return PASS
    answer = json.loads(message.data())
    result = answer.get("result")
    if not isinstance(result, dict):
        return PASS

    find, replace = _config["find"], _config["replace"]
    changed = False

    def edit(text: str) -> str:
        nonlocal changed
        if find not in text:
            return text
        changed = True
        return text.replace(find, replace)

    for item in result.get("content") or []:
        if isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
            item["text"] = edit(item["text"])
    if "structuredContent" in result:
        result["structuredContent"] = each_string(result["structuredContent"], edit)
    return types.Verdict_Modify(dumps(answer)) if changed else PASS


def redact_arguments(message: types.Message) -> types.Verdict:
    """Redact arguments of a `tools/call` going to the server."""
    name, request = tool_call(message)
    arguments = request["params"].get("arguments") if name is not None else None
    if not isinstance(arguments, dict):
        return PASS
    listed = [key for key in _config["arguments"] if key in arguments]
    if not listed:
        return PASS
    for key in listed:
        arguments[key] = _config.get("marker", "[redacted]")  # assigning keeps the key's place
    return types.Verdict_Modify(dumps(request))


def audit(message: types.Message) -> types.Verdict:
    """Log one line per `tools/call` going to the server (argument names, not values)."""
    name, request = tool_call(message)
    if name is None:
        return PASS
    caller = context.caller()
    arguments = request["params"].get("arguments")
    names = list(arguments) if isinstance(arguments, dict) else []
    log(
        Level.INFO,
        f"audit: tools/call tool={name} caller={(caller and caller.subject) or '-'} "
        f"client={context.client_address() or '-'} session={context.session_id() or '-'} "
        f"arguments={dumps(names)}",
    )
    return PASS


# recipe: (function, interest (to-server, to-client), required keys, optional keys)
RECIPES = {
    "refuse-tool": (refuse_tool, (True, False), {"tools"}, {"message"}),
    "hide-tools": (hide_tools, (True, True), {"tools"}, set()),
    "edit-result": (edit_result, (True, True), {"find", "replace"}, {"tools"}),
    "redact-arguments": (redact_arguments, (True, False), {"arguments"}, {"marker"}),
    "audit": (audit, (True, False), set(), set()),
}
METHODS = {"hide-tools": "tools/list"}  # the others: tools/call
LISTS = {"tools", "arguments"}  # the keys holding lists of names; the others are strings


def _parse(text: str) -> dict:
    try:
        config = json.loads(text)
    except ValueError as e:
        raise Err(f"cookbook-python: config: {e}") from None
    if not isinstance(config, dict) or config.get("recipe") not in RECIPES:
        raise Err(f"cookbook-python: config: recipe must be one of {', '.join(RECIPES)}")
    _, _, required, optional = RECIPES[config["recipe"]]
    keys = set(config) - {"recipe"}
    if required - keys:
        raise Err(f"cookbook-python: config: {config['recipe']} needs {', '.join(sorted(required - keys))}")
    if keys - required - optional:
        raise Err(f"cookbook-python: config: unknown key(s) {', '.join(sorted(keys - required - optional))}")
    for key in keys:
        value = config[key]
        if key in LISTS:
            ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise Err(f"cookbook-python: config: {key} must be {'a list of strings' if key in LISTS else 'a string'}")
    if config.get("find") == "":
        raise Err("cookbook-python: config: find is empty")
    return config


class Handler(exports.Handler):
    def init(self, config: str) -> None:
        global _recipe, _config, _requests
        _config = _parse(config)
        function, (to_server, to_client), _, _ = RECIPES[_config["recipe"]]
        _recipe, _requests = function, {}
        interest.directions(to_server, to_client)
        interest.methods([METHODS.get(_config["recipe"], "tools/call")])

    def on_message(self, message: types.Message) -> types.Verdict:
        _remember(message)
        return _recipe(message)
