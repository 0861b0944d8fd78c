"""The GitHub workflow runs what ``.ci/run`` runs, and the README's commands: the three are kept in step."""

from __future__ import annotations

import re
import tomllib

import yaml

from cachelab import paths

ROOT = paths.project_root()
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def steps(job: str) -> list[str]:
    flow = yaml.safe_load(WORKFLOW.read_text())
    return [step.get("run", "") for step in flow["jobs"][job]["steps"]]


def test_the_workflow_runs_ci_run_and_the_unit_tests():
    assert any(re.search(r"(^|\s)\./\.ci/run\b", run) for run in steps("series")), "the series job runs .ci/run"
    assert "make test-fast" in steps("unit")


def test_ci_run_ends_with_the_readmes_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    readme = (ROOT / "README.md").read_text()
    assert ci[-1].strip() == "make test"
    assert re.search(r"^make test\s+#", readme, re.M), "the README's quick start gives `make test`"


def test_the_workflow_uses_the_compose_servers_and_the_oldest_supported_python():
    flow = yaml.safe_load(WORKFLOW.read_text())
    assert "docker compose up -d --wait" in steps("series"), "servers from docker-compose.yml, as a reader's Docker"
    oldest = re.search(r">=\s*(3\.\d+)", tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                       ["requires-python"]).group(1)
    for job in flow["jobs"].values():
        versions = [s["with"]["python-version"] for s in job["steps"] if "setup-python" in s.get("uses", "")]
        assert versions == [oldest], versions


def test_the_prose_licence_and_citation_are_there():
    assert (ROOT / "LICENSE-prose").read_text().startswith("Creative Commons Attribution 4.0 International")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and {"MIT", "CC-BY-4.0"} <= set(citation["license"])
