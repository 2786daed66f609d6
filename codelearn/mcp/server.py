"""The MCP server over stdio or streamable HTTP: the only module that imports the MCP SDK.

Built on the SDK's `MCPServer`, mcp 2.x's name for v1's FastMCP (in mcp 2.x
`mcp.server.fastmcp` only raises an ImportError that points there). It derives
each tool's input schema from a typed signature, runs the stdio and streamable
HTTP transports, and diverts stray writes to fd 1 (llama.cpp's) off the stdio
wire; the low-level `Server` would mean hand-writing schemas and dispatch.
Each tool returns its own `CallToolResult`, so an expected error reaches the
client as exactly the one line the CLI prints, not the SDK's "Error executing
tool ..." wrapping.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Callable, Literal

from codelearn import __version__
from codelearn.errors import CodelearnError, MissingExtraError
from codelearn.mcp.tools import MAX_K, CodeTools
from codelearn.project import Project

try:
    import anyio
    import anyio.to_thread
    from mcp.server.mcpserver import MCPServer
    from mcp.types import CallToolResult, TextContent, ToolAnnotations
    from pydantic import Field
except ImportError as exc:  # pragma: no cover - depends on the install
    from importlib import metadata

    try:
        _found = metadata.version("mcp")
    except metadata.PackageNotFoundError:
        _found = ""
    if _found.split(".")[0] in ("0", "1"):
        raise CodelearnError(f"mcp {_found} is installed; `codelearn mcp` needs mcp 2.3 or later "
                             "(FastMCP became MCPServer in 2.0).",
                             "Upgrade it: pip install 'codelearn[mcp]'") from exc
    raise MissingExtraError("mcp", "mcp") from exc

LOOPBACK_NAMES = ("localhost",)
_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ANNOTATIONS = {
    "search_code": _READ_ONLY, "find_symbol": _READ_ONLY, "read_code": _READ_ONLY,
    "ask": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                           open_world_hint=False),  # it keeps the turn in the repo's local history
    "index_status": _READ_ONLY,
    "reindex": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                               open_world_hint=False),
    "feedback": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                open_world_hint=False),
}


class Endpoints:
    """The tools as the SDK sees them: typed and described; errors become tool errors."""

    def __init__(self, tools: CodeTools) -> None:
        self.tools = tools
        # search_code, find_symbol and read_code share the index's SQLite connection,
        # which only the thread that opened it may use: they all run on this one thread.
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codelearn-index")

    def close(self) -> None:
        """Close the index view on its own thread, then stop that thread."""
        self._reader.submit(self.tools.close).result()
        self._reader.shutdown()

    async def search_code(
        self,
        query: Annotated[str, Field(description="An identifier (`raw_decode`, `HTTPConnection.send`) "
                                                "or a question in words (`where do we retry uploads`).")],
        k: Annotated[int, Field(ge=1, le=MAX_K, description="How many results.")] = 10,
        mode: Annotated[Literal["hybrid", "keyword", "vector"],
                        Field(description="hybrid (default) fuses keyword and embedding search; keyword "
                                          "is FTS5 only, vector embeddings only.")] = "hybrid",
    ) -> CallToolResult:
        """Search the indexed code of this repository and its configured libraries: SQLite FTS5
        keywords (symbol names weighted up, camelCase and snake_case split) fused with embedding
        similarity. Works for identifiers and for questions. Returns a JSON list, best first, of
        {path, source, start_line, end_line, symbol, kind, language, score, keyword_rank,
        vector_rank, context, text}: the schema of `codelearn search --json`. Lines are 1-based and
        inclusive; `context` holds the enclosing signatures. Pass `path` and `source` to read_code
        to see more of a file."""
        return await self._call(self.tools.search_code, query, k, mode, reader=True)

    async def find_symbol(
        self,
        name: Annotated[str, Field(description="A qualified name (`Searcher.search`) or a bare one "
                                               "(`search`); `::` works as a separator too.")],
    ) -> CallToolResult:
        """Find where a function, class or method is defined. Returns a JSON list of at most 20
        definitions, exact matches first, then qualified tails (`search` finds `Searcher.search`),
        case-insensitive and partial matches (`match` says which), each {symbol, kind, path, source,
        start_line, end_line, language, context, signature}; `signature` is the definition's first
        line. An empty list: no such definition is indexed (try search_code)."""
        return await self._call(self.tools.find_symbol, name, reader=True)

    async def read_code(
        self,
        path: Annotated[str, Field(description="File path relative to the source root, as search "
                                               "hits give it (`app/billing.py`).")],
        start_line: Annotated[int, Field(ge=1, description="First line, 1-based.")] = 1,
        end_line: Annotated[int | None, Field(ge=1, description="Last line, inclusive "
                                                                "(default: the end, at most 400 lines).")] = None,
        source: Annotated[str, Field(description="`repo`, or a library's `lib:NAME` label "
                                                 "(the `source` of a search hit).")] = "repo",
    ) -> CallToolResult:
        """Read lines of a file that the index holds, with secret values replaced by
        `«redacted:KIND»` exactly as in the index. At most 400 lines per call: when cut,
        `truncated` is true and `note` names the next start_line. Refused: paths outside the
        indexed sources (`../`, absolute paths elsewhere, links that leave them), secret files
        (.env, keys, credentials) and files the index skipped. Returns two text blocks: JSON
        {path, source, start_line, end_line, total_lines, truncated, redactions, note?}, then the
        lines themselves."""
        return await self._call(self.tools.read_code, path, start_line, end_line, source,
                                reader=True, render=_file_blocks)

    async def ask(
        self,
        question: Annotated[str, Field(description="A question about this repository's code.")],
        deep: Annotated[bool, Field(description="Read more code in batches and answer from notes: "
                                                "for answers spread over many files; several times slower.")] = False,
    ) -> CallToolResult:
        """Ask the repository's local answer model (the one `codelearn train` adapted to this repo
        if any, else the configured model): it retrieves excerpts, answers in Markdown and checks
        the answer's `path:line` citations against what it was shown. Slow on a CPU (seconds to a
        minute): use search_code, find_symbol and read_code for lookups. Returns JSON {question,
        answer, citations (verified only: path, start_line, end_line, text), unverified_citations,
        sources (the excerpts shown; `used` when the answer cites or names them), model {name,
        kind, backend, reason}, seconds, deep (null, or its cost: batches, read_tokens, note_tokens,
        notes, unread, seconds), turn (its id in the repo's history, for feedback)}."""
        return await self._call(self.tools.ask, question, deep)

    async def feedback(
        self,
        turn: Annotated[str, Field(description="The `turn` an ask returned, or `last`.")],
        verdict: Annotated[str, Field(description="`good` or `bad` (a correction implies bad).")] = "",
        answer: Annotated[str, Field(description="The correct answer, when you know it.")] = "",
        source: Annotated[str, Field(description="Where the answer really is: `path:line` or "
                                                 "`path:start-end`.")] = "",
    ) -> CallToolResult:
        """Report that an earlier ask answer was wrong (or right): a verdict, the correct answer
        and/or the correct location, kept with the turn in the repo's local history (what
        `codelearn history` lists). Returns the turn as stored (JSON)."""
        return await self._call(self.tools.feedback, turn, verdict, answer, source)

    async def index_status(self) -> CallToolResult:
        """What is indexed: files and chunks per source and language, the last run (when, what it
        did), what was skipped and why, which files had secrets redacted (never what), whether a
        run is going now. JSON, as `codelearn status --json`."""
        return await self._call(self.tools.index_status)

    async def reindex(self) -> CallToolResult:
        """Bring the index up to date with the files on disk (incremental: only changed files are
        read again). Returns the run's JSON report {ran, files_seen, files_changed, files_removed,
        files_skipped, chunks_written, vectors_embedded, seconds, ...}; when another run is going,
        `ran` is false and that run indexes once more when it finishes. The other tools see the new
        index on their next call."""
        return await self._call(self.tools.reindex)

    async def _call(self, fn: Callable[..., Any], *args: Any, reader: bool = False,
                    render: Callable[[Any], list[TextContent]] | None = None) -> CallToolResult:
        """Run a tool off the event loop; an expected error becomes a tool error, as the CLI says it."""
        try:
            if reader:
                data = await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)
            else:
                data = await anyio.to_thread.run_sync(fn, *args)
        except CodelearnError as exc:
            return CallToolResult(content=[_text(str(exc))], is_error=True)
        return CallToolResult(content=(render or _json_blocks)(data))


def _text(text: str) -> TextContent:
    return TextContent(type="text", text=text)


def _json_blocks(data: Any) -> list[TextContent]:
    return [_text(json.dumps(data, ensure_ascii=False))]


def _file_blocks(data: dict) -> list[TextContent]:
    """The metadata as JSON, then the lines as plain text (no escaping for the model to read)."""
    meta = {k: v for k, v in data.items() if k != "text"}
    return [_text(json.dumps(meta, ensure_ascii=False)), _text(data["text"])]


def build_server(project: Project) -> tuple[MCPServer, Endpoints]:
    """The MCP server for one project, and its endpoints (close them when done)."""
    endpoints = Endpoints(CodeTools(project))
    server = MCPServer(
        "codelearn", version=__version__, log_level="WARNING",
        instructions=(f"Code search, definitions, file reading and answers for the repository at "
                      f"{project.root}, from codelearn's index. Start with search_code or find_symbol, "
                      "then read_code; ask runs a local model and is slow."))
    for name, hints in ANNOTATIONS.items():
        fn = getattr(endpoints, name)
        server.add_tool(fn, description=" ".join(fn.__doc__.split()), annotations=hints,
                        structured_output=False)
    return server, endpoints


def http_address(value: str, token: str | None) -> tuple[str, int]:
    """HOST:PORT (a bare PORT binds 127.0.0.1); refused off loopback without a token."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]") if sep else ""
    if not port.isdigit() or int(port) > 65535:
        raise CodelearnError(f"Bad --http address {value!r}.",
                             "Use HOST:PORT (127.0.0.1:8765), or just a port to bind 127.0.0.1.")
    host = host or "127.0.0.1"
    if not token and not is_loopback(host):
        raise CodelearnError(
            f"Refusing to serve MCP on {host} without a token: anyone who reaches it could read the code.",
            "Pass --token SECRET (or set CODELEARN_MCP_TOKEN) and have clients send "
            "`Authorization: Bearer SECRET`, or bind to 127.0.0.1.")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether host only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def serve(project: Project, address: tuple[str, int] | None = None, token: str | None = None) -> None:
    """Serve until the client hangs up (stdio) or the process is stopped (HTTP at `address`)."""
    server, endpoints = build_server(project)
    try:
        if address is None:
            anyio.run(server.run_stdio_async)
        else:
            anyio.run(_serve_http, server, address, token)
    finally:
        endpoints.close()


async def _serve_http(server: MCPServer, address: tuple[str, int], token: str | None) -> None:
    import uvicorn

    host, port = address
    app: Any = server.streamable_http_app(host=host)  # DNS-rebinding checks on loopback hosts
    if token:
        app = BearerToken(app, token)
    await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).serve()


class BearerToken:
    """ASGI middleware: HTTP requests without `Authorization: Bearer <token>` get a 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            await _unauthorized(send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: dict) -> bool:
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        return hmac.compare_digest(given, self.expected)  # constant time: no guessing by timing


async def _unauthorized(send: Any) -> None:
    body = json.dumps({"error": "Missing or wrong bearer token. Send `Authorization: Bearer <token>` "
                                "with the token the server was started with."}).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer realm="codelearn"')]})
    await send({"type": "http.response.body", "body": body})
