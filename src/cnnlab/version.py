"""cnnlab's version: its one source (pyproject.toml reads it too). Kept out of the package's
`__init__`, the facade above every layer, so that any layer may import it."""

__version__ = "0.1.0"
