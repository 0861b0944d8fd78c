"""Notebook 08 pointed at a user's cluster (REDIS_CLUSTER_URL): it runs, and leaves that cluster as it was.

Its keys go under its prefix and are deleted; someone else's keys stay; and no node of that cluster is
killed, cut off or handed slots: the demos that do that run on a private cluster of the notebook's own.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from cachelab import paths
from cachelab.kit import runner
from cachelab.servers import cluster as cl

FOREIGN = {"user:precious": "do not touch", "cachelab": "no colon", "cachelab:someone-else:08_scale_out:k": "theirs"}


def shape(cluster) -> list[tuple[str, str, tuple]]:
    """Who serves which slots, and who replicates whom: what a failover or a reshard would change."""
    return sorted((n["id"], n["role"], tuple(n["slots"])) for n in cluster.topology())


@pytest.mark.notebook
def test_the_notebook_leaves_a_users_cluster_as_it_was(tmp_path, monkeypatch):
    with cl.start_cluster() as theirs:
        client = theirs.client()
        for key, value in FOREIGN.items():
            client.set(key, value)
        before = shape(theirs)
        host, port = theirs.startup_nodes[0]
        monkeypatch.setenv(cl.CLUSTER_URL_VAR, f"redis://:{quote(theirs.password, safe='')}@{host}:{port}")
        outcome = runner.execute(paths.notebooks_dir() / "08_scale_out.ipynb", quick=True,
                                 out_path=tmp_path / "08_scale_out.ipynb", results_dir=tmp_path / "results",
                                 figures_dir=tmp_path / "figures")
        assert outcome.ok, outcome.error
        assert all(n.alive() for n in theirs.nodes), "a node of the user's cluster was stopped"
        assert shape(theirs) == before, "the user's cluster failed over or had slots moved"
        for key, value in FOREIGN.items():
            assert client.get(key) == value, f"{key!r} was changed or deleted"
        leftovers = [k for host, port in theirs.primaries()
                     for k in theirs.node_client(host, port).scan_iter(match="*08_scale_out*")]
        assert leftovers == ["cachelab:someone-else:08_scale_out:k"], "the notebook left keys behind"
        text = (tmp_path / "08_scale_out.ipynb").read_text()
        assert "(environment)" in text, "the notebook should say it used the cluster given by REDIS_CLUSTER_URL"
