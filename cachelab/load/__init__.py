"""Real load generators against the web app: wrk (closed loop) and k6 (open loop), placement, freshness."""
