"""User-facing errors.

Every problem a user can fix (bad file, bad option, mismatching inputs) is raised as a
:class:`CropseqError`. The CLI turns it into one line on stderr and exit code 2, without
a traceback; the Python API lets it propagate so callers can catch it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from os import PathLike

__all__ = ["CropseqError", "DataWarning", "Interrupted", "reject_unknown_keys"]


class CropseqError(Exception):
    """An error the user can fix, rendered as one line naming the file and the problem.

    Args:
        message: What is wrong, phrased for the user (no trailing period needed).
        path: The file or folder the problem is about, if any.
    """

    def __init__(self, message: str, path: str | PathLike[str] | None = None) -> None:
        self.message = " ".join(str(message).split())  # always one line
        self.path = None if path is None else str(path)
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message



def reject_unknown_keys(
    keys: Iterable[object], known: Collection[str], where: str | PathLike[str] | None, *, key: str = "unknown key {!r}"
) -> None:
    """Reject a configuration mapping with a key outside ``known``, naming the first one and the known ones.

    Args:
        keys: The mapping's keys.
        known: The keys allowed.
        where: The file the mapping comes from (named in the error).
        key: How the message names the bad key (a ``str.format`` pattern of it, e.g. ``"grid: unknown key {!r}"``).

    Raises:
        CropseqError: ``<key> (known: a, b, c)`` for the first unknown key in sorted order.
    """
    unknown = sorted(set(map(str, keys)) - set(known))
    if unknown:
        raise CropseqError(f"{key.format(unknown[0])} (known: {', '.join(sorted(known))})", where)

class Interrupted(KeyboardInterrupt):
    """SIGTERM (or another termination signal) received: unwinds like Ctrl-C.

    Being a :class:`KeyboardInterrupt`, it runs every ``finally`` block and context
    manager exit on the way out (temporary files are removed), and ``except Exception``
    handlers do not swallow it.

    Args:
        signum: The signal number (exit code ``128 + signum``).
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"signal {signum}")


class DataWarning(UserWarning):
    """Input data that is probably wrong but still usable.

    For example a fill value without a nodata tag, or values on another scale than the
    model's training data. The CLI shows it as one line ``cropseq: warning: <message>``;
    the Python API emits it through :mod:`warnings`.
    """
