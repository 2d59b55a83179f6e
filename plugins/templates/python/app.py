"""{{name}}: a sluice plugin (world `plugin` of sluice:plugin@0.2.0), in Python.

What it does: refuses the `tools/call` of every tool named in its configuration with a
JSON-RPC error, and lets every other message through.

    config: {"deny": ["delete_file", "shell"]}      (empty config: deny nothing)

It declares in `init` that it wants only `tools/call` requests going to the server, so
every other message passes it without a call.

Built by build.sh with componentize-py (`--stub-wasi`: sluice gives plugins no WASI, so
`print()` goes nowhere; use `log`). sluice makes a fresh instance per exchange and calls
`init` on it first, so module globals are that exchange's state. Top-level code runs at
build time (componentize-py snapshots the initialised interpreter).
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import interest, types

NAME = "{{name}}"
# The JSON-RPC error code of a refusal (MCP servers use -32000 to -32099).
DENIED_CODE = -32001

# Set by init.
_denied: frozenset = frozenset()


def _parse_config(text: str) -> frozenset:
    """The tool names to deny; raises ValueError with the reason."""
    if text.strip() == "":
        return frozenset()
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ValueError(f"invalid config JSON: {e}") from None
    if not isinstance(config, dict):
        raise ValueError('the config must be a JSON object like {"deny": ["tool"]}')
    for key in config:
        if key != "deny":
            raise ValueError(f'unknown config key {key!r}; expected "deny"')
    deny = config.get("deny", [])
    if not isinstance(deny, list) or not all(isinstance(t, str) for t in deny):
        raise ValueError('"deny" must be an array of tool names')
    return frozenset(deny)


class Handler(exports.Handler):
    def init(self, config: str) -> None:
        global _denied
        try:
            _denied = _parse_config(config)
        except ValueError as e:
            raise Err(f"{NAME}: {e}")
        # Only requests going to the server, and only tools/call.
        interest.directions(True, False)
        interest.methods(["tools/call"])

    def on_message(self, message: types.Message) -> types.Verdict:
        if message.kind() != types.Kind.REQUEST:
            return types.Verdict_Pass()
        try:
            request = json.loads(message.data())
        except (ValueError, RecursionError):
            return types.Verdict_Pass()  # sluice hands over only JSON it has read itself
        params = request.get("params") if isinstance(request, dict) else None
        tool = params.get("name") if isinstance(params, dict) else None
        if isinstance(tool, str) and tool in _denied:
            return types.Verdict_Respond(Err(types.RpcError(
                code=DENIED_CODE, message=f"tool {tool} is denied by {NAME}", data=None)))
        return types.Verdict_Pass()
