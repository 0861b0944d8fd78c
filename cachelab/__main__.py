"""Command line: ``python -m cachelab run|refresh|servers|with-servers|data|env``."""

from __future__ import annotations

import argparse
import subprocess
import sys

from . import paths


def _print_summary(outcomes) -> None:
    width = max(len(o.path.stem) for o in outcomes)
    print(f"\n{'notebook':<{width}}  status  seconds")
    for o in outcomes:
        print(f"{o.path.stem:<{width}}  {'ok' if o.ok else 'FAILED':<6}  {o.seconds:7.1f}")
    from .results import available, load

    ladder = [name for name in available() if name.startswith("07_")]
    if ladder:
        table = load(ladder[-1]).values.get("ladder_table")
        if table:
            print("\nThe ladder (cost of one answer at each step):\n" + table)


def cmd_run(args) -> int:
    from .runner import run_series

    out = paths.project_root() / "build"
    if not args.in_place:
        import os

        os.environ["CACHELAB_RESULTS_DIR"] = str(out / "results")  # so the summary reads this run's results
    outcomes = run_series(quick=args.quick, only=args.only, in_place=args.in_place, out_dir=out)
    _print_summary(outcomes)
    return 0 if all(o.ok for o in outcomes) else 1


def cmd_servers(args) -> int:
    from . import servers

    if args.action == "up":
        print(servers.servers_up())
    elif args.action == "down":
        print(servers.servers_down())
    else:
        try:
            found = servers.connect(start=False)
        except servers.ServersUnavailable as exc:
            print(exc)
            return 1
        print(found.describe())
        print(found.versions())
    return 0


def cmd_with_servers(args) -> int:
    """Run a command with servers up; stop afterwards the servers this command started."""
    from . import servers

    already = servers.state_file().exists()
    print(servers.servers_up())
    try:
        return subprocess.call(args.command)
    finally:
        if not already and servers.state_file().exists():
            print(servers.servers_down())


def cmd_data(_args) -> int:
    from .data import database_path

    path = database_path()
    print(f"Database ready: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_env(_args) -> int:
    from .environment import banner, environment

    print(banner(environment()))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cachelab", description=__doc__)
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
    from .bench import add_parser as add_bench_parser

    add_bench_parser(sub)  # `python -m cachelab bench`: every caching layer next to its floor
    from . import check, exercises_build, prefetch, site

    for module in (check, exercises_build, prefetch, site):  # check, exercises, prefetch, site
        module.add_parser(sub)
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == [] or (args.func is cmd_with_servers and not args.command):
        parser.error("with-servers needs a command")
    if args.func is cmd_with_servers and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
