"""Command line: `python run.py [command]`; `--help` lists the commands. Arguments only:
the work is done in server/cli.py."""

from server.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
