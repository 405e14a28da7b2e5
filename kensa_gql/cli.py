"""``kensa-gql``: the operator's command line. Scripts rely on these exact forms."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn, TypeVar

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.adapters.db.migrate import upgrade
from kensa_gql.domain.errors import Conflict, KensaError
from kensa_gql.domain.ledger import MAX_CREDITS, PackageType
from kensa_gql.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


class CliError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (scripts grep stderr), not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _credits(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_CREDITS:  # GraphQL Int is 32-bit: no balance may grow past what it can render
        raise argparse.ArgumentTypeError(f"at most {MAX_CREDITS} credits: {text}")
    return value


def _limit(text: str) -> int | None:
    if text == "default":
        return None
    value = _positive_int(text)
    if value > 1_000_000:
        raise argparse.ArgumentTypeError(f"at most 1000000 per minute: {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kensa-gql", description="GraphQL gateway for AI video generation")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve REST, GraphQL and media (with the task runner)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="do not run the task runner in this process")

    sub.add_parser("worker", help="run only the task runner")

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the migrations")

    users = sub.add_parser("users", help="manage users")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    create = users_sub.add_parser("create", help="create a user; prints the API key last")
    create.add_argument("email")
    create.add_argument("--credits", type=_credits, default=0)
    ensure = users_sub.add_parser("ensure-demo", help="create the demo user (or a new key for it); prints the key")
    ensure.add_argument("--email", default="demo@kensa.local")
    ensure.add_argument("--credits", type=_credits, default=100)
    set_limits = users_sub.add_parser(
        "set-limits", help="set a user's own rate limits per minute ('default': the gateway's); prints them")
    set_limits.add_argument("email")
    set_limits.add_argument("--generate-per-minute", type=_limit, default=argparse.SUPPRESS, metavar="N|default",
                            help="generates per minute (KENSA_RATE_LIMIT_GENERATE_PER_MINUTE when 'default')")
    set_limits.add_argument("--requests-per-minute", type=_limit, default=argparse.SUPPRESS, metavar="N|default",
                            help="other calls per minute (KENSA_RATE_LIMIT_REQUESTS_PER_MINUTE when 'default')")

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_create = keys_sub.add_parser("create", help="issue a new key; prints it last")
    keys_create.add_argument("email")
    keys_revoke = keys_sub.add_parser("revoke", help="revoke a key by its prefix")
    keys_revoke.add_argument("prefix")

    credits = sub.add_parser("credits", help="manage credits")
    credits_sub = credits.add_subparsers(dest="credits_command", required=True)
    grant = credits_sub.add_parser("grant", help="grant a package of credits")
    grant.add_argument("email")
    grant.add_argument("amount", type=_credits)
    grant.add_argument("--expires-in-days", type=_positive_float, default=None)
    grant.add_argument("--type", choices=[t.value for t in PackageType], default=PackageType.GIFT.value)

    sub.add_parser("export-schema", help="print the GraphQL schema (SDL)")
    return parser


def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def main() -> T:
        if settings.is_sqlite:
            await asyncio.to_thread(upgrade, settings.database_url)
        db = Database(create_engine(settings.database_url, lock_timeout=settings.db_lock_timeout_seconds),
                      lock_timeout=settings.db_lock_timeout_seconds)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


def _run(args: argparse.Namespace, settings: Settings) -> None:
    from kensa_gql.services import accounts

    if args.command == "serve":
        from kensa_gql.server import serve

        serve(settings, host=args.host, port=args.port, run_worker=not args.no_worker)
    elif args.command == "worker":
        from kensa_gql.server import run_worker

        run_worker(settings)
    elif args.command == "db":
        upgrade(settings.database_url)
        print("database is up to date")
    elif args.command == "users" and args.users_command == "create":
        principal, issued = _with_db(settings, lambda db: accounts.create_user(args.email, credits=args.credits,
                                                                               db=db))
        print(f"created user {principal.email} (id {principal.user_id}) with {args.credits} credits")
        print(f"key prefix: {issued.prefix} (use it to revoke the key)")
        print(issued.key)
    elif args.command == "users" and args.users_command == "ensure-demo":
        async def ensure(db: Database) -> tuple[bool, str]:
            # Only a hash of a key is stored, so an existing demo user gets a fresh key each time.
            try:
                _, issued = await accounts.create_user(args.email, credits=args.credits, db=db)
                return True, issued.key
            except Conflict:
                return False, (await accounts.create_key(args.email, db=db)).key

        created, key = _with_db(settings, ensure)
        what = f"created demo user {args.email} with {args.credits} credits" if created else \
            f"demo user {args.email} exists; issued a new API key"
        print(f"{what}. API key:")
        print(key)
    elif args.command == "users" and args.users_command == "set-limits":
        changes = {name: getattr(args, name) for name in accounts.LIMIT_NAMES if hasattr(args, name)}
        limits = _with_db(settings, lambda db: accounts.set_limits(args.email, changes, db=db))
        shown = ", ".join(f"{name.replace('_', '-')} {'default' if value is None else value}"
                          for name, value in limits.items())
        print(f"rate limits of {args.email}: {shown}")
    elif args.command == "keys" and args.keys_command == "create":
        issued = _with_db(settings, lambda db: accounts.create_key(args.email, db=db))
        print(f"key prefix: {issued.prefix}")
        print(issued.key)
    elif args.command == "keys" and args.keys_command == "revoke":
        _with_db(settings, lambda db: accounts.revoke_key(args.prefix, db=db))
        print(f"revoked key {args.prefix}")
    elif args.command == "credits" and args.credits_command == "grant":
        balance = _with_db(settings, lambda db: accounts.grant_credits(
            args.email, args.amount, kind=PackageType(args.type), expires_in_days=args.expires_in_days, db=db))
        print(f"granted {args.amount} credits to {args.email}; available {balance.available}, "
              f"frozen {balance.frozen}, used {balance.used}, total {balance.total}")
    elif args.command == "export-schema":
        from kensa_gql.api.graphql.schema import export_schema

        sys.stdout.write(export_schema())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        _run(args, settings)
    except SettingsError as exc:
        print(f"kensa-gql: {exc}", file=sys.stderr)
        return 2
    except KensaError as exc:
        print(f"kensa-gql: {exc.message}", file=sys.stderr)
        return 1
    except CliError as exc:
        print(f"kensa-gql: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
