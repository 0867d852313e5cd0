"""`validate` warns about choices that are one network at the proxy resolution and about
constraints that never bind; a valid space with warnings still loads and runs."""
from __future__ import annotations

import textwrap

from lknas.cli import main
from lknas.space import load_space


def _space(tmp_path, kernels0="[3, 13, 31, 51]", kernels1="[3, 7]", resolution=64, constraints="{}"):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: advice
        stem: {{type: patch}}
        block: convnext
        stages:
          - {{depth: 1, width: 8, kernel: {{choice: {kernels0}}}}}
          - {{depth: 1, width: 16, kernel: {{choice: {kernels1}}}}}
        constraints: {constraints}
        train: {{dataset: pathfinder, resolution: {resolution}}}
        """))
    return path


def test_equivalent_kernel_choices_are_named(tmp_path):
    warnings = load_space(_space(tmp_path)).warnings()
    assert len(warnings) == 1
    w = warnings[0]
    assert w.path == "stages[0].kernel" and "31 and 51 are the same kernel at 64 px" in w.message
    assert "16x16" in w.message and "31x31" in w.message


def test_later_stages_use_their_smaller_maps(tmp_path):
    warnings = load_space(_space(tmp_path, kernels0="[3, 13]", kernels1="[3, 15, 17]")).warnings()
    assert [w.path for w in warnings] == ["stages[1].kernel"]  # 8x8 map: 15 and 17 both apply 15
    assert "15 and 17" in warnings[0].message


def test_no_warning_when_the_resolution_lets_every_choice_matter(tmp_path):
    assert load_space(_space(tmp_path, resolution=128)).warnings() == []  # 32x32 map: up to 63


def test_a_max_params_above_the_largest_model_never_binds(tmp_path):
    warnings = load_space(_space(tmp_path, kernels0="[3, 7]", constraints="{max_params: 100M}")).warnings()
    assert [w.path for w in warnings] == ["constraints.max_params"] and "never" in warnings[0].message
    assert load_space(_space(tmp_path, kernels0="[3, 7]", constraints="{max_params: 10k}")).warnings() == []


def test_validate_prints_them_and_still_succeeds(tmp_path, capsys):
    assert main(["validate", str(_space(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "warning:" in out and "stages[0].kernel" in out


def test_the_bundled_spaces_have_no_equivalent_choices():
    from lknas.space.loader import bundled_spaces

    for name in bundled_spaces():
        if name.startswith("reference/"):
            continue
        space = load_space(name)
        assert not [w for w in space.warnings() if w.path.endswith(".kernel")], (name, space.warnings())
