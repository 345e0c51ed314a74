"""Command-line plumbing shared by the toolkit's entry points (nothing model-specific).

Every expected failure of a command is one line, `error: <problem>: <fix>`, and exit status 2;
argparse's own usage errors follow the same rule through `OneLineParser`.
"""
import argparse


class UsageError(Exception):
    """A wrong argument: the message names it and what to do instead."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message}: see {self.prog} --help")


def fail(message: str) -> int:
    """Print the one-line error and return the exit status for expected failures."""
    import sys

    print(f"error: {message}", file=sys.stderr)
    return 2
