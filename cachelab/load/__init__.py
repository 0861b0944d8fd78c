"""Real load generators against the web app: wrk (closed loop) and locust (paced users at fixed offered
rates), placement, freshness."""
