"""The `bench` command (and `python -m bench`): signals are routed before anything heavy is
imported, so that a Ctrl-C or SIGTERM in its first second, while torch is imported, is one
line and exit status 130 or 143 like any other (bench.stop_signals.one_line_stops)."""

from __future__ import annotations

import sys

from bench.stop_signals import one_line_stops


def main() -> int:
    with one_line_stops():
        from bench.cli import main as command

        return command()


if __name__ == "__main__":
    sys.exit(main())
