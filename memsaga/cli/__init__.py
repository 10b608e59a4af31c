"""The ``memsaga`` command line: :data:`app` and the console-script entry point :func:`main`."""

from memsaga.cli.app import app, main

__all__ = ["app", "main"]
