"""Failures of a pull, each with the process exit code documented in ``llmsvc pull --help``."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_ACCESS_DENIED = 4
EXIT_NO_SPACE = 5
EXIT_NETWORK = 6
EXIT_VERIFY = 7
CHANGED = (
    "the object changed while it was being downloaded (its ETag or Last-Modified no longer "
    "matches); run the pull again to fetch the new version"
)


class PullError(Exception):
    """A failure the user can act on; ``str(err)`` says what to change."""

    exit_code = 1


class UsageError(PullError):
    """Bad URI, flag or source not supported."""

    exit_code = EXIT_USAGE


class NotFoundError(PullError):
    """The bucket, repository, revision, object or file does not exist."""

    exit_code = EXIT_NOT_FOUND


class AccessDeniedError(PullError):
    """The source refused the credentials (the message names which ones were tried)."""

    exit_code = EXIT_ACCESS_DENIED


class OutOfSpaceError(PullError):
    """DEST has too little free space for the files still to fetch."""

    exit_code = EXIT_NO_SPACE


class NetworkError(PullError):
    """The network kept failing after every retry."""

    exit_code = EXIT_NETWORK


class VerifyError(PullError):
    """A file does not match its size or checksum even after fetching it again."""

    exit_code = EXIT_VERIFY


class TransientError(Exception):
    """A failure worth retrying (connection reset, timeout, 5xx, 429); never leaves a pull."""
