"""An MCP client (the official Python SDK) that exercises databot's MCP server and prints
what it saw as one JSON object on stdout. The Rust test `tests/tests/mcp.rs` runs it and
asserts on that JSON; this script asserts nothing itself.

Usage: client.py '<json settings>' where settings has
  transport: "stdio" | "http"
  command, args, cwd        (stdio: how to start `databot mcp`)
  url, headers              (http: the gateway's /mcp and the auth header)
  plugins_dir, hot_plugin   (a component copied into the watched folder, then removed)
"""

import json
import os
import shutil
import sys
import traceback

import anyio
from mcp import ClientSession

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
NOTIFY_TIMEOUT = 30
# Status codes of every HTTP response the client got (http transport).
HTTP_STATUSES = []


def method_of(message):
    for obj in (message, getattr(message, "root", None)):
        method = getattr(obj, "method", None)
        if isinstance(method, str):
            return method
    return type(message).__name__


def tool_result(result):
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    return {
        "is_error": bool(result.is_error),
        "text": "\n".join(texts),
        "structured": result.structured_content,
    }


async def attempt(out, key, step):
    """Run one step; record its value or the error it raised (the run goes on)."""
    try:
        out[key] = await step()
    except Exception as error:  # noqa: BLE001 - every failure is data for the Rust test
        out[key] = {"exception": type(error).__name__, "message": str(error)}


class Notifications:
    def __init__(self):
        self.seen = []
        self.changed = anyio.Event()

    async def __call__(self, message):
        self.seen.append(method_of(message))
        if method_of(message) == "notifications/tools/list_changed":
            self.changed.set()

    async def wait(self):
        """True when a tools/list_changed arrived in time (and re-arm)."""
        with anyio.move_on_after(NOTIFY_TIMEOUT):
            await self.changed.wait()
        arrived = self.changed.is_set()
        self.changed = anyio.Event()
        return arrived


async def exercise(session, notes, settings):
    out = {}
    init = await session.initialize()
    out["server"] = init.server_info.name
    out["protocol_version"] = init.protocol_version
    caps = init.capabilities
    out["tools_list_changed"] = bool(caps.tools and caps.tools.list_changed)
    out["resources"] = caps.resources is not None

    async def tools():
        listed = await session.list_tools()
        return {t.name: {"description": t.description, "input_schema": t.input_schema} for t in listed.tools}

    async def call(name, arguments, meta=None):
        return tool_result(await session.call_tool(name, arguments, meta=meta))

    async def read(uri):
        result = await session.read_resource(uri)
        content = result.contents[0]
        return {"uri": str(content.uri), "mime_type": content.mime_type, "json": json.loads(content.text)}

    async def resources():
        listed = await session.list_resources()
        return {
            str(r.uri): {"name": r.name, "description": r.description, "mime_type": r.mime_type}
            for r in listed.resources
        }

    await attempt(out, "tools", tools)
    await attempt(out, "echo", lambda: call("echo", {"text": "hi from mcp"}, {"traceparent": TRACEPARENT}))
    await attempt(out, "missing_argument", lambda: call("echo", {}))
    await attempt(out, "wrong_type", lambda: call("echo", {"text": 42}))
    await attempt(out, "unknown_tool", lambda: call("no_such_tool", {}))
    await attempt(out, "echo_after_errors", lambda: call("echo", {"text": "still here"}))
    await attempt(out, "resources_list", resources)
    await attempt(out, "health", lambda: read("databot://health"))
    await attempt(out, "connector", lambda: read("connector://echo_connector"))
    await attempt(out, "unknown_connector", lambda: read("connector://nope"))
    await attempt(out, "unknown_uri", lambda: read("file:///etc/passwd"))

    plugins_dir = settings.get("plugins_dir")
    hot = settings.get("hot_plugin")
    if plugins_dir and hot:
        target = os.path.join(plugins_dir, os.path.basename(hot))
        # Copy under another name, then rename: the watcher never sees half a file.
        shutil.copyfile(hot, target + ".part")
        os.replace(target + ".part", target)
        out["list_changed_after_load"] = await notes.wait()
        await attempt(out, "tools_after_load", tools)
        await attempt(out, "trap", lambda: call("trap", {}))
        await attempt(out, "panic", lambda: call("panic", {}))
        await attempt(out, "echo_after_trap", lambda: call("echo", {"text": "survived"}))
        os.remove(target)
        out["list_changed_after_remove"] = await notes.wait()
        await attempt(out, "tools_after_remove", tools)
    out["notifications"] = notes.seen
    return out


async def run(settings):
    notes = Notifications()
    if settings["transport"] == "stdio":
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(
            command=settings["command"], args=settings["args"], cwd=settings.get("cwd"), env=settings.get("env")
        )
        with open(settings.get("errlog", os.devnull), "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write, message_handler=notes) as session:
                    return await exercise(session, notes, settings)
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    client = create_mcp_http_client(headers=settings.get("headers") or {})

    async def record_status(response):
        HTTP_STATUSES.append(response.status_code)

    client.event_hooks["response"].append(record_status)
    async with client:
        async with streamable_http_client(settings["url"], http_client=client) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write, message_handler=notes) as session:
                return await exercise(session, notes, settings)


def leaves(error):
    """The innermost exceptions of an exception group (or the exception itself)."""
    inner = getattr(error, "exceptions", None)
    if not inner:
        return [error]
    return [leaf for e in inner for leaf in leaves(e)]


def describe(error):
    parts = [f"{type(error).__name__}: {error}"]
    for field in ("code", "data"):
        value = getattr(error, field, None)
        if value is not None:
            parts.append(f"{field}={value}")
    return " ".join(parts)


def main():
    settings = json.loads(sys.argv[1])
    try:
        out = anyio.run(run, settings)
    except BaseException as error:  # noqa: BLE001 - reported to the Rust test
        out = {
            "fatal": "; ".join(describe(leaf) for leaf in leaves(error)),
            "traceback": traceback.format_exc(),
        }
    out["http_statuses"] = HTTP_STATUSES
    print(json.dumps(out))


if __name__ == "__main__":
    main()
