"""A real Python MCP server (SDK `mcp==2.3.0`) for sluice's integration tests.

    .venv/bin/python server.py --port P --mode sse|json|stateless|eventstore|legacy
    .venv/bin/python server.py --mode stdio

Listens on 127.0.0.1:P (P=0 picks a free port) and prints exactly one line to stdout,
`READY <url>`, once the socket accepts connections; everything else goes to stderr.
<url> is the Streamable HTTP endpoint (`/mcp`) or, in `legacy` mode, the SSE stream (`/sse`).
In `stdio` mode it speaks MCP on stdin/stdout (no READY line) and ends when stdin closes.

The tools mirror the Rust test server in tests/common/mcp.rs so tests can swap peers.
"""

from __future__ import annotations

import argparse
import logging
import socket
import ssl
import sys

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import JSONRPCMessage
from pydantic import BaseModel

SECRET_TEXT = "the key is sk-live-abc123"
SECRET_KEY = "sk-live-abc123"
MODES = ("sse", "json", "stateless", "eventstore", "legacy", "stdio")

# structured_output=False but for get_account: like the rmcp server, answer with one
# text content item and no outputSchema/structuredContent, so both peers look alike on
# the wire.
mcp = MCPServer("sluice-test-upstream-py", version="0.1.0")


@mcp.tool(description="Return the given text unchanged", structured_output=False)
def echo(text: str) -> str:
    return text


@mcp.tool(description="Return a secret", structured_output=False)
def get_secret() -> str:
    return SECRET_TEXT


class Account(BaseModel):
    """What `get_account` answers; the fields keep this order on the wire."""

    user: str
    api_key: str
    plan: str


# The one structured tool (as get_account of the Rust server, whose rmcp sorts the keys):
# the SDK answers with `structuredContent` and the same JSON as a text item.
@mcp.tool(description="Return the account, as structured content and as text", structured_output=True)
def get_account() -> Account:
    return Account(user="alice", api_key=SECRET_KEY, plan="pro")


@mcp.tool(
    description="Send n progress notifications (progress 1..=n, total n), then finish",
    structured_output=False,
)
async def count(n: int, ctx: Context, delay_ms: int = 0) -> str:
    for step in range(1, n + 1):
        if step > 1 and delay_ms > 0:
            await anyio.sleep(delay_ms / 1000)
        # A no-op unless the request carried `_meta.progressToken`.
        await ctx.report_progress(step, n)
    return f"counted {n}"


@mcp.tool(description="Send notifications/tools/list_changed on the standalone stream", structured_output=False)
async def announce(ctx: Context) -> str:
    # No related_request_id: the SDK routes it to the connection's standalone channel,
    # i.e. the GET stream in Streamable HTTP (or the only stream in legacy SSE). It is
    # dropped where there is none (stateless mode, 2026-07-28 clients).
    await ctx.session.send_tool_list_changed()
    return "announced"


