"""Domains: parsing a YAML value, sampling, Optuna suggestion, values/size/min/max."""
from __future__ import annotations

import random

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lknas.space.domains import (
    Choice, Constant, DomainSyntaxError, FloatRange, IntRange, parse_domain,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(
    "raw, expected",
    [
        (7, Constant(7)),
        ([13, 3], Constant([13, 3])),
        ({"type": "patch"}, Constant({"type": "patch"})),
        ({"choice": [3, 5]}, Choice((3, 5))),
        ({"choice": [[13, 3], 31]}, Choice(((13, 3), 31))),
        ({"int": [2, 8]}, IntRange(2, 8, 1)),
        ({"int": [3, 9], "step": 2}, IntRange(3, 9, 2)),
        ({"float": [0.1, 0.5]}, FloatRange(0.1, 0.5, False)),
        ({"float": [1e-4, 1e-2], "log": True}, FloatRange(1e-4, 1e-2, True)),
    ],
)
def test_parse_domain(raw, expected):
    assert parse_domain(raw) == expected


@pytest.mark.parametrize(
    "raw, paths",
    [
        ({"choice": []}, ["choice"]),
        ({"choice": 3}, ["choice"]),
        ({"choice": [3, 3]}, ["choice[1]"]),
        ({"int": [5, 3]}, ["int"]),
        ({"int": [1, 5], "step": 0}, ["step"]),
        ({"int": [1, 5], "step": -2}, ["step"]),
        ({"int": [1, 6], "step": 2}, ["int"]),
        ({"int": [1.5, 3]}, ["int[0]"]),
        ({"int": [True, 3]}, ["int[0]"]),
        ({"float": [0.0, 1.0], "log": True}, ["float[0]"]),
        ({"float": [-1.0, 1.0], "log": True}, ["float[0]"]),
        ({"float": [2.0, 1.0]}, ["float"]),
        ({"float": [1, 2], "step": 1}, ["step"]),
        ({"choice": [1], "int": [1, 2]}, [""]),
        ({"chioce": [1, 2]}, ["chioce"]),
    ],
)
def test_bad_domains_report_their_paths(raw, paths):
    with pytest.raises(DomainSyntaxError) as err:
        parse_domain(raw)
    assert [p for p, _ in err.value.problems] == paths


def test_values_size_min_max():
    assert IntRange(3, 9, 2).values() == [3, 5, 7, 9]
    assert IntRange(3, 9, 2).size() == 4
    assert (IntRange(3, 9, 2).min(), IntRange(3, 9, 2).max()) == (3, 9)
    assert Choice((5, 1, 3)).values() == [5, 1, 3]
    assert (Choice((5, 1, 3)).min(), Choice((5, 1, 3)).max()) == (1, 5)
    assert Choice(((13, 3), 31)).max() == 31
    assert FloatRange(0.1, 0.5).values() is None and FloatRange(0.1, 0.5).size() is None
    assert (FloatRange(0.1, 0.5).min(), FloatRange(0.1, 0.5).max()) == (0.1, 0.5)
    assert Constant(7).values() == [7] and Constant(7).size() == 1
    assert Choice((1, 2)).to_raw() == {"choice": [1, 2]}
    assert parse_domain(IntRange(3, 9, 2).to_raw()) == IntRange(3, 9, 2)
    assert parse_domain(FloatRange(1e-3, 1.0, True).to_raw()) == FloatRange(1e-3, 1.0, True)


@settings(max_examples=60, deadline=None)
@given(low=st.integers(-50, 50), n=st.integers(0, 20), step=st.integers(1, 5), seed=st.integers(0, 2**32))
def test_int_range_samples_are_members(low, n, step, seed):
    dom = IntRange(low, low + n * step, step)
    rng = random.Random(seed)
    for _ in range(5):
        assert dom.sample(rng) in dom.values()


@settings(max_examples=60, deadline=None)
@given(low=st.floats(1e-6, 10.0), span=st.floats(0.0, 100.0), log=st.booleans(), seed=st.integers(0, 2**32))
def test_float_range_samples_within_bounds(low, span, log, seed):
    dom = FloatRange(low, low + span, log)
    value = dom.sample(random.Random(seed))
    assert low * (1 - 1e-9) <= value <= (low + span) * (1 + 1e-9)


@settings(max_examples=30, deadline=None)
@given(options=st.lists(st.integers(-5, 5), min_size=1, max_size=6, unique=True), seed=st.integers(0, 2**32))
def test_choice_sampling_is_seeded(options, seed):
    dom = Choice(tuple(options))
    a = [dom.sample(random.Random(seed)) for _ in range(3)]
    assert a[0] in options and len(set(a)) == 1


def test_all_choice_values_reachable():
    dom = Choice((3, 5, 7))
    rng = random.Random(0)
    assert {dom.sample(rng) for _ in range(100)} == {3, 5, 7}


def test_suggest_uses_matching_distributions():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    assert Constant(4).suggest(trial, "c") == 4
    k = Choice(((13, 3), 31)).suggest(trial, "k")
    d = IntRange(2, 8, 2).suggest(trial, "d")
    lr = FloatRange(1e-4, 1e-2, log=True).suggest(trial, "lr")
    assert k in ((13, 3), 31) and d in (2, 4, 6, 8) and 1e-4 <= lr <= 1e-2
    dists = trial.distributions
    assert set(dists) == {"k", "d", "lr"}  # constants are never asked
    assert isinstance(dists["k"], optuna.distributions.CategoricalDistribution)
    assert dists["k"].choices == ("[13, 3]", 31)
    assert dists["d"] == optuna.distributions.IntDistribution(2, 8, step=2)
    assert dists["lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)


def test_choice_lists_are_capped():
    with pytest.raises(DomainSyntaxError) as err:
        parse_domain({"choice": list(range(200_000))})
    assert [p for p, _ in err.value.problems] == ["choice"]
    assert "200,000 values; at most 1,000" in err.value.problems[0][1]


class Probe:
    """A value that counts how often it is compared for equality."""

    eq_calls = 0

    def __init__(self, i):
        self.i = i

    def __hash__(self):
        return hash(self.i)

    def __eq__(self, other):
        Probe.eq_calls += 1
        return isinstance(other, Probe) and self.i == other.i


def test_duplicate_check_compares_each_value_about_once():
    """Quadratic pairwise comparison took minutes on long lists; hashing takes one pass."""
    Probe.eq_calls = 0
    assert len(parse_domain({"choice": [Probe(i) for i in range(1000)]}).options) == 1000
    assert Probe.eq_calls < 100


def test_duplicates_are_exact_values_of_the_same_type():
    with pytest.raises(DomainSyntaxError) as err:
        parse_domain({"choice": [1, 1.0, True, [13, 3], "1", [13, 3], 1]})
    assert [p for p, _ in err.value.problems] == ["choice[5]", "choice[6]"]
    assert "also choice[3]" in err.value.problems[0][1]


@pytest.mark.parametrize("raw, path", [
    ({"float": [0.0, float("inf")]}, "float[1]"),
    ({"float": [float("nan"), 1.0]}, "float[0]"),
    ({"float": [float("-inf"), 1.0]}, "float[0]"),
])
def test_range_bounds_must_be_finite(raw, path):
    with pytest.raises(DomainSyntaxError) as err:
        parse_domain(raw)
    assert [p for p, _ in err.value.problems] == [path]
