// k6 script of cachelab (notebook 07): open-loop load, one constant-arrival-rate scenario per offered
// rate, run one after the other. k6 starts each request on schedule whether or not earlier ones have
// returned (up to maxVUs in flight); a request it could not start for want of a free VU is counted in
// dropped_iterations instead of being silently delayed. Usage:
//   CACHELAB_K6_CONFIG=config.json k6 run --no-usage-report --quiet open_loop.js
// config.json: {"base": "http://127.0.0.1:PORT", "paths": "paths.txt", "summary": "summary.json",
//               "stages": [{"name": "s0", "rate": 20, "seconds": 2}, ...], "max_vus": 200, "timeout": "10s"}
// The summary file holds k6's end-of-test summary with, for every stage, the percentiles of its own
// http_req_duration (the thresholds below exist to make k6 report each stage's sub-metrics; they always pass).
import http from 'k6/http';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';

const config = JSON.parse(open(__ENV.CACHELAB_K6_CONFIG));
// One copy of the paths for every VU (SharedArray), read once.
const paths = new SharedArray('paths', () => open(config.paths).split('\n').filter((line) => line.length > 0));

const scenarios = {};
const thresholds = {};
let start = 0;
for (const stage of config.stages) {
  scenarios[stage.name] = {
    executor: 'constant-arrival-rate',
    rate: stage.rate,
    timeUnit: '1s',
    duration: `${stage.seconds}s`,
    startTime: `${start}s`,
    preAllocatedVUs: config.max_vus,
    maxVUs: config.max_vus,
    gracefulStop: config.timeout,
  };
  start += stage.seconds;
  thresholds[`http_req_duration{scenario:${stage.name}}`] = ['max>=0'];
  thresholds[`http_reqs{scenario:${stage.name}}`] = ['count>=0'];
  thresholds[`http_req_failed{scenario:${stage.name}}`] = ['rate>=0'];
  thresholds[`dropped_iterations{scenario:${stage.name}}`] = ['count>=0'];
}

export const options = {
  scenarios,
  thresholds,
  summaryTrendStats: ['min', 'med', 'avg', 'p(90)', 'p(99)', 'max', 'count'],
  discardResponseBodies: true,
};

http.setResponseCallback(http.expectedStatuses({ min: 200, max: 299 }));  // anything else is a failure

export default function () {
  const i = exec.scenario.iterationInTest;
  http.get(config.base + paths[i % paths.length], { timeout: config.timeout });
}

export function handleSummary(data) {
  return { [config.summary]: JSON.stringify(data) };
}
