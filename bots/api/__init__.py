"""The Assistants-compatible HTTP API: code written for OpenAI's retired Assistants API runs against Threadline."""
