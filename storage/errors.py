"""Errors raised by storage backends; lookups return None instead of raising."""


class StorageError(Exception):
    """Base class of every storage error."""


class UsernameTaken(StorageError):
    """Another user has this username, compared by its canonical key."""


class EmailTaken(StorageError):
    """Another user has this email address, compared by its canonical key."""


class SchemaTooNew(StorageError):
    """The database was written by a newer version of this server."""


class LastAdmin(StorageError):
    """The change would leave no enabled user with the role admin."""

    def __init__(self, message: str = "The last admin cannot be removed.") -> None:
        super().__init__(message)


class StorageUnavailable(StorageError):
    """The database cannot be reached now (down, restarting, disk failing). Nothing was
    changed by the failed call, as far as the database tells; later calls may work
    again: backends reconnect by themselves."""
