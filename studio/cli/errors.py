"""Exit codes a script can rely on, and `CommandError`, the one error the command itself raises.

Imports nothing of ours: every module of the `cli` package may import it.
"""

from __future__ import annotations

# Exit codes a script can rely on (documented in the README).
EXIT_OK = 0
EXIT_FAILED = 1  # the service refused or the edit failed
EXIT_USAGE = 2  # bad arguments or input (argparse uses 2 as well)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl+C


class CommandError(Exception):
    """Input or arguments the command will not run with; `str()` is one plain sentence."""

    def __init__(self, message: str, *, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
