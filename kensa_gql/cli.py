"""``kensa-gql``: the operator's command line. Scripts rely on these exact forms."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.adapters.db.migrate import current_revision, head_revision, revisions_between, upgrade
from kensa_gql.domain.errors import Conflict, KensaError
from kensa_gql.domain.ledger import MAX_CREDITS, PackageType
from kensa_gql.services.accounts import PREFIX_LENGTH
from kensa_gql.settings import Settings, SettingsError, load_settings

T = TypeVar("T")

MAX_DAYS = 36_500  # a hundred years: past that a date overflows before it means anything


class CliError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (scripts grep stderr), not argparse's usage block; defaults in --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text[:40]!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _credits(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_CREDITS:  # GraphQL Int is 32-bit: no balance may grow past what it can render
        raise argparse.ArgumentTypeError(f"at most {MAX_CREDITS} credits: {text[:40]}")
    return value


def _limit(text: str) -> int | None:
    if text == "default":
        return None
    value = _positive_int(text)
    if value > 1_000_000:
        raise argparse.ArgumentTypeError(f"at most 1000000 per minute: {text}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if not 1 <= value <= 65535:  # 0 would serve on a random port nobody is told about
        raise argparse.ArgumentTypeError(f"must be a TCP port from 1 to 65535: {text[:40]}")
    return value


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text[:40]}")
    if not value <= MAX_DAYS:  # also refuses inf and nan, which no date can hold
        raise argparse.ArgumentTypeError(f"at most {MAX_DAYS} days: {text[:40]}")
    return value


def _commands(parent: argparse.ArgumentParser, dest: str) -> argparse._SubParsersAction[_Parser]:
    # The metavar names the choices in "required" errors, where argparse would print ``dest``.
    sub = parent.add_subparsers(dest=dest, required=True, parser_class=_Parser)
    return sub


def _name_choices(sub: argparse._SubParsersAction[_Parser]) -> None:
    sub.metavar = "{" + ",".join(sub.choices) + "}"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kensa-gql", description="GraphQL gateway for AI video generation. Settings come "
                     "from KENSA_* environment variables (see README.md).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = _commands(parser, "command")

    serve = sub.add_parser("serve", help="serve REST, GraphQL and media (with the task runner)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port to listen on")
    serve.add_argument("--no-worker", action="store_true", help="do not run the task runner in this process")

    sub.add_parser("worker", help="run only the task runner")

    db = sub.add_parser("db", help="database administration")
    db_sub = _commands(db, "db_command")
    db_sub.add_parser("upgrade", help="apply the migrations this release ships; says which it applied")
    _name_choices(db_sub)

    users = sub.add_parser("users", help="manage users")
    users_sub = _commands(users, "users_command")
    create = users_sub.add_parser("create", help="create a user; prints the API key last")
    create.add_argument("email", help="the user's email address (their login name)")
    create.add_argument("--credits", type=_credits, default=0, help="credits to grant as a gift")
    ensure = users_sub.add_parser(
        "ensure-demo", help="create the demo user, or give it a new key and revoke its old ones; prints the key")
    ensure.add_argument("--email", default="demo@kensa.local", help="the demo user's email address")
    ensure.add_argument("--credits", type=_credits, default=100, help="credits granted when the user is created")
    set_limits = users_sub.add_parser(
        "set-limits", help="set a user's own rate limits per minute ('default': the gateway's); prints them")
    set_limits.add_argument("email")
    set_limits.add_argument("--generate-per-minute", type=_limit, default=argparse.SUPPRESS, metavar="N|default",
                            help="generates per minute (KENSA_RATE_LIMIT_GENERATE_PER_MINUTE when 'default')")
    set_limits.add_argument("--requests-per-minute", type=_limit, default=argparse.SUPPRESS, metavar="N|default",
                            help="other calls per minute (KENSA_RATE_LIMIT_REQUESTS_PER_MINUTE when 'default')")
    _name_choices(users_sub)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = _commands(keys, "keys_command")
    keys_create = keys_sub.add_parser("create", help="issue a new key; prints it last")
    keys_create.add_argument("email", help="the user's email address")
    keys_revoke = keys_sub.add_parser("revoke", help="revoke a key")
    keys_revoke.add_argument("key", metavar="KEY_OR_PREFIX",
                             help=f"the whole key, or its first {PREFIX_LENGTH} characters as printed at issue")
    _name_choices(keys_sub)

    credits = sub.add_parser("credits", help="manage credits")
    credits_sub = _commands(credits, "credits_command")
    grant = credits_sub.add_parser("grant", help="grant a package of credits")
    grant.add_argument("email", help="the user's email address")
    grant.add_argument("amount", type=_credits, help="how many credits")
    grant.add_argument("--expires-in-days", type=_days, default=None, help="days until the package expires "
                       "(default: never)")
    grant.add_argument("--type", choices=[t.value for t in PackageType], default=PackageType.GIFT.value,
                       help="kind of package")
    _name_choices(credits_sub)

    sub.add_parser("export-schema", help="print the GraphQL schema (SDL)")
    _name_choices(sub)
    return parser


def _version() -> str:
    try:
        return metadata.version("kensa-gql")
    except metadata.PackageNotFoundError:
        return "unknown"


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

        if "public_url" not in settings.model_fields_set:
            settings = settings.model_copy(update={"public_url": served_url(args.host, args.port)})
        asyncio.run(preflight(settings))
        serve(settings, host=args.host, port=args.port, run_worker=not args.no_worker)
    elif args.command == "worker":
        from kensa_gql.server import run_worker

        asyncio.run(preflight(settings))
        run_worker(settings)
    elif args.command == "db":
        print(_upgrade(settings))
    elif args.command == "users" and args.users_command == "create":
        principal, issued = _with_db(settings, lambda db: accounts.create_user(args.email, credits=args.credits,
                                                                               db=db))
        print(f"created user {principal.email} (id {principal.user_id}) with {args.credits} credits")
        print(f"key prefix: {issued.prefix} (use it to revoke the key)")
        print(issued.key)
    elif args.command == "users" and args.users_command == "ensure-demo":
        async def ensure(db: Database) -> tuple[str, str]:
            # Only a hash of a key is stored, so the old key cannot be shown again: an existing demo
            # user gets a new one, and the ones it had are revoked (one valid demo key at a time).
            try:
                _, issued = await accounts.create_user(args.email, credits=args.credits, db=db)
                return f"created demo user {args.email} with {args.credits} credits", issued.key
            except Conflict:
                issued, revoked = await accounts.replace_keys(args.email, db=db)
                old = f"revoked its previous key{'s' if len(revoked) > 1 else ''} {', '.join(revoked)}" \
                    if revoked else "it had no active key"
                return f"demo user {args.email} exists; issued key {issued.prefix} and {old}", issued.key

        what, key = _with_db(settings, ensure)
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
        prefix = _with_db(settings, lambda db: accounts.revoke_key(args.key, db=db))
        print(f"revoked key {prefix}")
    elif args.command == "credits" and args.credits_command == "grant":
        balance = _with_db(settings, lambda db: accounts.grant_credits(
            args.email, args.amount, kind=PackageType(args.type), expires_in_days=args.expires_in_days, db=db))
        print(f"granted {args.amount} credits to {args.email}; available {balance.available}, "
              f"frozen {balance.frozen}, used {balance.used}, total {balance.total}")
    elif args.command == "export-schema":
        from kensa_gql.api.graphql.schema import export_schema

        sys.stdout.write(export_schema())


def served_url(host: str, port: int) -> str:
    """The URL media links use when KENSA_PUBLIC_URL is not set: the address being served."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - every interface: name this machine instead
        print(f"kensa-gql: warning: KENSA_PUBLIC_URL is not set; media links will use "
              f"http://127.0.0.1:{port}, which only this machine can reach. Set KENSA_PUBLIC_URL to the "
              "address clients use.", file=sys.stderr)
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def preflight(settings: Settings) -> None:
    """Before serving: the database and Redis can be reached and the schema is current, or one
    line saying which is not (instead of a traceback, or 500s for every request)."""
    if settings.broadcast_url.startswith(("redis://", "rediss://")):
        await _check_redis(settings.broadcast_url)
    if settings.is_sqlite:
        return  # migrated by the gateway itself at start
    try:
        current = await current_revision(settings.database_url)
    except Exception as exc:
        raise SettingsError(f"KENSA_DATABASE_URL: cannot connect to {_where(settings.database_url)} "
                            f"({_reason(exc)})") from None
    head = head_revision(settings.database_url)
    if current != head:
        raise SettingsError(f"the database at {_where(settings.database_url)} is not migrated "
                            f"(at {current or 'no revision'}, this release needs {head}): "
                            "run `kensa-gql db upgrade`")


async def _check_redis(url: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.ping()
    except Exception as exc:
        raise SettingsError(f"KENSA_BROADCAST_URL: cannot reach Redis at {_where(url)} ({_reason(exc)})") from None
    finally:
        await client.aclose()


def _where(url: str) -> str:
    """host:port of a URL, never its credentials."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname or 'localhost'}" + (f":{port}" if port else "")


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _upgrade(settings: Settings) -> str:
    url = settings.database_url
    try:
        before = asyncio.run(current_revision(url))
        upgrade(url)
        after = asyncio.run(current_revision(url))
    except SettingsError:
        raise
    except Exception as exc:
        raise SettingsError(f"KENSA_DATABASE_URL: cannot migrate {_where(url)} ({_reason(exc)})") from None
    applied = revisions_between(url, before, after)
    if not applied:
        return f"database is up to date (revision {after})"
    return f"applied {len(applied)} migration{'s' if len(applied) > 1 else ''} ({', '.join(applied)}); " \
        f"database is at revision {after}"


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
