"""Entry point of ``python -m harness``."""

from .cli import main

main()
