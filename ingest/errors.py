"""Errors named by whose fault they are (the pipeline's retry policy depends on it).

`RejectedInput`: the sender's fault; the input is marked rejected with the reason, never
retried. Anything else raised while processing is ours: retried, then parked as failed.
"""


class RejectedInput(Exception):
    """The input cannot be accepted as it is; `reason` is shown to operators."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StoreUnavailable(Exception):
    """The inbound store could not commit the raw input; the front door answers "try later"."""
