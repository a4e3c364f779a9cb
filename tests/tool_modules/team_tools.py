"""A team's own tools, living outside core: named in config, never edited into core."""

from __future__ import annotations

import asyncio

from core.tools import tool

# Shared with the tests that read it: the order in which tool calls started and ended.
TIMELINE: list[str] = []


@tool
async def lookup_ticket(ticket_id: int) -> str:
    """Look up a ticket in the team's tracker.

    Args:
        ticket_id: The ticket number.
    """
    return f"Ticket {ticket_id}: printer on floor 3 is out of toner (open)"


@tool
async def slow_step(label: str) -> str:
    """Do a slow step and report when it started and ended.

    Args:
        label: A name for the step.
    """
    TIMELINE.append(f"start {label}")
    await asyncio.sleep(0.3)
    TIMELINE.append(f"end {label}")
    return f"{label} done"


@tool
async def broken_tool(reason: str) -> str:
    """A tool that always fails.

    Args:
        reason: Why.
    """
    raise RuntimeError(f"tracker is down: {reason}")


@tool(timeout=0.2)
async def stuck_tool() -> str:
    """A tool that never finishes."""
    await asyncio.sleep(30)
    return "unreachable"


@tool(needs_approval=True)
async def deploy(service: str) -> str:
    """Deploy a service to production.

    Args:
        service: The service name.
    """
    TIMELINE.append(f"deployed {service}")
    return f"{service} deployed"
