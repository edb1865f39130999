"""The user's tools beside the service: `check-config`, `verify` and `demo`.

They live apart from the service's own modules because each is a one-shot command with
its own output (a line, a table, a live terminal view) and exit codes, while the service
runs forever and reports through logs, /status and /metrics. Each command module exposes
one coroutine the CLI calls and returns the process's exit code.
"""
