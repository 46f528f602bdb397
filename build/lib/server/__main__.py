"""`python -m server [serve|create-user|...]`: the same commands as `python run.py`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
