"""The searcher keeps one trial sampled ahead when the node's resources bound the concurrency,
and never more trials running than `--max-concurrent` asks for; `trial_slots` is what every Tune
call site (search, confirm, scaling study) takes as its default concurrency."""
from lknas.search.cluster import trial_slots
from lknas.search.runner import suggest_ahead


def test_trial_slots_cpu_and_gpu():
    assert trial_slots(1, 0, {"CPU": 2.0}) == 2
    assert trial_slots(1, 0.5, {"CPU": 16.0, "GPU": 1.0}) == 2
    assert trial_slots(2, 0, {"CPU": 1.0}) == 1  # never 0: Ray reports the trial as infeasible itself


def test_one_ahead_when_resources_bound():
    # 2 CPUs, 1 per trial: Ray runs 2, the third suggestion waits pending for a freed slot
    assert suggest_ahead(2, trial_slots(1, 0, {"CPU": 2.0})) == 3


def test_exact_when_max_concurrent_binds():
    # --max-concurrent 1 on a 2-CPU node: a second suggestion would run at once, so none ahead
    assert suggest_ahead(1, trial_slots(1, 0, {"CPU": 2.0})) == 1
