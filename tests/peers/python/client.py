"""A real Python MCP client (SDK `mcp==2.3.0`) for sluice's integration tests.

    .venv/bin/python client.py --url URL --transport streamable|sse
        [--tool-profile sluice|everything] [--protocol-version V] [--trace]
    .venv/bin/python client.py --transport stdio --command CMD [--env K=V ...] -- [ARG ...]

Runs one fixed scenario: initialize, tools/list, echo, get_secret, count (with progress),
announce (then waits for the server-initiated notification), close. It never crashes on a
failed step: each step's error text goes to "errors", and the LAST line of stdout is one
JSON object the Rust test asserts on. The exit code is 0 unless the arguments are bad.

--tool-profile everything adapts the calls to @modelcontextprotocol/server-everything:
echo {"message"}, trigger-long-running-operation for progress, toggle-simulated-logging
for a server-initiated notifications/message; "secret" is then null.

--protocol-version V offers V in `initialize` (the SDK's own initialize() always offers
2025-11-25). A 2026-07-28-era V has no initialize: the client sends server/discover instead
and every request then carries Mcp-Method/Mcp-Name headers and no session.

--trace prints every HTTP request and response head to stderr.

--bearer TOKEN sends `Authorization: Bearer TOKEN` on every HTTP request. --oauth-client-id ID
with --oauth-client-secret and --oauth-issuer runs the SDK's own OAuth client instead
(ClientCredentialsOAuthProvider: on a 401 it reads the server's protected-resource metadata,
the authorization server's metadata, gets a token with the client_credentials grant and the
RFC 8707 resource, and retries); --oauth-scope asks for scopes. "oauth_tokens" then counts the
tokens it was issued.

--transport stdio launches CMD with the ARGs (e.g. `sluice stdio --upstream ...`) and speaks
newline-delimited JSON-RPC on its stdin/stdout (the SDK's stdio_client, as a desktop client
does). There is no HTTP: "session_id" and "deleted" stay null, and the server's own
notifications always have a way to the client. --env adds to the SDK's default environment.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

CLIENT_INFO = types.Implementation(name="sluice-test-client-py", version="0.1.0")

# Per tool profile: the calls made for each step, and the notification `announce` should cause.
PROFILES: dict[str, dict[str, Any]] = {
    "sluice": {
        "echo": ("echo", {"text": "héllo"}),
        "secret": ("get_secret", {}),
        "count": ("count", {"n": 3}),
        "announce": ("announce", {}),
        "notification": "notifications/tools/list_changed",
    },
    "everything": {
        "echo": ("echo", {"message": "héllo"}),
        "secret": None,
        "count": ("trigger-long-running-operation", {"duration": 1, "steps": 3}),
        # Starts a per-session timer that logs at once and then every 5 s on the GET stream;
        # called a second time to stop it again before the session closes.
        "announce": ("toggle-simulated-logging", {}),
        "notification": "notifications/message",
    },
}


def error_text(exc: BaseException) -> str:
    """One line per leaf exception; anyio wraps transport failures in exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(error_text(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


def tool_text(result: types.CallToolResult) -> str:
    text = "".join(c.text for c in result.content if isinstance(c, types.TextContent))
    if result.is_error:
        raise RuntimeError(f"tool returned isError: {text}")
    return text


class Wire:
    """Watches the HTTP exchanges through httpx event hooks (the transports expose neither
    the session id nor the DELETE outcome), and optionally traces them to stderr."""

    def __init__(self, trace: bool, ca_file: str | None = None, auth: Any = None, bearer: str | None = None) -> None:
        self.trace = trace
        self.auth = auth  # an httpx auth flow (the SDK's OAuth provider), or None
        self.headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
        # https:// URLs are verified against this CA alone (trust_env=False below also
        # turns off SSL_CERT_FILE).
        self.verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self.session_id: str | None = None
        self.delete_status: int | None = None  # None: no DELETE answered
        self.delete_sent = False

    async def on_request(self, request: httpx2.Request) -> None:
        if request.method == "DELETE":
            self.delete_sent = True
        if self.trace:
            head = "".join(f"\n    {k}: {v}" for k, v in request.headers.items())
            print(f"> {request.method} {request.url}{head}", file=sys.stderr, flush=True)

    async def on_response(self, response: httpx2.Response) -> None:
        if response.request.method == "DELETE":
            self.delete_status = response.status_code
        self.session_id = response.headers.get("mcp-session-id", self.session_id)
        if self.trace:
            head = "".join(f"\n    {k}: {v}" for k, v in response.headers.items())
            print(f"< {response.status_code} {response.request.method} {response.request.url}{head}",
                  file=sys.stderr, flush=True)

    def client(self, **kwargs: Any) -> httpx2.AsyncClient:
        # trust_env=False: never route loopback test traffic through an environment proxy.
        kwargs.setdefault("timeout", httpx2.Timeout(30, read=300))
        kwargs.setdefault("verify", self.verify)
        if self.auth is not None:
            kwargs.setdefault("auth", self.auth)
        if self.headers:
            kwargs["headers"] = {**self.headers, **(kwargs.get("headers") or {})}
        return httpx2.AsyncClient(
            trust_env=False, event_hooks={"request": [self.on_request], "response": [self.on_response]}, **kwargs
        )


async def handshake(session: ClientSession, version: str | None) -> str | None:
    if version is None:
        await session.initialize()
    elif version in MODERN_PROTOCOL_VERSIONS:
        await session.discover()
    else:
        # What ClientSession.initialize() does, but with our protocolVersion on offer.
        result = await session.send_request(
            types.InitializeRequest(
                params=types.InitializeRequestParams(
                    protocol_version=version, capabilities=types.ClientCapabilities(), client_info=CLIENT_INFO
                )
            ),
            types.InitializeResult,
        )
        if result.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
            raise RuntimeError(f"server chose unsupported protocol version {result.protocol_version}")
        session.adopt(result)
        await session.send_notification(types.InitializedNotification())
    return session.protocol_version


def has_standalone_stream(args: argparse.Namespace, wire: Wire) -> bool:
    """Whether the server has a way to push the announce notification to us at all.

    Streamable HTTP without a session (a stateless server, or the 2026-07-28 era) has no
    GET stream: the SDK client does not open one and the server drops such notifications.
    Then there is nothing to wait for and "server_notification" stays null, without error.
    """
    return args.transport in ("sse", "stdio") or wire.session_id is not None


async def scenario(args: argparse.Namespace, wire: Wire, out: dict[str, Any]) -> None:
    profile = PROFILES[args.tool_profile]
    errors: list[str] = out["errors"]
    notified = anyio.Event()
    seen: list[str] = out["notifications"]
    closing = False

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            if not closing:
                errors.append(f"transport: {error_text(message)}")
            return
        seen.append(message.method)
        if message.method == profile["notification"] and not notified.is_set():
            out["server_notification"] = message.method
            notified.set()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        out["progress"].append(int(progress) if float(progress).is_integer() else progress)

    async def step(name: str, action: Any) -> Any:
        try:
            return await action()
        except Exception as exc:
            errors.append(f"{name}: {error_text(exc)}")
            return None

    async def call(key: str, **kwargs: Any) -> Any:
        call_spec = profile[key]
        if call_spec is None:
            return None  # this profile's server has no such tool
        tool, arguments = call_spec

        async def run() -> str:
            return tool_text(await session.call_tool(tool, arguments, **kwargs))

        return await step(key, run)

    def on_session_created(session_id: str) -> None:
        wire.session_id = session_id  # legacy SSE: the session_id query parameter of the endpoint

    async with AsyncExitStack() as stack:
        if args.transport == "streamable":
            http = await stack.enter_async_context(wire.client())
            transport = streamable_http_client(args.url, http_client=http)
        elif args.transport == "stdio":
            env = dict(pair.split("=", 1) for pair in args.env)
            server = StdioServerParameters(command=args.command, args=args.command_args, env=env or None)
            transport = stdio_client(server)
        else:
            transport = sse_client(args.url, httpx_client_factory=wire.client, on_session_created=on_session_created)
        read_stream, write_stream = await stack.enter_async_context(transport)
        async with ClientSession(
            read_stream,
            write_stream,
            read_timeout_seconds=args.timeout,
            message_handler=on_message,
            client_info=CLIENT_INFO,
        ) as session:
            out["protocol_version"] = await step("initialize", lambda: handshake(session, args.protocol_version))
            if out["protocol_version"] is None:
                return
            out["session_id"] = wire.session_id

            listed = await step("tools/list", session.list_tools)
            if listed is not None:
                out["tools"] = sorted(tool.name for tool in listed.tools)
            out["echo"] = await call("echo")
            out["secret"] = await call("secret")
            out["count"] = await call("count", progress_callback=on_progress)
            if await call("announce") is not None and has_standalone_stream(args, wire):
                with anyio.move_on_after(args.notify_timeout):
                    await notified.wait()
                if not notified.is_set():
                    errors.append(f"announce: no {profile['notification']} within {args.notify_timeout} s")
                if args.tool_profile == "everything":
                    await call("announce")  # toggles the simulated logging off again
            closing = True
        # Leaving the transport's context is what sends DELETE (streamable, with a session).


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ok": False,
        "transport": args.transport,
        "tool_profile": args.tool_profile,
        "protocol_version": None,
        "session_id": None,
        "tools": None,
        "echo": None,
        "secret": None,
        "count": None,
        "progress": [],
        "server_notification": None,
        "notifications": [],
        "deleted": None,
        "errors": [],
    }
    auth = None
    storage = None
    if args.oauth_client_id:
        from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider

        storage = MemoryTokens()
        auth = ClientCredentialsOAuthProvider(
            server_url=args.url,
            storage=storage,
            client_id=args.oauth_client_id,
            client_secret=args.oauth_client_secret,
            scope=args.oauth_scope,
            issuer=args.oauth_issuer,
        )
    wire = Wire(args.trace, args.ca_file, auth=auth, bearer=args.bearer)
    try:
        with anyio.fail_after(args.overall_timeout):
            await scenario(args, wire, out)
    except Exception as exc:
        out["errors"].append(f"session: {error_text(exc)}")
    if args.transport == "streamable" and (wire.delete_sent or wire.session_id):
        # Sessions are ended with DELETE; any 2xx means the server accepted it.
        out["deleted"] = wire.delete_status is not None and 200 <= wire.delete_status < 300
        out["delete_status"] = wire.delete_status
    if storage is not None:
        out["oauth_tokens"] = storage.issued
    out["ok"] = not out["errors"]
    return out


class MemoryTokens:
    """The SDK's TokenStorage, in memory; counts the tokens it was given."""

    def __init__(self) -> None:
        self.tokens = None
        self.client_info = None
        self.issued = 0

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens) -> None:
        self.tokens = tokens
        self.issued += 1

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info) -> None:
        self.client_info = client_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="the server's URL (streamable, sse)")
    parser.add_argument("--transport", choices=("streamable", "sse", "stdio"), required=True)
    parser.add_argument("--command", help="stdio: the server command to launch")
    parser.add_argument("--env", action="append", default=[], help="stdio: KEY=VALUE for the server (repeatable)")
    parser.add_argument("command_args", nargs="*", help="stdio: the command's arguments (after --)")
    parser.add_argument("--tool-profile", choices=tuple(PROFILES), default="sluice")
    parser.add_argument("--protocol-version", default=None)
    parser.add_argument("--notify-timeout", type=float, default=5.0, help="seconds to wait after announce")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per request")
    parser.add_argument("--overall-timeout", type=float, default=90.0, help="seconds for the whole run")
    parser.add_argument("--trace", action="store_true", help="print HTTP request/response heads to stderr")
    parser.add_argument("--ca-file", default=None, help="PEM CA certificates to trust for https:// URLs")
    parser.add_argument("--bearer", default=None, help="send Authorization: Bearer BEARER")
    parser.add_argument("--oauth-client-id", default=None, help="OAuth client_credentials: the client id")
    parser.add_argument("--oauth-client-secret", default=None, help="OAuth client_credentials: the secret")
    parser.add_argument("--oauth-issuer", default=None, help="OAuth: the authorization server's issuer")
    parser.add_argument("--oauth-scope", default=None, help="OAuth: scopes to ask for")
    args = parser.parse_args()
    if (args.transport == "stdio") != (args.command is not None) or (args.transport != "stdio") == (args.url is None):
        parser.error("--transport stdio takes --command; the others take --url")
    out = anyio.run(main_async, args)
    print(json.dumps(out, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
