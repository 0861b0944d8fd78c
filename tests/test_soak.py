"""The soak's tally: failures and claims not shown, per notebook and per claim, over several runs."""

from __future__ import annotations

from pathlib import Path

from cachelab.kit import soak
from cachelab.kit.runner import Outcome


def claim(statement, verdict, estimate=1.2):
    return {"statement": statement, "verdict": verdict, "estimate": estimate}


def test_the_tally_counts_failures_and_claims_not_shown_per_notebook_and_per_claim():
    runs = [
        [Outcome(Path("05_memcached.ipynb"), True, 40.0, claims=[claim("a hit beats the query", "shown")]),
         Outcome(Path("06_redis.ipynb"), True, 60.0, claims=[claim("hit > PING", "not shown on this run", 1.01),
                                                               claim("hiredis wins", "not applicable here")])],
        [Outcome(Path("05_memcached.ipynb"), False, 12.0, error="AssertionError: the second read should be a hit"),
         Outcome(Path("06_redis.ipynb"), True, 58.0, claims=[claim("hit > PING", "shown", 1.15),
                                                               claim("hiredis wins", "reversed", 0.9)])],
    ]
    result = soak.tally(runs)
    nbs = result["notebooks"]
    assert nbs["05_memcached"]["failed"] == 1 and nbs["05_memcached"]["runs"] == 2
    assert nbs["06_redis"]["not shown"] == 2 and nbs["06_redis"]["claims"] == 4
    by_claim = {c["statement"]: c for c in result["claims"]}
    assert by_claim["hit > PING"]["not shown"] == 1 and by_claim["hit > PING"]["estimates"] == [1.01, 1.15]
    assert by_claim["hiredis wins"]["reversed"] == 1 and by_claim["hiredis wins"]["not applicable"] == 1
    text = soak.report(result, 2)
    assert "06_redis: hit > PING: 1 / 0 of 2" in text and "hiredis wins: 0 / 1 of 2" in text
    assert "05_memcached: AssertionError: the second read should be a hit" in text
    assert "not applicable on this placement" in text
