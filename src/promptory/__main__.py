"""``python -m promptory``: the same as the ``promptory`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
