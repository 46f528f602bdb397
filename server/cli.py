"""`python run.py [serve|create-user|purge|rotate-key|delete-user|users|set-roles|disable|
enable|sessions]`, with `--config FILE` and `--workers N` before or after the command.
The account commands are in `accounts_cli`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Sequence

from pydantic import ValidationError

from storage import (
    EmailTaken,
    Storage,
    StorageError,
    User,
    UsernameTaken,
    canonical_email,
    create_storage,
)

from . import accounts_cli, clock, signing_keys
from .bodies import first_error_message
from .events import log_event
from .passwords import PasswordHasher, WeakPassword, check_length
from .purge import purge_once
from .roles import ROLE_NAMES
from .schemas import SignupBody
from .serve import configure_logging, serve
from .settings import Settings, SettingsError, load_settings

# Between purge batches: running servers' writers poll for the SQLite lock and need a gap.
CLI_PURGE_PAUSE = 0.02


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="settings file")
    common.add_argument(
        "--workers",
        type=int,
        default=argparse.SUPPRESS,
        help="processes sharing the port (server.workers)",
    )
    # `run.py` or `jwt-auth-server`, whichever was run.
    parser = argparse.ArgumentParser(parents=[common], description="JWT auth server")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", parents=[common], help="serve HTTP (the default)")
    create = commands.add_parser("create-user", parents=[common], help="create a user")
    create.add_argument("--username", required=True)
    create.add_argument("--email", required=True)
    create.add_argument(
        "--role",
        action="append",
        choices=ROLE_NAMES,
        default=[],
        help="a role beyond user (repeatable)",
    )
    create.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the password as one line from standard input",
    )
    commands.add_parser(
        "purge", parents=[common], help="delete expired refresh tokens once"
    )
    commands.add_parser(
        "rotate-key", parents=[common], help="make a new signing key current"
    )
    delete = commands.add_parser(
        "delete-user", parents=[common], help="delete a user and revoke its sessions"
    )
    delete.add_argument("--username", required=True)
    accounts_cli.add_commands(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(getattr(args, "config", None))
        if getattr(args, "workers", None) is not None:
            settings = dataclasses.replace(
                settings,
                server=dataclasses.replace(settings.server, workers=args.workers),
            )
    except SettingsError as exc:
        _print_settings_error(exc)
        return 2
    configure_logging(settings)
    command = args.command or "serve"
    try:
        if command == "serve":
            serve(settings)
            return 0
        if command == "rotate-key":
            return _rotate_key(settings)
        if command in accounts_cli.COMMANDS:
            return asyncio.run(_accounts(command, settings, args))
        runners = {
            "create-user": _create_user,
            "purge": _purge,
            "delete-user": _delete_user,
        }
        return asyncio.run(runners[command](settings, args))
    except (SettingsError, StorageError, signing_keys.KeyRotationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _print_settings_error(exc: SettingsError) -> None:
    """One line, no traceback: what to fix is all the message says."""
    print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)


@contextlib.asynccontextmanager
async def _opened_storage(settings: Settings) -> AsyncIterator[Storage]:
    storage = create_storage(settings)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


async def _accounts(command: str, settings: Settings, args: argparse.Namespace) -> int:
    async with _opened_storage(settings) as storage:
        return await accounts_cli.run(command, storage, args)


async def _create_user(settings: Settings, args: argparse.Namespace) -> int:
    password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    try:
        body = SignupBody.model_validate(
            {"username": args.username, "email": args.email, "password": password}
        )
        check_length(password, settings.passwords)
    except ValidationError as exc:
        print(f"error: {first_error_message(exc)}", file=sys.stderr)
        return 1
    except WeakPassword as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    hasher = PasswordHasher(settings.passwords)
    try:
        password_hash = await hasher.hash_new(
            password, [body.username, body.email], "password"
        )
    except WeakPassword as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        hasher.close()
    roles = tuple(r for r in ROLE_NAMES if r == "user" or r in args.role)
    user = User(
        uuid.uuid4().hex,
        body.username,
        canonical_email(body.email),
        password_hash,
        roles,
        clock.epoch(),
    )
    try:
        async with _opened_storage(settings) as storage:
            await storage.create_user(user)
    except UsernameTaken:
        print("error: Failed! Username is already in use!", file=sys.stderr)
        return 1
    except EmailTaken:
        print("error: Failed! Email is already in use!", file=sys.stderr)
        return 1
    log_event("signup", user_id=user.id, roles=list(roles), by="cli")
    print(f"Created user {user.username} ({user.id}) with roles {', '.join(roles)}.")
    return 0


async def _purge(settings: Settings, args: argparse.Namespace) -> int:
    async with _opened_storage(settings) as storage:
        result = await purge_once(
            storage, settings.purge.batch_size, pause=CLI_PURGE_PAUSE
        )
    print(f"Purged {result.tokens} expired refresh tokens.")
    return 0


async def _delete_user(settings: Settings, args: argparse.Namespace) -> int:
    async with _opened_storage(settings) as storage:
        user = await storage.find_user(username=args.username)
        revoked = await storage.delete_user(user.id, clock.epoch()) if user else None
    if revoked is None:
        print(f"error: no user named {args.username}", file=sys.stderr)
        return 1
    log_event(
        "user_deleted",
        level=logging.WARNING,
        user_id=user.id if user else None,
        by="cli",
        revoked_sessions=len(revoked),
    )
    print(f"Deleted user {args.username}; revoked {len(revoked)} sessions.")
    return 0


def _rotate_key(settings: Settings) -> int:
    """Publish a new key. With servers running it signs once all of them have loaded
    it (two phases); with none, at once."""
    now = clock.epoch()
    ring = signing_keys.rotate(settings, now)
    pending = ring.pending
    key, starts = pending if pending else (ring.signer(now), now)
    log_event("key_rotated", level=logging.WARNING, kid=key.kid, active_from=starts)
    if pending is None:
        print(
            f"Signing key {key.kid} is now current; "
            f"{len(ring.verifying)} keys verify tokens."
        )
    else:
        print(
            f"Signing key {key.kid} is published: running servers verify it now and "
            f"sign with it from {clock.iso_utc(starts)} (in {starts - now} s); "
            f"{len(ring.verifying)} keys verify tokens."
        )
    return 0
