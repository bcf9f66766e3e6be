"""User-facing errors: one clear line naming the file, line or key, and exit code 2."""

from __future__ import annotations

import functools
import sys

EXIT_USAGE = 2


class KGSearchError(Exception):
    """An error caused by the user's input (file, line, key, flag); printed without a traceback."""


def cli_entry(main):
    """Wrap a CLI main(): a KGSearchError becomes `kgsearch: error: ...` on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except KGSearchError as exc:
            print(f"kgsearch: error: {exc}", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            print("kgsearch: interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
