"""`python -m studio.cli`: the same as the `kontext-studio` command."""

from studio.cli import entry

entry()
