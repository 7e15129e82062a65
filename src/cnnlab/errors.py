"""The one exception type that means "the user's input is wrong" (CLI exit status 2)."""


class CnnlabError(Exception):
    """Bad input: a clear, one-line message that says what is wrong and what to do."""
