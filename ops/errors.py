"""One error type for operator mistakes: its message is the one line the operator sees."""


class OpsError(Exception):
    """A problem the operator can fix; str(exc) says what is wrong and how to fix it."""
