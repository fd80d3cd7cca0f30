"""`python -m engine` is the `engine` command."""

from engine.cli import entry, main

__all__ = ["main"]

if __name__ == "__main__":
    entry()
