"""`run.py users | set-roles | disable | enable | sessions`: user administration from a
shell, on the database the servers use while they run.

Each command is one storage call per change, like the HTTP routes: the revocations it
makes are recorded in storage, so every running server refuses the revoked sessions'
access tokens within `tokens.revocation_poll` (their refresh tokens at once). Exit codes:
0 done, 1 refused (no such user or session, the last admin), 2 bad usage (argparse)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence

from storage import LastAdmin, RevokeReason, SessionInfo, Storage, User, UserUpdate

from . import clock
from .events import log_event
from .roles import ROLE_NAMES
from .service import requested_roles

MAX_CELL = 80  # a long User-Agent is cut in the table
LAST_ADMIN = "The last admin cannot be removed"


class Refused(Exception):
    """A command that cannot be done as asked: exit code 1 with this message."""


Command = Callable[[Storage, argparse.Namespace], Awaitable[None]]


def add_commands(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    """The account commands, added to run.py's sub-commands."""
    users = commands.add_parser(
        "users", parents=[common], help="list users (oldest first)"
    )
    users.add_argument("--search", metavar="Q", help="part of the username or email")
    users.add_argument(
        "--limit", metavar="N", type=_positive, help="show at most N users"
    )
    roles = commands.add_parser(
        "set-roles",
        parents=[common],
        help="set a user's roles (taking one away ends its sessions)",
    )
    roles.add_argument("user", metavar="USER", help="username, email or id")
    roles.add_argument("roles", metavar="ROLE", nargs="+", choices=ROLE_NAMES)
    for name, what in (
        ("disable", "refuse a user's sign-ins and end its sessions"),
        ("enable", "let a disabled user sign in again"),
    ):
        command = commands.add_parser(name, parents=[common], help=what)
        command.add_argument("user", metavar="USER", help="username, email or id")
    sessions = commands.add_parser(
        "sessions", parents=[common], help="list or revoke a user's live sessions"
    )
    sessions.add_argument("user", metavar="USER", help="username, email or id")
    revoke = sessions.add_mutually_exclusive_group()
    revoke.add_argument("--revoke", metavar="SESSION_ID", help="end this session")
    revoke.add_argument(
        "--revoke-all", action="store_true", help="end every session of the user"
    )


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer: {text!r}")
    return int(text)


async def run(command: str, storage: Storage, args: argparse.Namespace) -> int:
    """Run an account command on an opened storage; its exit code."""
    try:
        await COMMANDS[command](storage, args)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


# the commands


async def list_users(storage: Storage, args: argparse.Namespace) -> None:
    limit = args.limit
    users: list[User] = []
    after: tuple[int, str] | None = None
    more = False
    while limit is None or len(users) < limit:
        wanted = 500 if limit is None else limit - len(users) + 1
        page = await storage.list_users(wanted, after, args.search or None)
        users.extend(page)
        if len(page) < wanted:
            break
        after = (page[-1].created_at, page[-1].id)
    if limit is not None and len(users) > limit:
        users, more = users[:limit], True
    if not users:
        print("No users match." if args.search else "No users.")
        return
    rows = [
        [
            u.id,
            u.username,
            u.email,
            ",".join(u.roles),
            "yes" if u.disabled else "no",
            clock.iso_utc(u.created_at),
        ]
        for u in users
    ]
    print(_table(["ID", "USERNAME", "EMAIL", "ROLES", "DISABLED", "CREATED"], rows))
    if more:
        print(f"Showing the first {_plural(limit, 'user')}; there are more.")
    else:
        print(f"{_plural(len(users), 'user')}.")


async def set_roles(storage: Storage, args: argparse.Namespace) -> None:
    user = await _user(storage, args.user)
    update = await _update(storage, user, roles=requested_roles(args.roles))
    print(
        f"{user.username} now has the roles {', '.join(update.user.roles)}"
        f" (was {', '.join(user.roles)}); {_ended(update)}."
    )


async def disable(storage: Storage, args: argparse.Namespace) -> None:
    user = await _user(storage, args.user)
    update = await _update(storage, user, disabled=True)
    print(f"Disabled {user.username}; {_ended(update)}.")


async def enable(storage: Storage, args: argparse.Namespace) -> None:
    user = await _user(storage, args.user)
    await _update(storage, user, disabled=False)
    print(f"Enabled {user.username}: it can sign in again.")


