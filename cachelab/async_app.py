"""The flight service as an async app: FastAPI on uvicorn workers, redis.asyncio cache-aside, an asyncio
single-flight.

Open this file next to notebook 09. uvicorn serves ``cachelab.async_app:app`` with ``K`` worker processes;
each runs one event loop, which serves many requests at once while they wait on Redis.

* ``GET /delay/<origin>/<dest>/<month>``: cache-aside over ``redis.asyncio`` (``await r.get``; on a miss the
  query, then ``await r.set(..., ex=ttl)``), with the misses of one key in one worker merged by
  :class:`SingleFlight`: one query, every waiting request gets its answer;
* ``GET /unmerged/delay/<origin>/<dest>/<month>``: the same without the single-flight, to compare;
* ``GET /sync/delay/<origin>/<dest>/<month>``: the same cache-aside as a plain ``def`` with redis-py's
  blocking client, which FastAPI runs in its thread pool: the same framework, server and connections as
  ``/delay``, only the handler differs (what ``async def`` buys a hit, measured by notebook 09);
* ``POST /flights`` (record, then delete the key), ``GET /health``, ``GET /stats``.

The SQLite query is blocking: it runs in one database thread of the worker (``run_in_executor``), so the
event loop keeps answering hits while a miss is computed. That is also why a stampede is worse here than
under a sync worker: a sync worker takes one request at a time, an event loop takes them all, and each
would run its own query without the single-flight. The single-flight is per process: K workers may still
run K queries for one key (a lock in Redis, notebook 06, merges them across processes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.requests import Request
from fastapi.responses import JSONResponse

from . import framework_service as fs
from .servers import config as server_config


class SingleFlight:
    """One ``Future`` per key: the first caller starts the work as a task, later callers await the same task.

    The task is removed when it is done, so the next miss after it starts a new one. Each caller awaits it
    through ``asyncio.shield``: a caller that goes away (a client that disconnects) does not cancel the work
    the others are waiting for. ``started`` counts the tasks started, ``merged`` the callers that joined one."""

    def __init__(self):
        self._flights: dict[str, asyncio.Future] = {}
        self.started = 0
        self.merged = 0

    async def do(self, key: str, work: Callable[[], Awaitable]):
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(work())
            self._flights[key] = flight
            flight.add_done_callback(lambda _done, key=key: self._flights.pop(key, None))
            self.started += 1
        else:
            self.merged += 1
        return await asyncio.shield(flight)

    def __len__(self) -> int:
        return len(self._flights)


service = fs.service()
PREFIX = service.settings.prefix
TTL = fs.ttl_seconds(service)
state: dict = {}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    import redis.asyncio

    loop = asyncio.get_running_loop()
    state["db"] = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cachelab-db")
    await loop.run_in_executor(state["db"], service.worker)  # this worker's connection and counters
    state["redis"] = redis.asyncio.Redis.from_url(fs.redis_url(service), socket_timeout=server_config.SOCKET_TIMEOUT,
                                                  socket_connect_timeout=server_config.CONNECT_TIMEOUT)
    state["redis_sync"] = redis.Redis.from_url(fs.redis_url(service), socket_timeout=server_config.SOCKET_TIMEOUT,
                                               socket_connect_timeout=server_config.CONNECT_TIMEOUT)
    state["flights"] = SingleFlight()
    try:
        yield
    finally:
        await state["redis"].aclose()
        state["redis_sync"].close()
        state["db"].shutdown(wait=True)
        service.worker().close()


app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
app.extensions = {"cachelab": service}


@app.exception_handler(fs.BadRequest)
async def bad_request(request: Request, error: fs.BadRequest):
    return JSONResponse({"error": str(error)}, status_code=400)


_counting = threading.Lock()


def count(hit: bool) -> None:
    """Count an answer; under a lock, since ``/sync/delay`` counts from FastAPI's thread pool."""
    with _counting:
        fs.count(service, hit)


async def in_db_thread(function, *args):
    return await asyncio.get_running_loop().run_in_executor(state["db"], function, *args)


async def fill(route: fs.Route, key: str) -> dict:
    """A miss: look once more (another flight may have filled the key since), else query and set."""
    raw = await state["redis"].get(key)
    if raw is not None:
        return json.loads(raw)
    answer = await in_db_thread(fs.ask, service, route)
    await state["redis"].set(key, json.dumps(answer, separators=(",", ":")), ex=TTL)
    return answer


async def answer(origin: str, dest: str, month: str, merge: bool) -> dict:
    route = service.route(origin, dest, month)
    key = PREFIX + route.key()
    raw = await state["redis"].get(key)
    if raw is not None:
        count(hit=True)
        return json.loads(raw)
    result = await (state["flights"].do(key, lambda: fill(route, key)) if merge else fill(route, key))
    count(hit=False)
    return result


@app.get("/delay/{origin}/{dest}/{month}")
async def delay(origin: str, dest: str, month: str):
    return await answer(origin, dest, month, merge=True)


@app.get("/unmerged/delay/{origin}/{dest}/{month}")
async def delay_unmerged(origin: str, dest: str, month: str):
    return await answer(origin, dest, month, merge=False)


@app.get("/sync/delay/{origin}/{dest}/{month}")
def delay_sync(origin: str, dest: str, month: str):
    """The same cache-aside written as a plain ``def`` with redis-py's blocking client: FastAPI runs it in its
    thread pool (``run_in_threadpool``), so the event loop, the server and the connections stay the same as
    ``/delay``'s and only the handler differs. A miss runs the query in the database thread, without a
    single-flight."""
    route = service.route(origin, dest, month)
    key = PREFIX + route.key()
    raw = state["redis_sync"].get(key)
    if raw is not None:
        count(hit=True)
        return json.loads(raw)
    answer = state["db"].submit(fs.ask, service, route).result()
    state["redis_sync"].set(key, json.dumps(answer, separators=(",", ":")), ex=TTL)
    count(hit=False)
    return answer


@app.post("/flights", status_code=201)
async def flights(request: Request):
    try:
        body = await request.json()
    except ValueError:
        body = None
    route = await in_db_thread(fs.record, service, body)
    await state["redis"].delete(PREFIX + route.key())
    return {"recorded": route.key()}


@app.get("/health")
async def health():
    return {"ok": True, "pid": service.worker().pid, "mode": "fastapi"}


@app.get("/stats")
async def stats():
    flights = state["flights"]
    return {"pid": service.worker().pid, **service.worker().counters.as_dict(),
            "single_flight": {"started": flights.started, "merged": flights.merged}}
