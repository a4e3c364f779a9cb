"""What the chat adapters tell people when the platform, not the assistant, let an answer down.

The words are the same on every platform; an adapter only adds its markup (an emoji) and posts them.
"""

from __future__ import annotations

__all__ = ["CUT_OFF_ANSWER"]

# A half-written answer a stopped process left, where the process that took the run over writes the answer
# in a message of its own below it.
CUT_OFF_ANSWER = "I was restarted while writing this answer; it follows below, in full."
