"""A fast first contact: `--help` and `validate` import no heavy package, and the lazy imports
that make that possible keep `import lknas` complete (public names, timm models)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lknas
from lknas.lazy import after_import, lazy_exports
from lknas.models.registry import model_name_for
from lknas.space.loader import bundled_dir

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "ray", "optuna", "pandas", "plotly", "torchvision")


def _heavy_modules_after(*argv: str) -> dict:
    """Run `python -m lknas ARGV` in a fresh interpreter; the heavy packages it imported, and its exit code."""
    code = textwrap.dedent(f"""
        import json, runpy, sys
        sys.argv = ["lknas", *{list(argv)!r}]
        try:
            runpy.run_module("lknas", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code
        print(json.dumps({{"code": code, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}),
              file=sys.stderr)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    return json.loads(out.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [("--help",), ("validate", "peleK_space.yaml"), ("search", "--help")])
def test_first_contact_imports_no_heavy_package(argv):
    result = _heavy_modules_after(*argv)
    assert result == {"code": 0, "heavy": []}


def test_every_subcommand_help_imports_no_heavy_package():
    code = textwrap.dedent(f"""
        import contextlib, io, sys
        from lknas.cli import build_parser, main
        action = next(a for a in build_parser()._actions if a.dest == "command")
        for name in action.choices:
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    main([name, "--help"])
                except SystemExit:
                    pass
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_reference_archs_are_timm_models_when_timm_comes_after_lknas():
    expected = sorted(model_name_for(p) for p in (bundled_dir() / "reference").glob("*.yaml"))
    code = ("import sys, lknas; assert 'timm' not in sys.modules; import timm; "
            "print(','.join(sorted(timm.list_models('lknas_*'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().split(",") == expected


def test_every_public_name_resolves():
    for name in lknas.__all__:
        assert getattr(lknas, name) is not None
    assert set(lknas.__all__) <= set(dir(lknas))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lknas.nope  # noqa: B018


def _fake_package(tmp_path, monkeypatch, name: str, body: str = "VALUE = 1\n") -> None:
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_after_import_runs_once_the_package_body_has_run(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, "lknas_fake_a")
    seen = []
    after_import("lknas_fake_a", lambda: seen.append(sys.modules["lknas_fake_a"].VALUE))
    assert seen == []
    import lknas_fake_a

    assert seen == [1]
    assert lknas_fake_a.__spec__.loader.__class__.__name__ == "SourceFileLoader"
    after_import("lknas_fake_a", lambda: seen.append("now"))  # already imported: runs at once
    assert seen == [1, "now"]


def test_after_import_callback_failure_does_not_break_the_import(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, "lknas_fake_b")

    def boom():
        raise RuntimeError("bad registry")

    after_import("lknas_fake_b", boom)
    with pytest.warns(UserWarning, match="bad registry"):
        import lknas_fake_b
    assert lknas_fake_b.VALUE == 1


def test_lazy_exports_import_the_module_on_first_access(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, "lknas_fake_c", "from lknas.lazy import lazy_exports\n"
                  "__getattr__, __dir__ = lazy_exports(__name__, {'X': 'lknas_fake_c.heavy'})\n")
    (tmp_path / "lknas_fake_c" / "heavy.py").write_text("X = 42\n")
    monkeypatch.delitem(sys.modules, "lknas_fake_c.heavy", raising=False)
    import lknas_fake_c

    assert "lknas_fake_c.heavy" not in sys.modules and "X" in dir(lknas_fake_c)
    assert lknas_fake_c.X == 42 and "lknas_fake_c.heavy" in sys.modules
    with pytest.raises(AttributeError, match="has no attribute 'Y'"):
        lknas_fake_c.Y  # noqa: B018