class MemoryEventStore(EventStore):
    """Keeps every event in memory so any stream can be resumed with Last-Event-ID.

    Event ids are decimal strings from one counter ("1", "2", ...), unique per process.
    The SDK names a POST's stream after the JSON-RPC request id and the GET stream
    "_GET_stream", without the session: two sessions that both use request id 3 share
    stream "3", so a resume could replay the other session's events too. One client per
    eventstore server avoids that.
    """

    def __init__(self) -> None:
        self._events: list[tuple[EventId, StreamId, JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        # message is None for the "priming" event the SDK opens each POST stream with.
        event_id = str(len(self._events) + 1)
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        if not last_event_id.isdigit() or not 1 <= int(last_event_id) <= len(self._events):
            return None  # unknown id: the SDK then answers with an empty stream
        position = int(last_event_id)
        stream_id = self._events[position - 1][1]
        for event_id, event_stream, message in self._events[position:]:
            if event_stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def transport_security(allow_any_host: bool) -> TransportSecuritySettings:
    """DNS-rebinding protection limited to loopback names, on any port.

    The SDK's Host check is an allow-list; `name:*` matches that name with any port. So a
    proxy on another 127.0.0.1 port may forward `Host: 127.0.0.1:<our port>` (or leave its
    own port in). Port-less forms are listed too, since `name:*` requires a port.
    """
    if allow_any_host:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    names = ["127.0.0.1", "localhost", "[::1]"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[form for name in names for form in (name, f"{name}:*")],
        allowed_origins=[form for name in names for form in (f"http://{name}", f"http://{name}:*")],
    )


def build_app(mode: str, security: TransportSecuritySettings, retry_ms: int | None):
    if mode == "legacy":
        # 2024-11-05 HTTP+SSE: GET /sse streams, the endpoint event points at /messages/.
        return mcp.sse_app(sse_path="/sse", message_path="/messages/", transport_security=security), "/sse"
    app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=mode == "json",
        stateless_http=mode == "stateless",
        event_store=MemoryEventStore() if mode == "eventstore" else None,
        # The SDK only emits `retry:` (on priming events) when this is set.
        retry_interval=retry_ms if mode == "eventstore" else None,
        transport_security=security,
    )
    return app, "/mcp"


async def serve(args: argparse.Namespace) -> None:
    app, path = build_app(args.mode, transport_security(args.allow_any_host), args.retry_ms)
    if args.mount:
        # Served under a path prefix, as behind a gateway: the legacy transport then
        # announces `<prefix>/messages/...` in its endpoint event (from root_path).
        from starlette.applications import Starlette
        from starlette.routing import Mount

        inner = app
        app = Starlette(routes=[Mount(args.mount, app=inner)], lifespan=lambda _app: inner.router.lifespan_context(inner))
        path = args.mount + path
    # Bind the socket ourselves so --port 0 works and the READY line names the real port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    # log_config=None leaves logging to us (all on stderr), keeping stdout for READY.
    # --ssl-cert/--ssl-key: HTTPS (an upstream behind TLS); --ssl-client-ca: and a client
    # certificate signed by that CA is required (mutual TLS).
    tls = {}
    if args.ssl_cert:
        tls = {"ssl_certfile": args.ssl_cert, "ssl_keyfile": args.ssl_key}
        if args.ssl_client_ca:
            tls |= {"ssl_ca_certs": args.ssl_client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    config = uvicorn.Config(app, log_config=None, access_log=args.verbose, timeout_graceful_shutdown=1, **tls)
    server = uvicorn.Server(config)
    stopped = anyio.Event()

    async def run() -> None:
        try:
            await server.serve([sock])
        finally:
            stopped.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        # `started` turns true once the app's lifespan ran and the listener accepts.
        while not server.started and not stopped.is_set():
            await anyio.sleep(0.01)
        if server.started:
            scheme = "https" if args.ssl_cert else "http"
            print(f"READY {scheme}://127.0.0.1:{port}{path}", flush=True)
    if not server.started:
        sys.exit("server failed to start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--retry-ms", type=int, default=1000, help="SSE retry: value in eventstore mode")
    parser.add_argument("--allow-any-host", action="store_true", help="turn the SDK's Host/Origin checks off")
    parser.add_argument("--mount", default="", help="serve under this path prefix, e.g. /api")
    parser.add_argument("--verbose", action="store_true", help="log requests and SDK info to stderr")
    parser.add_argument("--ssl-cert", help="PEM certificate: serve HTTPS (needs --ssl-key)")
    parser.add_argument("--ssl-key", help="PEM private key of --ssl-cert")
    parser.add_argument("--ssl-client-ca", help="PEM CA: require a client certificate it signed")
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        force=True,  # MCPServer() already called basicConfig at import
    )
    if args.mode == "stdio":
        mcp.run("stdio")
        return
    try:
        anyio.run(serve, args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
