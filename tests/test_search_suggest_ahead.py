"""The searcher keeps one trial sampled ahead when the node's resources bound the concurrency,
and never more trials running than `--max-concurrent` asks for."""
from lknas.search.runner import resource_slots, suggest_ahead


def test_resource_slots_cpu_and_gpu():
    assert resource_slots({"CPU": 2.0}, 1, 0) == 2
    assert resource_slots({"CPU": 16.0, "GPU": 1.0}, 1, 0.5) == 2
    assert resource_slots({"CPU": 1.0}, 2, 0) == 1  # never 0: Ray reports the trial as infeasible itself


def test_one_ahead_when_resources_bound():
    # 2 CPUs, 1 per trial: Ray runs 2, the third suggestion waits pending for a freed slot
    assert suggest_ahead(2, {"CPU": 2.0}, 1, 0) == 3


def test_exact_when_max_concurrent_binds():
    # --max-concurrent 1 on a 2-CPU node: a second suggestion would run at once, so none ahead
    assert suggest_ahead(1, {"CPU": 2.0}, 1, 0) == 1
