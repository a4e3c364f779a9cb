"""Tool modules a deployment would write itself; the tests name them in assistants files."""
