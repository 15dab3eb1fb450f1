"""Errors of the CRM core's use cases; callers map them (HTTP status, rejected input)."""


class CoreError(Exception):
    """A use case refused; the message says why, in words a user understands."""


class NotFound(CoreError):
    pass


class Forbidden(CoreError):
    pass


class Conflict(CoreError):
    pass


class InvalidInput(CoreError):
    pass
