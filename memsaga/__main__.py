"""``python -m memsaga``: the same CLI as the ``memsaga`` console script."""

from memsaga.cli import main

main()
