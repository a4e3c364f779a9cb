"""The terminal channel: one channel, read from standard input, answered on standard output."""
