"""Entry point of ``python -m latentsync``."""

from .cli import main

if __name__ == "__main__":
    main()
