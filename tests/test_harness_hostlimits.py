"""The ARP table check that keeps large clusters from silently losing links."""

import pytest

from harness import hostlimits
from harness.hostlimits import HostLimitError, check_neighbour_table, neighbour_entries_needed, tune


@pytest.fixture
def neigh(tmp_path):
    """A stand-in for /proc/sys/net/ipv4/neigh/default with the kernel's defaults."""
    for name, value in (("gc_thresh1", 128), ("gc_thresh2", 512), ("gc_thresh3", 1024)):
        (tmp_path / name).write_text(f"{value}\n")
    return tmp_path


def test_a_mesh_needs_about_n_squared_entries():
    assert neighbour_entries_needed([40]) == 40 * 41 + hostlimits.MARGIN
    assert neighbour_entries_needed([10, 10]) == 2 * 110 + hostlimits.MARGIN


def test_small_clusters_fit_the_default_limit(neigh):
    check_neighbour_table(20, root=neigh)  # 420 + margin < 1024


def test_forty_nodes_overflow_the_default_limit_with_the_fix_in_the_message(neigh):
    with pytest.raises(HostLimitError) as err:
        check_neighbour_table(40, root=neigh)
    message = str(err.value)
    assert "1,024" in message and "gc_thresh3" in message and "sysctl -w" in message


def test_running_clusters_count_against_the_same_table(neigh):
    check_neighbour_table(25, root=neigh)
    with pytest.raises(HostLimitError, match="beside 1 running cluster"):
        check_neighbour_table(25, [20], root=neigh)


def test_tune_raises_the_limits_until_the_cluster_fits_and_never_lowers_them(neigh):
    changes = tune(40, root=neigh)
    assert len(changes) == 3
    assert int((neigh / "gc_thresh2").read_text()) >= neighbour_entries_needed([40])
    check_neighbour_table(40, root=neigh)
    (neigh / "gc_thresh3").write_text("65536\n")
    tune(40, root=neigh)
    assert (neigh / "gc_thresh3").read_text() == "65536\n"
    assert tune(40, root=neigh) == []


def test_no_check_where_the_table_cannot_be_read(tmp_path):
    check_neighbour_table(500, root=tmp_path / "missing")
