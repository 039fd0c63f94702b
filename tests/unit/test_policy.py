"""The supervisor's policy, called directly: the restart budget, flapping that retries later, the reload plan."""

from __future__ import annotations

import pytest

from agentsight.pipeline.config import ComponentSpec, PipelineSpec, SupervisorSpec
from agentsight.runtime.policy import (
    ReloadPlan,
    RestartBudget,
    RestartHistory,
    RestartPolicy,
    Verdict,
    plan,
)

BUDGET = RestartBudget(max_restarts=3, window=60.0, retry_after=30.0)


def crash(policy: RestartPolicy, history: RestartHistory, now: float, ran_for: float = 1.0):
    d = policy.on_crash(history, now, ran_for)
    return d, d.history


def test_the_budget_comes_from_the_supervisor_section():
    b = RestartBudget.of(SupervisorSpec(max_restarts=2, restart_window=10.0, retry_after=5.0))
    assert (b.max_restarts, b.window, b.retry_after) == (2, 10.0, 5.0)
    assert RestartBudget.of(SupervisorSpec()) == RestartBudget()  # the defaults agree


def test_a_crash_is_restarted_after_a_backoff_that_doubles_up_to_its_cap():
    policy = RestartPolicy(RestartBudget(max_restarts=100))
    h, delays = RestartHistory(), []
    for i in range(8):
        d, h = crash(policy, h, now=float(i))
        assert d.verdict is Verdict.RESTART
        delays.append(d.delay)
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])
    assert h.restarts == 8


def test_a_process_that_ran_long_enough_starts_the_backoff_over():
    policy = RestartPolicy(RestartBudget(max_restarts=100))
    h = RestartHistory()
    for i in range(4):
        _, h = crash(policy, h, now=float(i))
    d, h = crash(policy, h, now=100.0, ran_for=10.5)
    assert d.delay == pytest.approx(0.1)
    d, h = crash(policy, h, now=101.0, ran_for=0.5)
    assert d.delay == pytest.approx(0.2)


def test_restarts_past_the_window_leave_the_budget():
    policy = RestartPolicy(BUDGET)
    h = RestartHistory()
    for now in (0.0, 10.0, 20.0):
        d, h = crash(policy, h, now)
        assert d.verdict is Verdict.RESTART
    # A minute after the first one, it no longer counts: two in the window, room for one more.
    d, h = crash(policy, h, now=60.5)
    assert d.verdict is Verdict.RESTART and d.recent == 2
    assert h.recent == (10.0, 20.0, 60.5) and h.restarts == 4


def test_too_many_restarts_in_the_window_back_off_then_retry_with_a_fresh_budget():
    policy = RestartPolicy(BUDGET)
    h = RestartHistory()
    for now in (0.0, 1.0, 2.0):
        d, h = crash(policy, h, now)
        assert d.verdict is Verdict.RESTART
    d, h = crash(policy, h, now=3.0)
    assert d.verdict is Verdict.BACKOFF and d.delay == 30.0 and d.recent == 3
    assert h == RestartHistory(restarts=3, recent=(), consecutive=0)  # the flapping itself is no restart
    # retry_after later it is started again: a restart, the first of the fresh budget.
    h = policy.on_retry(h, now=33.0)
    assert h.restarts == 4 and h.recent == (33.0,)
    # The fresh budget holds max_restarts - 1 more restarts, then it backs off again: never for good.
    verdicts = []
    for now in (34.0, 35.0, 36.0):
        d, h = crash(policy, h, now)
        verdicts.append(d.verdict)
    assert verdicts == [Verdict.RESTART, Verdict.RESTART, Verdict.BACKOFF]
    h = policy.on_retry(h, now=66.0)
    d, h = crash(policy, h, now=67.0)
    assert d.verdict is Verdict.RESTART and d.delay == pytest.approx(0.1)  # the backoff starts over too


def test_the_integration_tests_flapping_scenario_counts_three_restarts():
    """max_restarts = 2: two kills restarted, the third backs off, the retry is restart 3."""
    policy = RestartPolicy(RestartBudget(max_restarts=2, window=60.0, retry_after=2.0))
    h = RestartHistory()
    got = []
    for now in (0.0, 1.0, 2.0):
        d, h = crash(policy, h, now)
        got.append(d.verdict)
    assert got == [Verdict.RESTART, Verdict.RESTART, Verdict.BACKOFF] and d.delay == 2.0
    assert policy.on_retry(h, now=4.0).restarts == 3


def test_the_policy_is_pure():
    policy = RestartPolicy(BUDGET)
    h = RestartHistory(restarts=2, recent=(1.0, 2.0), consecutive=2)
    assert policy.on_crash(h, 3.0, 1.0) == policy.on_crash(h, 3.0, 1.0)
    assert h == RestartHistory(restarts=2, recent=(1.0, 2.0), consecutive=2)


# ------------------------------------------------------------------ reload plan
def spec(*comps: ComponentSpec) -> PipelineSpec:
    return PipelineSpec(name="t", components={c.name: c for c in comps})


GEN = ComponentSpec("source", "gen", "generator", {"rate": 10})
TAG = ComponentSpec("analyzer", "tag", "annotate", {"set": {"a": 1}}, inputs=["gen"], workers=2)
OUT = ComponentSpec("sink", "out", "jsonl", {"path": "a.jsonl"}, inputs=["tag"])


def with_(c: ComponentSpec, **changes) -> ComponentSpec:
    return ComponentSpec(**{**c.__dict__, **changes})


def test_the_same_spec_plans_nothing():
    p = plan(spec(GEN, TAG, OUT), spec(GEN, TAG, OUT))
    assert p == ReloadPlan() and not p


def test_added_and_removed_components_start_and_stop():
    extra = ComponentSpec("sink", "copy", "jsonl", {"path": "b.jsonl"}, inputs=["tag"])
    p = plan(spec(GEN, TAG, OUT), spec(GEN, TAG, extra))
    assert (p.start, p.stop, p.restart, p.reconfigure) == (("copy",), ("out",), (), ())


@pytest.mark.parametrize("change", [{"workers": 3}, {"type": "passthrough"}, {"partition_by": "data.k"}])
def test_what_an_instance_cannot_change_in_place_restarts_it(change):
    p = plan(spec(GEN, TAG, OUT), spec(GEN, with_(TAG, **change), OUT))
    assert p.restart == ("tag",) and p.reconfigure == () and p.changed == ("tag",)


@pytest.mark.parametrize("change", [{"options": {"set": {"a": 2}}}, {"inputs": ["gen", "other"]},
                                    {"publish": True}])
def test_any_other_change_is_applied_live(change):
    p = plan(spec(GEN, TAG, OUT), spec(GEN, with_(TAG, **change), OUT))
    assert p.reconfigure == ("tag",) and p.restart == ()


def test_a_plan_keeps_each_specs_order():
    a = ComponentSpec("sink", "a", "null", inputs=["tag"])
    b = ComponentSpec("sink", "b", "null", inputs=["tag"])
    p = plan(spec(GEN, TAG, OUT), spec(b, GEN, with_(TAG, workers=1), a, with_(OUT, options={})))
    assert p.start == ("b", "a") and p.restart == ("tag",) and p.reconfigure == ("out",)
