"""The ``kassa`` command: run the whole mesh locally, migrate, seed, mint tokens, place a demo order, and
check stock against the reservations (``kassa stock check [--repair]``), and manage the keys of personal
data (``kassa pii new-key KEY_ID``, ``kassa pii rotate``).

``kassa up`` is the one command that runs Kassa on a fresh machine (DESIGN.md §5): with none of
KASSA_DATABASE_URL / KASSA_REDIS_URL / KASSA_NATS_URL set it starts the embedded local stack, with all
three set it uses that external infrastructure; it then migrates, starts the eight processes, seeds
the demo catalog and waits for Ctrl-C, restarting any process that dies (``devstack.mesh.RestartPolicy``).
``kassa up --replicas N`` runs N processes of each gRPC service and of the gateway (``devstack.mesh``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from devstack import certs, ops_cli
from devstack import check as invariant_check
from devstack.localstack import LocalStack, LocalStackError, StackEndpoints
from devstack.mesh import Mesh, MeshError, RestartPolicy, mesh_env
from infra import trace_view
from infra.auth import ROLE_ADMIN, ROLE_CUSTOMER, mint_token
from infra.config import DEVELOPMENT, ConfigError, Settings, parse_addrs, redact
from infra.pii import PiiCipher, new_key_spec

__all__ = ["main"]

_M = TypeVar("_M", bound=Message)

_INFRA_VARS = ("KASSA_DATABASE_URL", "KASSA_REDIS_URL", "KASSA_NATS_URL")
# How often `kassa up` looks for a process the mesh gave up on.
_UP_POLL_SECONDS = 1.0


class CliError(Exception):
    """A usage or configuration mistake: reported in one line, exit code 2."""


class CommandFailed(Exception):
    """The command was right but a step of it failed: reported in one line, exit code 1."""


def _migrate(database_url: str, *, pii: PiiCipher | None = None) -> None:
    """Upgrade every service schema; a failure names the URL (without password) and the cause.

    ``pii``: the keys a data migration encrypts existing personal data with (default: KASSA_PII_KEYS).
    """
    from infra.migrate import migrate

    try:
        # A service with a database of its own (KASSA_<SERVICE>_DATABASE_URL) migrates there.
        migrate(database_url, pii=pii, urls=Settings.from_env(_local_env()).service_database_urls)
    except Exception as exc:
        raise CommandFailed(f"migrating {redact(database_url)} failed: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------------------------------
# helpers


def external_endpoints(environ: Mapping[str, str]) -> StackEndpoints | None:
    """All three infrastructure URLs from the environment, None when none is set.

    A partial set is refused: silently starting a local Postgres next to an external Redis would
    run the mesh against two different worlds.
    """
    present = [name for name in _INFRA_VARS if environ.get(name)]
    if not present:
        return None
    missing = [name for name in _INFRA_VARS if name not in present]
    if missing:
        raise CliError(
            f"mixed configuration: {', '.join(present)} set but {', '.join(missing)} not; "
            "set all three to use external infrastructure, or none to start the local stack"
        )
    return StackEndpoints(
        database_url=environ["KASSA_DATABASE_URL"],
        redis_url=environ["KASSA_REDIS_URL"],
        nats_url=environ["KASSA_NATS_URL"],
    )


def _ports(settings: Settings, replicas: int) -> dict[str, int | list[int]]:
    """The ports ``kassa up`` gives each process: KASSA_<NAME>_ADDR's (a list of replicas as it lists them)."""
    ports: dict[str, int | list[int]] = {}
    for name, raw in settings.addrs.items():
        listed = [int(addr.rsplit(":", 1)[1]) for addr in parse_addrs(f"KASSA_{name.upper()}_ADDR", raw)]
        if len(listed) > 1 and len(listed) != replicas:
            raise CliError(f"KASSA_{name.upper()}_ADDR lists {len(listed)} addresses but --replicas is {replicas}")
        ports[name] = listed if len(listed) > 1 else listed[0]
    return ports


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def _signals(handler: Callable[[int, FrameType | None], object] | int) -> Iterator[None]:
    """Route SIGINT and SIGTERM to ``handler`` for the block, then restore what was there."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _print_table(endpoints: StackEndpoints, env: Mapping[str, str], mesh: Mesh, log_dir: Path) -> None:
    rows = [
        ("postgres", redact(endpoints.database_url), "", ""),
        ("redis", redact(endpoints.redis_url), "", ""),
        ("nats", redact(endpoints.nats_url), "JetStream", ""),
    ]
    if endpoints.smtp_url:
        rows.append(("smtp", endpoints.smtp_url, "SMTP sink: customer email (kassa mail)", ""))
    pids = mesh.pids
    shared_gateway = env["KASSA_GATEWAY_ADDR"]
    for spec in mesh.specs:
        pid = str(pids.get(spec.name, ""))
        if spec.service_name == "gateway":
            shared = f" (shares {shared_gateway})" if spec.addr != shared_gateway else ""
            rows.append((spec.name, f"http://{spec.addr}", f"REST{shared}", pid))
        elif spec.service_name == "sandbox":
            rows.append((spec.name, f"http://{spec.addr}", "sandbox payment provider", pid))
        else:
            rows.append((spec.name, spec.addr, "gRPC", pid))
    width = max(len(where) for _, where, _, _ in rows)
    kind_width = max(len(kind) for _, _, kind, _ in rows)
    name_width = max(10, *(len(name) for name, _, _, _ in rows))
    print()
    print(f"  {'part':<{name_width}} {'listens on':<{width}}  {'kind':<{kind_width}}  pid")
    for name, where, kind, pid in rows:
        print(f"  {name:<{name_width}} {where:<{width}}  {kind:<{kind_width}}  {pid}".rstrip())
    print()
    print(f"  logs:   {log_dir}")
    print(f"  try:    curl -s -X POST http://{shared_gateway}/v1/auth/guest")
    print("  token:  kassa token --admin alice   (admin routes: -H 'Authorization: Bearer <token>')")
    print(f"  grpc:   grpcurl -plaintext {mesh.addr('checkout')} list")
    print(f"  demo:   kassa demo --gateway-url http://{shared_gateway}")
    print()
    print("Kassa is up. Press Ctrl-C to stop.", flush=True)


# --------------------------------------------------------------------------------------------------
# subcommands


def cmd_up(args: argparse.Namespace) -> int:
    """Start infrastructure (or use external), migrate, run the mesh, seed, wait for a stop signal.

    The mesh is supervised: a process that exits is restarted with backoff and each exit and restart
    is logged. A process in a crash loop is given up on: the mesh prints the end of its log, this
    command adds a line on stderr, and everything else keeps running (reads of placed orders, say,
    still work while checkout is down). ``kassa up`` itself only ends on Ctrl-C or SIGTERM, or when
    start-up fails; it then exits 0, or 1 when a process was given up on (or start-up failed).
    """
    from devstack.seed import seed

    external = external_endpoints(os.environ)
    if args.replicas < 1:
        raise CliError("--replicas must be at least 1")
    try:
        settings = _local_settings()
        settings.require_safe_secrets()
        pii = settings.pii_cipher()
        ports = _ports(settings, args.replicas)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    data_dir = Path(args.data_dir).expanduser().absolute()
    log_dir = data_dir / "logs"
    given_up: dict[str, int] = {}

    with _signals(_raise_interrupt), ExitStack() as cleanup:
        try:
            if external is None:
                stack = LocalStack(data_dir / "stack", nats_cluster=args.nats_cluster)
                cleanup.callback(stack.stop)
                endpoints = stack.start()
            else:
                endpoints = external
                print("using external infrastructure from KASSA_DATABASE_URL / KASSA_REDIS_URL / KASSA_NATS_URL")
            print("migrating ...", flush=True)
            _migrate(endpoints.database_url, pii=pii)
            try:
                env = mesh_env(
                    endpoints,
                    ports,
                    replicas=args.replicas,
                    jwt_secret=settings.jwt_secret,
                    webhook_secret=settings.webhook_secret,
                    service_secret=settings.service_secret,
                    environment=settings.environment,
                    data_dir=data_dir,
                    metrics_port_offset=True,  # /metrics on each gRPC port + 1000
                )
            except ValueError as exc:
                raise CliError(str(exc)) from exc
            mesh = Mesh(env, log_dir, log=_print_flushed, restart_policy=RestartPolicy())
            cleanup.callback(mesh.stop)
            mesh.start()
            if not args.no_seed:
                asyncio.run(seed(env))
            _print_table(endpoints, env, mesh, log_dir)
            while True:
                time.sleep(_UP_POLL_SECONDS)
                for name, code in mesh.given_up.items():
                    if name not in given_up:
                        given_up[name] = code
                        print(
                            f"kassa: gave up on {name} after a crash loop (last exit code {code}; its log: "
                            f"{log_dir / name}.log); the rest of the mesh keeps running. Ctrl-C stops.",
                            file=sys.stderr,
                            flush=True,
                        )
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)
            if given_up:
                print(f"kassa: gave up on {', '.join(given_up)} while running", file=sys.stderr)
                return 1
            return 0
        except (LocalStackError, MeshError, CommandFailed, grpc.aio.AioRpcError) as exc:
            print(f"kassa: {exc}", file=sys.stderr)
            return 1
        finally:
            # A second Ctrl-C must not cut the clean shutdown (the ExitStack) short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _print_flushed(line: str) -> None:
    """The mesh logs from its watcher threads; flush so restarts show up as they happen."""
    print(line, flush=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Upgrade every service schema to head."""
    url = args.database_url or os.environ.get("KASSA_DATABASE_URL")
    if not url:
        raise CliError("no database: set KASSA_DATABASE_URL or pass --database-url")
    from infra.migrate import SERVICES

    _migrate(url)
    print(f"migrated {', '.join(SERVICES)} on {redact(url)}")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    """Create or refresh the demo catalog on a running mesh."""
    from devstack.seed import seed

    env = _local_env()
    for name in ("warehouse", "pricing", "promotion"):
        value = getattr(args, f"{name}_addr")
        if value:
            env[f"KASSA_{name.upper()}_ADDR"] = value
    try:
        asyncio.run(seed(env))
    except grpc.aio.AioRpcError as exc:
        print(f"kassa: seed failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Print a JWT for local use, signed like the gateway expects."""
    if args.ttl <= 0:
        raise CliError("--ttl must be a positive number of seconds")
    try:
        settings = _local_settings()
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    if not settings.jwt_secret:
        raise CliError("KASSA_JWT_SECRET is not set (KASSA_ENV=development signs with the development secret)")
    token = mint_token(
        settings.jwt_secret,
        args.subject,
        role=ROLE_ADMIN if args.admin else ROLE_CUSTOMER,
        ttl_seconds=args.ttl,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    print(token)
    return 0


def _local_env() -> dict[str, str]:
    """The environment for commands that run or serve the local mesh: development mode unless KASSA_ENV is set.

    These commands only sign (tokens, the seed's admin calls) or start a development mesh; what they sign with
    a development secret no production service accepts, since production refuses to start with one.
    """
    return {"KASSA_ENV": DEVELOPMENT, **os.environ}


def _local_settings() -> Settings:
    return Settings.from_env(_local_env())


def cmd_demo(args: argparse.Namespace) -> int:
    """Place the scripted order over REST; exit 1 with the gateway's error JSON if a step fails."""
    from devstack.demo import DemoError, run_demo

    gateway_url = args.gateway_url or f"http://{Settings.from_env().addr('gateway')}"
    try:
        order = asyncio.run(run_demo(gateway_url))
    except DemoError as exc:
        status = f" (HTTP {exc.status})" if exc.status else ""
        print(f"kassa demo: {exc.step} failed{status}", file=sys.stderr)
        print(json.dumps(exc.body, indent=2), file=sys.stderr)
        return 1
    _show_confirmation(str(order.get("orderId", "")), _mail_dir(args.mail_dir), args.mail_wait)
    return 0


def _mail_dir(given: str | None) -> Path:
    return Path(given or os.environ.get("KASSA_MAIL_DIR") or ".kassa/stack/mail").expanduser()


def _show_confirmation(order_id: str, mail_dir: Path, wait_seconds: float) -> None:
    """Print the confirmation email the notification service sent for the demo order (from the local sink)."""
    from devstack.smtp_sink import read_mailbox

    deadline = time.monotonic() + wait_seconds
    while True:
        found = [m for m in read_mailbox(mail_dir) if order_id and order_id in m.body()]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    if not found:
        print(f"\nno email about {order_id} in {mail_dir} yet (kassa mail lists what arrived)")
        return
    mail = found[0]
    print(f"\nemail to {mail.to}: {mail.subject}   (kassa mail {mail.key})\n")
    print(mail.body())


def cmd_pii_new_key(args: argparse.Namespace) -> int:
    """Print a fresh ``kid:base64key`` entry for KASSA_PII_KEYS (32 random bytes)."""
    try:
        print(new_key_spec(args.key_id))
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    return 0


def cmd_pii_rotate(args: argparse.Namespace) -> int:
    """Re-encrypt under the first key of KASSA_PII_KEYS every personal-data token an older key sealed."""
    from infra.migrate import SCHEMAS
    from infra.pii import PiiError
    from infra.pii_rotation import rotate

    url = args.database_url or os.environ.get("KASSA_DATABASE_URL")
    if not url:
        raise CliError("no database: set KASSA_DATABASE_URL or pass --database-url")
    try:
        cipher = Settings.from_env().pii_cipher()
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    try:
        done = rotate(url, cipher, SCHEMAS.values())
    except PiiError as exc:
        raise CommandFailed(f"rotation stopped: {exc}") from exc
    print(f"re-encrypted {sum(done.values())} values under {cipher.current_key_id!r} on {redact(url)}")
    return 0


# The reconciliation belongs to the warehouse (infra imports no service), so it runs as its own process.
STOCK_CHECK_MODULE = "warehouse.reconcile"
# What `kassa stock check` exits with when it could not run the check at all (2 means an oversell).
STOCK_CHECK_FAILED = 3


def cmd_stock_check(args: argparse.Namespace) -> int:
    """Recompute stock.reserved from the active reservations; report (and with --repair fix) drift.

    Runs ``python -m warehouse.reconcile`` and passes its exit code through: 0 no drift (or repaired),
    1 drift not repaired, 2 oversold or unrepairable, 3 the check could not run. The database URL goes
    to the child in its environment, never on its command line (where ``ps`` would show a password).
    """
    url = args.database_url or os.environ.get("KASSA_DATABASE_URL")
    if not url:
        print("kassa: no database: set KASSA_DATABASE_URL or pass --database-url", file=sys.stderr)
        return STOCK_CHECK_FAILED
    argv = [sys.executable, "-m", STOCK_CHECK_MODULE]
    if args.repair:
        argv.append("--repair")
    for sku in args.skus or ():
        argv += ["--sku", sku]
    try:
        code = subprocess.run(argv, env={**os.environ, "KASSA_DATABASE_URL": url}, check=False).returncode
    except OSError as exc:
        print(f"kassa: could not run {STOCK_CHECK_MODULE}: {exc}", file=sys.stderr)
        return STOCK_CHECK_FAILED
    # A child killed by a signal (negative code) did not finish its check.
    return code if code >= 0 else STOCK_CHECK_FAILED


def cmd_mail(args: argparse.Namespace) -> int:
    """What the local SMTP sink received (``kassa mail``, ``kassa mail KEY``), or the notification service's
    dead letters (``kassa mail --dead``; ``kassa mail --replay MESSAGE_ID`` sends one again: admin calls)."""
    if args.replay:
        return _replay_dead_letter(args)
    if args.dead:
        return _dead_letters(args)
    from devstack.smtp_sink import read_mailbox

    mail_dir = _mail_dir(args.dir)
    messages = read_mailbox(mail_dir)
    if args.key:
        found = [m for m in messages if m.key == args.key or m.key.startswith(args.key)]
        if len(found) != 1:
            raise CliError(f"{len(found)} messages in {mail_dir} match {args.key!r}")
        m = found[0]
        for header in ("Date", "From", "To", "Subject", "Message-ID"):
            print(f"{header}: {m.message.get(header, '')}")
        print()
        print(m.body("html" if args.html else "plain"))
        return 0
    if not messages:
        print(f"no mail in {mail_dir}")
        return 0
    for m in messages[-args.limit :]:
        when = m.date.strftime("%Y-%m-%d %H:%M:%S") if m.date else "?"
        print(f"{m.key}  {when}  {m.to:<32}  {m.subject}")
    return 0


def _ask_notification(name: str, rpc: Callable[[Any, ops_cli.Mesh], Awaitable[_M]]) -> _M:
    """One admin call to the notification service (``rpc(stub, mesh)``) with the operator commands' credentials
    (devstack.ops_cli.Mesh); a refusal is CommandFailed naming the RPC."""
    from kassa.notification.v1 import notification_service_pb2_grpc as pb_grpc

    mesh = ops_cli.Mesh()

    async def call() -> _M:
        return await mesh.call("notification", lambda ch: rpc(pb_grpc.NotificationServiceStub(ch), mesh))

    try:
        return asyncio.run(call())
    except grpc.aio.AioRpcError as exc:
        raise CommandFailed(f"{name}: {exc.code().name}: {exc.details()}") from exc


def _dead_letters(args: argparse.Namespace) -> int:
    from kassa.notification.v1 import notification_service_pb2 as pb

    reply = _ask_notification(
        "ListDeadLetters",
        lambda stub, mesh: stub.ListDeadLetters(
            pb.ListDeadLettersRequest(page_size=args.limit), metadata=mesh.metadata, timeout=mesh.timeout
        ),
    )
    if not reply.messages:
        print("no dead letters")
    for m in reply.messages:
        print(f"{m.message_id}  {m.kind:<15} order {m.order_id}  to {m.recipient}  after {m.attempts}: {m.last_error}")
    return 0


def _replay_dead_letter(args: argparse.Namespace) -> int:
    from kassa.notification.v1 import notification_service_pb2 as pb

    reply = _ask_notification(
        "ReplayDeadLetter",
        # The send itself may retry for ~20 s: a longer deadline than an ordinary call.
        lambda stub, mesh: stub.ReplayDeadLetter(
            pb.ReplayDeadLetterRequest(message_id=args.replay), metadata=mesh.metadata, timeout=max(mesh.timeout, 60.0)
        ),
    )
    m = reply.message
    status = pb.MessageStatus.Name(m.status).removeprefix("MESSAGE_STATUS_")
    print(f"{m.message_id}  {m.kind:<15} order {m.order_id}  to {m.recipient}  {status}  {m.last_error}".rstrip())
    return 0 if m.status == pb.MESSAGE_STATUS_SENT else 1


# --------------------------------------------------------------------------------------------------
# entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kassa", description="Run and poke at the Kassa checkout mesh.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start infrastructure, migrate, run and supervise every service, seed; Ctrl-C stops")
    up.add_argument("--data-dir", default=".kassa", help="local stack data and logs (default: .kassa)")
    up.add_argument("--no-seed", action="store_true", help="do not seed the demo catalog")
    up.add_argument(
        "--nats-cluster",
        type=int,
        choices=(1, 3, 5),
        default=1,
        metavar="N",
        help="run the local NATS as a JetStream cluster of N servers (3: streams on 3 replicas, as in production)",
    )
    up.add_argument(
        "--replicas",
        type=int,
        default=1,
        metavar="N",
        help="processes of each gRPC service and of the gateway (default: 1); replica k of a service listens on "
        "its port + 10*k, the gateway's replicas share its port",
    )
    up.set_defaults(func=cmd_up)

    mig = sub.add_parser("migrate", help="upgrade every service schema to head")
    mig.add_argument("--database-url", help="default: $KASSA_DATABASE_URL")
    mig.set_defaults(func=cmd_migrate)

    sd = sub.add_parser("seed", help="create or refresh the demo catalog on a running mesh")
    for name in ("warehouse", "pricing", "promotion"):
        sd.add_argument(f"--{name}-addr", help=f"default: $KASSA_{name.upper()}_ADDR or its default port")
    sd.set_defaults(func=cmd_seed)

    tok = sub.add_parser("token", help="print a JWT signed with $KASSA_JWT_SECRET (or the dev secret)")
    tok.add_argument("subject", metavar="SUBJECT", help="the customer id (JWT sub)")
    tok.add_argument("--admin", action="store_true", help="add role admin")
    tok.add_argument("--ttl", type=int, default=24 * 3600, metavar="SECONDS", help="lifetime (default: 1 day)")
    tok.set_defaults(func=cmd_token)

    demo = sub.add_parser("demo", help="place a scripted order over REST against a running mesh")
    demo.add_argument("--gateway-url", help="default: http://$KASSA_GATEWAY_ADDR (http://127.0.0.1:8080)")
    demo.add_argument("--mail-dir", help="the SMTP sink's folder (default: $KASSA_MAIL_DIR or .kassa/stack/mail)")
    demo.add_argument(
        "--mail-wait", type=float, default=20.0, help="seconds to wait for the confirmation email (default 20)"
    )
    demo.set_defaults(func=cmd_demo)

    mail = sub.add_parser("mail", help="list (or show one of) the messages the local SMTP sink received")
    mail.add_argument("key", nargs="?", metavar="KEY", help="show this message (a prefix of its key is enough)")
    mail.add_argument("--dir", help="the sink's folder (default: $KASSA_MAIL_DIR or .kassa/stack/mail)")
    mail.add_argument("--html", action="store_true", help="show the HTML part instead of the text")
    mail.add_argument("--dead", action="store_true", help="list the notification service's dead letters (admin)")
    mail.add_argument(
        "--replay", metavar="MESSAGE_ID", help="send this dead letter again, once (admin; its id from --dead)"
    )
    mail.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    mail.set_defaults(func=cmd_mail)

    stock = sub.add_parser("stock", help="stock maintenance")
    stock_sub = stock.add_subparsers(dest="stock_command", required=True, metavar="STOCK_COMMAND")
    check = stock_sub.add_parser(
        "check",
        help="recompute reserved from the active reservations and report drift "
        "(exit 0 clean or repaired, 1 drift, 2 oversold, 3 could not check)",
    )
    check.add_argument("--repair", action="store_true", help="set reserved to the recomputed units where safe")
    check.add_argument("--sku", action="append", dest="skus", metavar="SKU", help="only this sku (repeatable)")
    check.add_argument("--database-url", help="default: $KASSA_DATABASE_URL")
    check.set_defaults(func=cmd_stock_check)
    ops_cli.add_commands(sub, stock_sub)  # kassa dlq | sessions | outbox | stock drift | funnel
    pii = sub.add_parser("pii", help="keys of the personal data order and checkout keep encrypted")
    pii_sub = pii.add_subparsers(dest="pii_command", required=True, metavar="PII_COMMAND")
    new_key = pii_sub.add_parser("new-key", help="print a fresh KEY_ID:base64key entry for KASSA_PII_KEYS")
    new_key.add_argument("key_id", metavar="KEY_ID", help="1-32 of A-Z a-z 0-9 _ - (say, the month: 2025-07)")
    new_key.set_defaults(func=cmd_pii_new_key)
    rot = pii_sub.add_parser(
        "rotate", help="re-encrypt under the first key of $KASSA_PII_KEYS what the other keys encrypted"
    )
    rot.add_argument("--database-url", help="default: $KASSA_DATABASE_URL")
    rot.set_defaults(func=cmd_pii_rotate)
    certs.add_parser(sub)
    trace_view.add_parser(sub)  # kassa trace ORDER_OR_SESSION_ID
    inv = sub.add_parser(
        "check",
        add_help=False,
        help="prove DESIGN.md §4's invariants on a stack's databases, ledger and streams (kassa check --help)",
    )
    # Listed here for `kassa --help`; main() hands everything after `check` to devstack.check's own parser.
    inv.set_defaults(func=lambda _args: invariant_check.main([]))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"]:
        return invariant_check.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"kassa: {exc}", file=sys.stderr)
        return 2
    except CommandFailed as exc:
        print(f"kassa: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