async def sessions(storage: Storage, args: argparse.Namespace) -> None:
    user = await _user(storage, args.user)
    reason = RevokeReason.SESSION_REVOKED
    if args.revoke is not None:
        if not await storage.revoke_user_session(
            user.id, args.revoke, reason, clock.epoch()
        ):
            raise Refused(f"{user.username} has no live session {args.revoke!r}")
        _log(reason.value, user, revoked_sessions=1, revoked_session=args.revoke)
        print(f"Revoked session {args.revoke} of {user.username}.")
        return
    if args.revoke_all:
        revoked = await storage.revoke_other_sessions(
            user.id, None, reason, clock.epoch()
        )
        if revoked:
            _log(reason.value, user, revoked_sessions=len(revoked))
        print(f"Revoked {_plural(len(revoked), 'session')} of {user.username}.")
        return
    live = await storage.list_sessions(user.id, clock.epoch())
    if not live:
        print(f"{user.username} has no live sessions.")
        return
    print(
        _table(
            ["ID", "CREATED", "LAST USED", "EXPIRES", "IP", "USER AGENT"],
            [_session_row(s) for s in live],
        )
    )
    print(f"{_plural(len(live), 'live session')}.")


COMMANDS: dict[str, Command] = {
    "users": list_users,
    "set-roles": set_roles,
    "disable": disable,
    "enable": enable,
    "sessions": sessions,
}


# helpers


async def _user(storage: Storage, who: str) -> User:
    """The user named by id, username or email: usernames cannot hold `@`, so only an
    id that is also someone's username can be ambiguous, and then nothing is done."""
    found: dict[str, User] = {}
    candidates = [
        await storage.get_user(who),
        await storage.find_user(username=who),
        await storage.find_user(email=who) if "@" in who else None,
    ]
    for user in candidates:
        if user is not None:
            found[user.id] = user
    if len(found) > 1:
        raise Refused(f"{who!r} names more than one user; give the id")
    if not found:
        raise Refused(f"no user {who!r} (give a username, an email or an id)")
    return next(iter(found.values()))


async def _update(
    storage: Storage,
    user: User,
    *,
    roles: tuple[str, ...] | None = None,
    disabled: bool | None = None,
) -> UserUpdate:
    """One storage call: the change and the revocations it calls for."""
    try:
        update = await storage.update_user(
            user.id, roles=roles, disabled=disabled, now=clock.epoch()
        )
    except LastAdmin:
        raise Refused(
            f"{LAST_ADMIN}: {user.username} is the only enabled admin."
        ) from None
    if update is None:
        raise Refused(f"no user {user.username!r} (deleted meanwhile)")
    changed = update.user
    _log("user_updated", changed, roles=list(changed.roles), disabled=changed.disabled)
    if update.revoked:
        reason = (
            RevokeReason.USER_DISABLED
            if changed.disabled
            else RevokeReason.ROLE_REMOVED
        )
        _log(reason.value, changed, revoked_sessions=len(update.revoked))
    return update


def _ended(update: UserUpdate) -> str:
    if update.revoked:
        return f"revoked {_plural(len(update.revoked), 'session')}"
    return "no session revoked"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _log(event: str, user: User, **fields: object) -> None:
    log_event(event, level=logging.WARNING, user_id=user.id, by="cli", **fields)


def _session_row(session: SessionInfo) -> list[str]:
    return [
        session.id,
        clock.iso_utc(session.created_at),
        clock.iso_utc(session.last_used_at),
        clock.iso_utc(session.expires_at),
        session.ip or "-",
        session.user_agent or "-",
    ]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns; cells made safe for a terminal (a User-Agent is whatever a
    client sent: no escape sequences reach the operator's screen) and cut to a width."""
    cells = [[_cell(text) for text in row] for row in rows]
    widths = [
        max(len(header), *(len(row[i]) for row in cells))
        for i, header in enumerate(headers)
    ]
    lines = [list(headers), *cells]
    return "\n".join(
        "  ".join(
            text.ljust(width) for text, width in zip(line, widths, strict=True)
        ).rstrip()
        for line in lines
    )


def _cell(text: str) -> str:
    safe = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text
    )
    return safe if len(safe) <= MAX_CELL else safe[: MAX_CELL - 1] + "…"
