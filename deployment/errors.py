"""The one error type of the model: its message is the single line an operator sees."""


class DeploymentError(Exception):
    """A problem the operator can fix; str(exc) says what is wrong and how to fix it."""
