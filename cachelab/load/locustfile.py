"""locustfile of cachelab (notebook 07): stages of paced users, one offered rate after another.

A stage offers ``rate`` requests per second for ``seconds`` with ``users`` users of its own. Each user is
locust's closed loop with pacing: it sends a request, waits for the answer, then waits what is left of its
interval, ``users / rate`` seconds (``constant_throughput(rate / users)``), before the next. The users'
first requests are spread evenly over one interval, so that together they send ``rate`` requests a
second. That holds while every answer comes back within the interval. A user whose answer comes later
sends its next request as soon as the answer arrives and never makes up the time: it sends less than its
share, and the latency locust records starts when the request left, not when it was due (coordinated
omission).

So every answered request is recorded with the time it was due on its user's schedule, the time it
left, locust's own response time and its user; the driver, ``cachelab.load.paced``, reads from them how much each
stage offered, how much it sent and got answered, and how late the requests left. Usage:

    CACHELAB_LOCUST_CONFIG=config.json locust -f locustfile.py --headless -u USERS -r USERS \
        --host http://127.0.0.1:PORT --exit-code-on-error 0 --only-summary

config.json: {"paths": "paths.txt", "out": "requests.json", "lead": 0.1, "timeout": 10,
              "stages": [{"rate": 20, "seconds": 1.5, "users": 5}, ...]}; USERS is the sum of the stages' users.
"""

import itertools
import json
import os
import time

import gevent
from locust import FastHttpUser, TaskSet, constant_throughput, events, task

with open(os.environ["CACHELAB_LOCUST_CONFIG"]) as f:
    CONFIG = json.load(f)
with open(CONFIG["paths"]) as f:
    PATHS = [line.strip() for line in f if line.strip()]
STAGES = CONFIG["stages"]
STARTS = list(itertools.accumulate((s["seconds"] for s in STAGES), initial=float(CONFIG["lead"])))
FIRST_USER = list(itertools.accumulate((s["users"] for s in STAGES), initial=0))  # user j is in stage i
# when FIRST_USER[i] <= j < FIRST_USER[i + 1]

clock = time.perf_counter
T0 = None  # the test's start on `clock`, set when the test starts; every time below is since T0
RECORDS = []  # one per answered request: [stage, due, sent (s), locust's response time (ms), 2xx, user]
in_flight = 0
next_user = itertools.count()
next_path = itertools.cycle(PATHS)


@events.request.add_listener
def on_request(context, response_time, exception, response, **kwargs):
    global in_flight
    in_flight -= 1
    status = getattr(response, "status_code", 0) or 0
    RECORDS.append([context["stage"], context["due"], context["sent"], response_time,
                    exception is None and 200 <= status < 300, context["user"]])


def finish(environment):
    """At each stage's start, note the CPU time this process has used; after the last stage, wait for the
    answers still on their way (at most the request timeout), write the records, and quit."""
    cpu = []
    for start in STARTS:
        gevent.sleep(max(0.0, T0 + start - clock()))
        cpu.append([clock() - T0, time.process_time()])
    deadline = clock() + float(CONFIG["timeout"])
    while in_flight > 0 and clock() < deadline:
        gevent.sleep(0.01)
    with open(CONFIG["out"], "w") as f:
        json.dump({"starts": STARTS, "cpu": cpu, "unanswered": in_flight, "requests": RECORDS}, f)
    environment.runner.quit()


@events.test_start.add_listener
def on_test_start(environment, **kwargs):
    global T0
    T0 = clock()
    gevent.spawn(finish, environment)


class Paced(TaskSet):
    """A user's requests: one every interval, counted from when this TaskSet starts, while answers keep up."""

    def wait_time(self):
        if self.user.due >= self.user.end:
            return 24 * 3600  # the stage is over for this user: it waits for the test to quit
        return self.user.pace(self)  # locust's constant_throughput, at this stage's rate per user

    @task
    def ask(self):
        global in_flight
        user = self.user
        sent = clock() - T0
        if sent >= user.end:  # fell so far behind that its stage ended before this request could leave
            user.due = user.end
            return
        in_flight += 1
        self.client.get(next(next_path), name=f"stage {user.stage}",
                        context={"stage": user.stage, "due": user.due, "sent": sent, "user": user.number})
        user.due += user.interval


class PacedUser(FastHttpUser):
    network_timeout = connection_timeout = float(CONFIG["timeout"])
    tasks = [Paced]

    def on_start(self):
        j = self.number = next(next_user)
        self.stage = next(i for i in range(len(STAGES)) if j < FIRST_USER[i + 1])
        stage = STAGES[self.stage]
        self.interval = stage["users"] / stage["rate"]
        self.pace = constant_throughput(stage["rate"] / stage["users"])
        self.end = STARTS[self.stage + 1]
        self.due = STARTS[self.stage] + (j - FIRST_USER[self.stage]) / stage["users"] * self.interval
        gevent.sleep(max(0.0, T0 + self.due - clock()))  # then the Paced TaskSet starts, and its pacing clock
