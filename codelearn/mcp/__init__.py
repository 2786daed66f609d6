"""`codelearn mcp`: the index, the code and the answer model as Model Context Protocol tools.

`tools` holds the tools as plain library code over a `Project` (no SDK needed to
use or test them); `server` is the only module that imports the MCP SDK.
"""
