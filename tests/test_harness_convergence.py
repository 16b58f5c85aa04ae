"""Convergence judgement and its explanation, without Docker."""

from harness import convergence


def entry(version, app="web", status="healthy", **extra):
    return {"app_name": app, "version": version, "last_update": 100 + version, "status": status, **extra}


def test_identical_digests_converge():
    report = convergence.check({"n1": ("aa", 2), "n2": ("aa", 2)})
    assert report.converged
    assert report.lagging() == []


def test_no_answer_is_not_converged():
    report = convergence.check({}, unreachable=["n1", "n2"])
    assert not report.converged
    assert report.explain() == "no node answered (asked: n1, n2)"


def test_majority_prefers_larger_group_then_lowest_node():
    assert convergence.majority({"n1": ("a", 1), "n2": ("b", 1), "n3": ("b", 1)}) == "n2"
    assert convergence.majority({"n3": ("a", 1), "n1": ("b", 1)}) == "n1"
    assert convergence.majority({}) is None


def test_explains_missing_extra_and_different_entries():
    ref = {"10.0.0.1:80": entry(1), "10.0.0.2:80": entry(3)}
    views = {
        "n1": ref,
        "n2": ref,
        "n3": {"10.0.0.2:80": entry(2, app="old-web"), "10.0.0.9:80": entry(1)},
    }
    digests = {"n1": ("aaa", 2), "n2": ("aaa", 2), "n3": ("bbb", 2)}
    report = convergence.check(digests, views)
    assert not report.converged
    assert report.reference == "n1"
    assert report.lagging() == ["n3"]
    diff = report.diffs["n3"]
    assert diff.missing == ["10.0.0.1:80"]
    assert diff.extra == ["10.0.0.9:80"]
    # Renewal counters (version, last_update) differ all the time; only the app is reported.
    assert diff.different["10.0.0.2:80"] == ({"app_name": "old-web"}, {"app_name": "web"})
    text = report.explain()
    assert "n3 lacks 10.0.0.1:80" in text
    assert "n3 has extra 10.0.0.9:80" in text
    assert "n3 disagrees on 10.0.0.2:80: app_name='old-web' vs majority app_name='web'" in text
    assert "digest aaa (2 entries): n1, n2" in text


def test_local_fields_are_not_disagreement():
    a = {"x:1": entry(1, status="healthy", seen_at=5)}
    b = {"x:1": entry(1, status="expired", seen_at=9)}
    assert not convergence.diff_view(a, b)


def test_expectations_fail_an_otherwise_converged_cluster():
    view = {"x:1": entry(1)}
    digests = {"n1": ("a", 1), "n2": ("a", 1)}
    report = convergence.check(digests, {"n1": view, "n2": view}, expect_present=["y:2"], expect_absent=["x:1"])
    assert not report.converged
    assert report.lacking == {"n1": ["y:2"], "n2": ["y:2"]}
    assert report.unwanted == {"n1": ["x:1"], "n2": ["x:1"]}
    assert "n1 lacks expected y:2" in report.explain()
    assert "n2 still lists x:1 (expected absent)" in report.explain()


def test_expectations_met_converge():
    view = {"y:2": entry(1)}
    report = convergence.check({"n1": ("a", 1)}, {"n1": view}, expect_present=["y:2"], expect_absent=["x:1"])
    assert report.converged


def test_unreachable_nodes_are_reported_but_do_not_block():
    report = convergence.check({"n1": ("a", 1), "n2": ("a", 1)}, unreachable=["n3"])
    assert report.converged
    assert "unreachable: n3" in report.explain()


def test_digest_difference_invisible_in_listing_is_said():
    view = {"x:1": entry(1)}
    report = convergence.check({"n1": ("a", 2), "n2": ("a", 2), "n3": ("b", 3)}, {"n1": view, "n2": view, "n3": view})
    assert report.lagging() == ["n3"]
    assert "n3 differs only in state not listed (e.g. tombstones)" in report.explain()


def test_detail_explains_tombstones_the_listing_hides():
    listing = {"x:1": entry(1)}
    full_ref = {"x:1": entry(1), "y:2": entry(4, deleted=True)}
    full_lag = {"x:1": entry(1), "y:2": entry(3, deleted=False)}
    report = convergence.check(
        {"n1": ("a", 2), "n2": ("a", 2), "n3": ("b", 2)},
        {"n1": listing, "n2": listing, "n3": {**listing, "y:2": entry(3)}},
        detail={"n1": full_ref, "n2": full_ref, "n3": full_lag},
    )
    assert report.diffs["n3"].different["y:2"][1]["deleted"] is True
    assert "n3 disagrees on y:2" in report.explain()
