"""Command line: serve | create-user | purge | rotate-key. Arguments only; the work is
done in server/cli.py."""

from server.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
