"""Errors users see: each names the value at fault, so a failing run says what and where."""

from __future__ import annotations


class OcsgeError(Exception):
    """Base of every error the project raises on purpose; the CLI prints it and exits with code 2."""


class UnknownDepartementError(OcsgeError, ValueError):
    def __init__(self, code: object) -> None:
        super().__init__(
            f"unknown département code {code!r}: expected 01…95, 2A, 2B, 971…976 "
            "(or S01…S99 for a synthetic territory)"
        )
        self.code = code


class UnknownCodeError(OcsgeError, ValueError):
    def __init__(self, kind: str, code: object) -> None:
        super().__init__(f"unknown {kind} code {code!r}")
        self.kind = kind
        self.code = code


class UnknownMillesimeError(OcsgeError, ValueError):
    pass


class UnknownProductError(OcsgeError, ValueError):
    pass


class StorageError(OcsgeError):
    """A storage root or key that cannot be read or written."""


class InvalidStorageKey(StorageError, ValueError):
    """A key or prefix that is not a valid storage key (``..``, absolute, empty): the caller's fault."""


class ArtifactNotFound(StorageError, LookupError):
    """The storage answered, and the key is not there."""


class StorageUnavailable(StorageError):
    """The storage could not be reached or refused to answer (network, permissions, throttling, I/O error):
    the key may well exist; retrying later may work."""


class MissingAttributeError(OcsgeError, KeyError):
    """A layer lacks an attribute the OCS GE schema needs (e.g. no couverture code column)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
