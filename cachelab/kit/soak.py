"""``make soak``: the series run N times in a row, with the failures and the claims not shown tallied.

A single green run proves little about a rerun on a busy laptop. The soak runs the whole series (or
``--only`` some notebooks) ``--runs`` times, each into ``build/soak/run-<i>/`` with servers up for the
whole soak, and prints, per notebook, how many runs failed and how many of its claims were not shown, then
each claim that was not shown at least once, with how often. ``build/soak/soak.json`` keeps the tally.

It is how the reliability of the series is measured (on a quiet machine; beside a competing CPU-bound
process; pinned to one CPU with ``taskset -c 0 make soak``), never a test that retries until it passes.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from .. import paths


def tally(runs: list[list]) -> dict:
    """Per notebook and per claim, over several runs' outcomes (lists of :class:`.runner.Outcome`)."""
    notebooks: dict[str, dict] = {}
    claims: dict[tuple[str, str], dict] = defaultdict(lambda: {"runs": 0, "not shown": 0, "reversed": 0,
                                                              "not applicable": 0, "estimates": []})
    for outcomes in runs:
        for o in outcomes:
            row = notebooks.setdefault(o.path.stem, {"runs": 0, "failed": 0, "claims": 0, "not shown": 0,
                                                     "seconds": [], "errors": []})
            row["runs"] += 1
            row["failed"] += not o.ok
            row["seconds"].append(round(o.seconds, 1))
            if o.error:
                row["errors"].append(o.error.splitlines()[0])
            row["claims"] += len(o.claims)
            row["not shown"] += len(o.not_shown)
            for c in o.claims:
                entry = claims[o.path.stem, c["statement"]]
                entry["runs"] += 1
                entry["not shown"] += c["verdict"] == "not shown on this run"
                entry["reversed"] += c["verdict"] == "reversed"
                entry["not applicable"] += c["verdict"] == "not applicable here"
                entry["estimates"].append(round(c["estimate"], 4))
    return {"notebooks": notebooks,
            "claims": [{"notebook": nb, "statement": st, **v} for (nb, st), v in claims.items()]}


def report(result: dict, runs: int) -> str:
    """The tally as text: a table per notebook, then every claim not shown at least once."""
    nbs = result["notebooks"]
    width = max([len(n) for n in nbs] + [8])
    lines = [f"{'notebook':<{width}}  runs  failed  claims judged  not shown  median s",
             "-" * (width + 48)]
    for name, row in nbs.items():
        secs = sorted(row["seconds"])
        lines.append(f"{name:<{width}}  {row['runs']:>4}  {row['failed']:>6}  {row['claims']:>13}  "
                     f"{row['not shown']:>9}  {secs[len(secs) // 2]:>8.1f}")
    total_failed = sum(r["failed"] for r in nbs.values())
    total_missed = sum(r["not shown"] for r in nbs.values())
    total_claims = sum(r["claims"] for r in nbs.values())
    lines.append(f"{'all':<{width}}  {runs:>4}  {total_failed:>6}  {total_claims:>13}  {total_missed:>9}")
    missed = [c for c in result["claims"] if c["not shown"] or c["reversed"]]
    if missed:
        lines.append("\nClaims not shown at least once (not shown / reversed, of the runs that judged them):")
        for c in missed:
            lines.append(f"  {c['notebook']}: {c['statement']}: {c['not shown']} / {c['reversed']} of {c['runs']} "
                         f"(estimates {', '.join(f'{e:.3g}' for e in c['estimates'])})")
    na = [c for c in result["claims"] if c["not applicable"]]
    if na:
        lines.append("\nClaims not applicable on this placement:")
        lines.extend(f"  {c['notebook']}: {c['statement']}: {c['not applicable']} of {c['runs']}" for c in na)
    errors = [(n, e) for n, r in nbs.items() for e in r["errors"]]
    if errors:
        lines.append("\nFailures:")
        lines.extend(f"  {n}: {e}" for n, e in errors)
    return "\n".join(lines)


def main(args) -> int:
    from .cli import _servers_for_this_command
    from .notebooks import list_notebooks
    from .runner import run_series

    list_notebooks(args.only)  # a bad --only fails before anything starts
    out = Path(args.out or paths.project_root() / "build" / "soak")
    out.mkdir(parents=True, exist_ok=True)
    runs, started = [], time.time()
    with _servers_for_this_command():
        for i in range(1, args.runs + 1):
            print(f"\nSoak run {i} of {args.runs}", flush=True)
            outcomes = run_series(quick=args.quick, only=args.only, out_dir=out / f"run-{i}", progress=False,
                                  site=False)
            runs.append(outcomes)
            result = tally(runs)
            result.update(runs_done=i, runs_asked=args.runs, quick=args.quick, seconds=round(time.time() - started))
            (out / "soak.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print("\n" + report(tally(runs), args.runs))
    print(f"\nTally kept in {out / 'soak.json'}")
    return 1 if any(not o.ok for outcomes in runs for o in outcomes) else 0


def add_parser(sub) -> None:
    """``python -m cachelab soak``."""
    parser = sub.add_parser("soak", help="run the series N times and tally failures and claims not shown")
    parser.add_argument("--runs", type=int, default=5, help="how many runs of the series (default 5)")
    parser.add_argument("--only", nargs="*", help="notebook numbers or names, e.g. 05 06")
    parser.add_argument("--quick", action="store_true", help="small iteration counts (as the tests run them)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the runs (default build/soak/)")
    parser.set_defaults(func=main)
