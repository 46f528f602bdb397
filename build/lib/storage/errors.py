"""Errors raised by storage backends; lookups return None instead of raising."""


class StorageError(Exception):
    """Base class of every storage error."""


class UsernameTaken(StorageError):
    """Another user has this username, compared without regard to case."""


class EmailTaken(StorageError):
    """Another user has this email address, compared without regard to case."""


class SchemaTooNew(StorageError):
    """The database was written by a newer version of this server."""


class StorageUnavailable(StorageError):
    """The database cannot be reached; it may come back by itself."""
