"""What people are told when something besides the assistant (the platform, a tool server) let an answer down.

The words are the same on every platform; an adapter only adds its markup (an emoji) and posts them.
"""

from __future__ import annotations

__all__ = [
    "ANSWER_NOT_SHOWN",
    "APPROVAL_NOT_SHOWN",
    "CUT_OFF_AFTER_TOOL",
    "CUT_OFF_AFTER_TOOL_MANY",
    "CUT_OFF_ANSWER",
    "MCP_TOOLS_UNAVAILABLE",
]

# The platform refused to show an answer (or part of it) even after its client's retries: posted once, in
# the same conversation, as a short message of its own. The details are in the log.
ANSWER_NOT_SHOWN = (
    "I could not post my answer here in full. Please ask again; if this keeps happening, ask whoever runs "
    "this bot to check its log."
)
# A half-written answer a stopped process left, where the process that took the run over writes the answer
# in a message of its own below it.
CUT_OFF_ANSWER = "I was restarted while writing this answer; it follows below, in full."
# A run a restart cut off after it had started a tool (what a tool did cannot be repeated safely, so nothing is
# run again): said once, where its answer was going (in place of what it had written of it, or in the question's
# thread), by the process that found it.
CUT_OFF_AFTER_TOOL = (
    "I was restarted while answering this, after I had started using a tool, so I did not finish. Your message "
    "is saved; please ask again."
)
# Several such runs of one conversation: said once for all of them, in the conversation.
CUT_OFF_AFTER_TOOL_MANY = (
    "I was restarted while answering {count} messages here, after I had started using a tool, so I did not "
    "finish. Your messages are saved; please ask again."
)
# The platform refused the Approve / Deny buttons of a tool call: nobody could decide it, and the run would hold
# its conversation until the approval expired. The run is stopped instead, and this is said once.
APPROVAL_NOT_SHOWN = (
    "I needed someone to approve {tool}, but could not show the Approve / Deny buttons here, so I stopped this "
    "answer. Please ask again; if this keeps happening, ask whoever runs this bot to check its log."
)
# An MCP server an assistant names is down when a run starts (core/tools/mcp.py): the run goes on without its
# tools, and the person who asked is told so, in a short message of its own (the log says why, once).
MCP_TOOLS_UNAVAILABLE = "The tools of {servers} are unavailable right now; answering without them."
