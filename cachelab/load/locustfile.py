"""locustfile of cachelab (notebook 07): stages of an open loop, one offered rate after another.

A stage offers ``rate`` requests per second for ``seconds`` to ``host``: ``users`` requests, each sent by a
locust user of its own at its due time, ``start + j / rate`` for the stage's j-th user, whatever the answers
to the others do. Each user sends its one request and then waits for the test to end, so no user ever
waits for an answer before sending: the load is an open loop by construction (locust's own pacing,
``constant_throughput``, is a closed loop per user: a user whose answer comes late sends its next request
late). A request can still leave late if the generator itself is busy; that lateness is recorded.

The stages run in the order given. Each starts once every user is spawned and the previous stage's requests
have all been answered (or have timed out), then ``pause`` seconds more, so that a stage never inherits the
queue of the one before it. Every request is recorded with its stage, the time it was due, the time it left,
locust's response time, whether it succeeded and its user; the driver, ``cachelab.load.paced``, reads from
them what each stage offered, what the server answered and how late the generator was. Usage:

    CACHELAB_LOCUST_CONFIG=config.json locust -f locustfile.py --headless -u USERS -r USERS \
        --host http://127.0.0.1:PORT --exit-code-on-error 0 --only-summary

config.json: {"paths": "paths.txt", "out": "requests.json", "lead": 0.2, "pause": 0.3, "timeout": 10,
              "stages": [{"rate": 20, "seconds": 1.5, "users": 30, "host": "http://127.0.0.1:PORT"}, ...]};
USERS is the sum of the stages' users.
"""

import itertools
import json
import os
import time

import gevent
from gevent.event import Event
from locust import FastHttpUser, constant, events, task

with open(os.environ["CACHELAB_LOCUST_CONFIG"]) as f:
    CONFIG = json.load(f)
with open(CONFIG["paths"]) as f:
    PATHS = [line.strip() for line in f if line.strip()]
STAGES = CONFIG["stages"]
TOTAL = sum(s["users"] for s in STAGES)
FIRST_USER = list(itertools.accumulate((s["users"] for s in STAGES), initial=0))  # user j is in stage i
# when FIRST_USER[i] <= j < FIRST_USER[i + 1]

clock = time.perf_counter
T0 = None  # the test's start on `clock`, set when the test starts; every time below is since T0
RECORDS = []  # one per request: [stage, due, sent (s), locust's response time (ms), 2xx, user]
STARTS = [None] * len(STAGES)  # each stage's start, set when it begins
GO = [Event() for _ in STAGES]
sent = [0] * len(STAGES)
pending = [0] * len(STAGES)
spawned = 0
next_user = itertools.count()
next_path = itertools.cycle(PATHS)


@events.request.add_listener
def on_request(context, response_time, exception, response, **kwargs):
    pending[context["stage"]] -= 1
    status = getattr(response, "status_code", 0) or 0
    RECORDS.append([context["stage"], context["due"], context["sent"], response_time,
                    exception is None and 200 <= status < 300, context["user"]])


def run_stages(environment):
    """Start each stage in turn, once the users are spawned and the previous stage is answered; note the CPU time
    this process used during each stage; then write the records and quit."""
    deadline = clock() + 60
    while spawned < TOTAL and clock() < deadline:
        gevent.sleep(0.01)
    cpu, timeout = [], float(CONFIG["timeout"])
    for i, stage in enumerate(STAGES):
        STARTS[i] = clock() - T0 + float(CONFIG["lead"])
        GO[i].set()
        gevent.sleep(max(0.0, T0 + STARTS[i] - clock()))
        begin = [clock() - T0, time.process_time()]
        gevent.sleep(max(0.0, T0 + STARTS[i] + stage["seconds"] - clock()))
        cpu.append([begin, [clock() - T0, time.process_time()]])
        drained = clock() + timeout
        while (sent[i] < stage["users"] or pending[i] > 0) and clock() < drained:
            gevent.sleep(0.01)
        gevent.sleep(float(CONFIG["pause"]))
    with open(CONFIG["out"], "w") as f:
        json.dump({"starts": STARTS, "cpu": cpu, "unanswered": sum(pending), "requests": RECORDS}, f)
    environment.runner.quit()


@events.test_start.add_listener
def on_test_start(environment, **kwargs):
    global T0
    T0 = clock()
    gevent.spawn(run_stages, environment)


class OneRequest(FastHttpUser):
    """One request of one stage, sent at its due time; then the user waits for the test to end."""

    network_timeout = connection_timeout = float(CONFIG["timeout"])
    wait_time = constant(24 * 3600)

    def on_start(self):
        global spawned
        j = self.number = next(next_user)
        self.stage = next(i for i in range(len(STAGES)) if j < FIRST_USER[i + 1])
        self.done = False
        spawned += 1
        GO[self.stage].wait()
        stage = STAGES[self.stage]
        self.due = STARTS[self.stage] + (j - FIRST_USER[self.stage]) / stage["rate"]
        gevent.sleep(max(0.0, T0 + self.due - clock()))

    @task
    def ask(self):
        if self.done:
            return
        self.done = True
        i = self.stage
        at = clock() - T0
        sent[i] += 1
        pending[i] += 1
        self.client.get(STAGES[i]["host"] + next(next_path), name=f"stage {i}",
                        context={"stage": i, "due": self.due, "sent": at, "user": self.number})
