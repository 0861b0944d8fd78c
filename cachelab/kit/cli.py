"""The command line: ``python -m cachelab run|servers|with-servers|data|env|check|exercises|site|bench|...``.

An expected failure (no servers, an unreachable ``REDIS_URL``, a wrong password, a notebook that fails, a
missing results file, a bad option) prints one paragraph that says what went wrong and what to do, never
a Python traceback, and exits non-zero: 2 for bad usage or a machine that is not ready, 1 for a notebook
or a check that failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys

from .. import paths

EXIT_FAILED = 1  # a notebook, a test or a check failed
EXIT_USAGE = 2  # bad usage, or a machine that is not ready


def _print_summary(outcomes) -> None:
    from .runner import describe_claims

    width = max(len(o.path.stem) for o in outcomes)
    print(f"\n{'notebook':<{width}}  status  seconds  claims shown")
    for o in outcomes:
        shown = sum(c.get("verdict") == "shown" for c in o.claims)
        judged = f"{shown} of {len(o.claims)}" if o.claims else "-"
        print(f"{o.path.stem:<{width}}  {'ok' if o.ok else 'FAILED':<6}  {o.seconds:7.1f}  {judged}")
    missed = [(o.path.stem, line) for o in outcomes for line in describe_claims(o)]
    if missed:
        print(f"\n{len(missed)} measured claim(s) not shown on this run (a busy machine, or a server far away; "
              "each notebook says which and why, where it makes the claim):")
        for name, line in missed:
            print(f"  {name}: {line}")
    from ..results import available, load

    current = {p.stem for p in paths.notebooks_dir().glob("[0-9][0-9]_*.ipynb")}  # not a renamed notebook's old results
    for name in reversed([n for n in available() if n in current]):  # the guide's results carry the ladder table
        with contextlib.suppress(Exception):
            table = load(name).values.get("ladder_table")
            if table:
                print(f"\nThe ladder (cost of one answer at each step, from {name}):\n{table}")
                break


@contextlib.contextmanager
def _servers_for_this_command():
    """Servers up for the length of one command; those it started itself are stopped when it ends."""
    from .. import servers

    already = servers.state_file().exists()
    print(servers.servers_up(), flush=True)
    try:
        yield
    finally:
        if not already and servers.state_file().exists():
            print(servers.servers_down())


def cmd_run(args) -> int:
    from .notebooks import list_notebooks
    from .runner import run_series

    list_notebooks(args.only)  # a bad --only fails here, before any server starts
    out = paths.project_root() / "build"
    # the summary reads this run's results; a reference run's results are committed beside the notebooks
    results = paths.reference_results_dir() if args.in_place else out / "results"
    results.mkdir(parents=True, exist_ok=True)
    os.environ["CACHELAB_RESULTS_DIR"] = str(results)
    with _servers_for_this_command():
        outcomes = run_series(quick=args.quick, only=args.only, in_place=args.in_place, out_dir=out)
    _print_summary(outcomes)
    failed = [o.path.stem for o in outcomes if not o.ok]
    if failed:
        print(f"\n{len(failed)} notebook(s) failed: {', '.join(failed)}. The error of each is printed above; open "
              f"the executed copy in build/notebooks/ to see it in place, fix it, and rerun with "
              f"`python -m cachelab run --only {' '.join(n[:2] for n in failed)}`.")
        return EXIT_FAILED
    return 0


def cmd_servers(args) -> int:
    from .. import servers

    if args.action == "up":
        print(servers.servers_up())
    elif args.action == "down":
        print(servers.servers_down())
    else:
        found = servers.connect(start=False)
        print(found.describe())
        print(found.versions())
    return 0


def cmd_with_servers(args) -> int:
    """Run a command with servers up; stop afterwards the servers this command started."""
    with _servers_for_this_command():
        return subprocess.call(args.command)


def cmd_data(_args) -> int:
    from ..data import database_path

    path = database_path()
    print(f"Database ready: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_env(_args) -> int:
    from ..environment import banner, environment

    print(banner(environment()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cachelab", description="cachelab: caching in Python, measured.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute every notebook into build/ and write the report")
    run.add_argument("--quick", action="store_true", help="small iteration counts (for tests)")
    run.add_argument("--only", nargs="*", help="notebook numbers or names to run, e.g. 00 01")
    run.add_argument("--in-place", action="store_true", help="execute the sources in place (make refresh)")
    run.set_defaults(func=cmd_run)
    srv = sub.add_parser("servers", help="start, stop or show the Redis and memcached servers")
    srv.add_argument("action", choices=["up", "down", "status"])
    srv.set_defaults(func=cmd_servers)
    ws = sub.add_parser("with-servers", help="run a command with servers up, then stop those started")
    ws.add_argument("command", nargs=argparse.REMAINDER)
    ws.set_defaults(func=cmd_with_servers)
    sub.add_parser("data", help="build the SQLite database from data/").set_defaults(func=cmd_data)
    sub.add_parser("env", help="print the environment banner").set_defaults(func=cmd_env)
    from ..bench import add_parser as add_bench_parser
    from . import check, exercises_build, plan, prefetch, site, soak, system, words

    add_bench_parser(sub)  # `python -m cachelab bench`: every caching layer next to its floor
    for module in (check, exercises_build, plan, prefetch, site, soak, system, words):
        module.add_parser(sub)
    return parser


def _fail(message: str, code: int) -> int:
    print(f"\ncachelab: {message.strip()}", file=sys.stderr)
    return code


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # a bad option: argparse prints the usage and exits with 2
    if args.func is cmd_with_servers:
        if args.command[:1] == ["--"]:
            args.command = args.command[1:]
        if not args.command:
            parser.error("with-servers needs a command, as in: python -m cachelab with-servers -- pytest")
    from ..results import ResultsMissing
    from ..servers import ServersUnavailable
    from .system import SetupFailed

    if os.environ.get("CACHELAB_DEBUG"):
        return args.func(args)  # tracebacks wanted
    try:
        return args.func(args)
    except ServersUnavailable as exc:
        return _fail(f"the servers are not available.\n{exc}", EXIT_USAGE)
    except SetupFailed as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ResultsMissing as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (ValueError, TypeError, OSError) as exc:
        return _fail(f"{exc}\nRun `python -m cachelab {args.command} --help` for the options.", EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted; the servers this command started have been stopped.", 130)
