"""Threadline in Slack: a thin adapter on slack-bolt (async) between Slack events and the core."""
