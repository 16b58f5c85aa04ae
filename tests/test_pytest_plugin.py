"""The pytest plugin as another project sees it: the README's example runs, clusters go at teardown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

pytest_plugins = ["pytester"]

# The README's example, verbatim: another project's test file.
EXAMPLE = '''
# test_discovery.py -- run with: pytest --gossip-backend sim   (or docker, swarm)
def test_a_registration_reaches_every_node(gossip_cluster):
    c = gossip_cluster(nodes=5, interval=0.2, fanout=3)
    c.register("n1", "10.0.0.1:8080", "web")
    c.wait_converged(timeout=10, expect_present=["10.0.0.1:8080"])

def test_a_cut_off_node_catches_up_after_heal(gossip_cluster):
    c = gossip_cluster()  # --gossip-nodes nodes (default 3)
    c.isolate("n1")
    c.register("n2", "10.0.0.2:8080", "db")
    c.heal()
    c.wait_converged(timeout=10, expect_present=["10.0.0.2:8080"])
'''


def test_the_example_is_the_readmes():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert EXAMPLE.strip() in readme


def test_the_readme_example_passes_on_the_simulator(pytester):
    pytester.makepyfile(test_discovery=EXAMPLE)
    result = pytester.runpytest("--gossip-backend", "sim", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_gossip_nodes_sets_the_default_size(pytester):
    pytester.makepyfile(test_size="""
        def test_size(gossip_cluster):
            assert len(gossip_cluster().nodes) == 4
            assert len(gossip_cluster(nodes=2).nodes) == 2
    """)
    pytester.runpytest("--gossip-backend", "sim", "--gossip-nodes", "4").assert_outcomes(passed=1)


def test_every_cluster_made_is_removed_even_when_the_test_fails(pytester):
    pytester.makeconftest("""
        import pytest
        import harness.pytest_plugin as plugin

        REMOVED = []

        class Recorded:
            def __init__(self, name):
                self.name = name
            def down(self):
                REMOVED.append(self.name)

        @pytest.fixture(autouse=True)
        def recorded(monkeypatch):
            made = iter("ab")
            monkeypatch.setattr(plugin, "make_cluster", lambda *a, **kw: Recorded(next(made)))
            yield
            print("removed:", REMOVED)
    """)
    pytester.makepyfile(test_fails="""
        def test_fails(gossip_cluster):
            gossip_cluster(), gossip_cluster()
            assert False, "on purpose"
    """)
    result = pytester.runpytest("-s")
    result.assert_outcomes(failed=1)
    assert "removed: ['b', 'a']" in result.stdout.str()  # both, the last made first


def test_an_unknown_backend_is_a_usage_error(pytester):
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest("--gossip-backend", "k8s")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--gossip-backend: invalid choice: 'k8s'*"])


def test_loading_the_plugin_imports_neither_docker_nor_the_node():
    code = ("import sys, harness.pytest_plugin; "
            "print(sorted(m for m in ('docker', 'requests', 'flask', 'node', 'harness.sim') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
