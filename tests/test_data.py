import numpy as np
import pytest

from cachelab import data


@pytest.fixture(scope="module")
def service():
    with data.FlightService() as s:
        yield s


def test_database_holds_every_flight(service):
    assert service.flight_count() == 336_776


def test_route_delay_answers_from_the_data(service):
    before = service.calls
    answer = service.route_delay("JFK", "LAX", 7)
    assert service.calls == before + 1
    assert answer["flights"] == 985
    assert answer["origin"] == "JFK" and answer["month"] == 7
    assert 0 <= answer["on_time_rate"] <= 1
    assert service.ask(data.Route("JFK", "LAX", 7)) == answer


def test_routes_are_ranked_busiest_first(service):
    routes = service.routes()
    counts = [service.route_delay(r.origin, r.dest, r.month)["flights"] for r in routes[:3]]
    assert counts == sorted(counts, reverse=True)
    assert len(routes) > 2000
    assert routes[0].key() == "JFK-LAX-07"


def test_all_route_delays_answers_as_route_delay_does_in_one_query(service):
    before = service.calls
    every = service.all_route_delays()
    assert service.calls == before + 1, "one query for every answer"
    routes = service.routes()
    assert set(every) == set(routes)
    cancelled = [r for r in routes if every[r]["cancelled"]]
    never_flown = [r for r in routes if every[r]["on_time_rate"] is None]  # every flight cancelled
    assert cancelled and never_flown
    sample = {routes[0], routes[1], routes[-1], routes[-2], routes[len(routes) // 2],
              *cancelled[:3], *cancelled[-2:], *never_flown[:2]}
    for route in sample:
        assert every[route] == service.ask(route), f"{route.key()}: the answers differ"


def test_all_route_delays_sees_new_rows(tmp_path):
    path = data.copy_database(tmp_path / "copy.sqlite")
    with data.FlightService(path, writable=True) as s:
        s.record_flight("LGA", "LAX", 6, 5.0)  # a route nobody flew in 2013
        every = s.all_route_delays()
        assert every[data.Route("LGA", "LAX", 6)] == s.route_delay("LGA", "LAX", 6)
        assert every[data.Route("LGA", "LAX", 6)]["flights"] == 1


def test_read_only_service_refuses_writes(service):
    with pytest.raises(Exception, match="readonly"):
        service.record_flight("JFK", "LAX", 7, 10.0)


def test_writable_copy_changes_answers(tmp_path):
    path = data.copy_database(tmp_path / "copy.sqlite")
    with data.FlightService(path, writable=True) as s:
        before = s.route_delay("JFK", "LAX", 7)["flights"]
        s.record_flight("JFK", "LAX", 7, 600.0)
        assert s.route_delay("JFK", "LAX", 7)["flights"] == before + 1


def test_bootstrap_ci_brackets_the_mean_and_is_seeded(service):
    delays = service.arrival_delays("JFK", "LAX")
    low, mean, high = data.bootstrap_ci(delays, n_boot=200, seed=1)
    assert low < mean < high
    assert mean == pytest.approx(float(np.mean(delays)))
    assert data.bootstrap_ci(delays, n_boot=200, seed=1) == (low, mean, high)


def test_bootstrap_ci_rejects_bad_input():
    with pytest.raises(ValueError):
        data.bootstrap_ci(np.array([]))
    with pytest.raises(ValueError):
        data.bootstrap_ci(np.ones(3), n_boot=0)
    with pytest.raises(ValueError):
        data.bootstrap_ci(np.ones(3), confidence=1.5)
