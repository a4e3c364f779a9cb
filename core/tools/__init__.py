"""Function tools: typed Python functions whose schema comes from the signature and docstring.

A team adds its own tool by writing, in its own module::

    from core.tools import tool

    @tool
    async def open_ticket(title: str, body: str) -> str:
        \"\"\"Open a ticket in the team's tracker.

        Args:
            title: One line saying what is wrong.
            body: The details.
        \"\"\"
        ...

    @tool(needs_approval=True)   # changes the world outside the conversation: people approve first
    async def deploy(service: str) -> str: ...

and naming the module in the assistants file (``tool_modules = ["myteam.tools"]``).
"""

from agents import FunctionTool
from agents import function_tool as tool

__all__ = ["FunctionTool", "tool"]
