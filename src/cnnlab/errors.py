"""The exception types: a wrong input (CLI exit status 2), and an unusable image file."""


class CnnlabError(Exception):
    """Bad input: a clear, one-line message that says what is wrong and what to do."""


class ImageReadError(ValueError):
    """This file cannot be used as an image; the message says why, in a few words. A file's
    own problem, reported beside the others' results (a bad upload never stops a batch)."""
