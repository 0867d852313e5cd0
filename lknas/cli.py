"""`python -m lknas SUBCOMMAND`: the command-line front end.

Each subcommand is a small function taking the parsed arguments. User errors (`LknasError`) are
printed without a traceback and exit with code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from lknas.errors import LknasError


def _cmd_validate(args: argparse.Namespace) -> int:
    from lknas.space import load_space

    space = load_space(args.space)
    print(f"{space.file}: OK")
    print(space.summary())
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from lknas.space import load_space

    space = load_space(args.space)
    arch = space.sample(args.seed)
    text = arch.to_json() if args.json else arch.to_yaml()
    if args.out:
        from lknas.io import write_text_atomic

        write_text_atomic(args.out, text)
        print(f"wrote {args.out} (hash {arch.hash()}: {arch.summary()})")
    else:
        print(f"# {space.name} seed={args.seed} hash={arch.hash()}: {arch.summary()}")
        print(text, end="" if text.endswith("\n") else "\n")
    return 0


def _cmd_count(args: argparse.Namespace) -> int:
    from lknas.measure import complexity
    from lknas.models import build_model
    from lknas.space import load_arch

    arch = load_arch(args.arch)
    model = build_model(arch, num_classes=args.num_classes)
    result = complexity(model, resolution=args.resolution)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_complexity(args.arch, result))
    return 0


def format_complexity(name: str, result: dict) -> str:
    """Human-readable lines for `lknas count`."""
    lines = [f"{name} @ {result['resolution']}x{result['resolution']}"]
    lines.append(f"  params        {result['params'] / 1e6:10.2f} M   (training form)")
    lines.append(f"  params deploy {result['params_deploy'] / 1e6:10.2f} M   (reparameterized)")
    if "params_nonzero" in result:
        lines.append(
            f"  params nonzero{result['params_nonzero'] / 1e6:10.2f} M   "
            f"(density {result['density']:g} on {result['sparsity_targets']})"
        )
    lines.append(f"  FLOPs         {result['flops'] / 1e9:10.3f} G   (MACs of the deploy form)")
    if "flops_sparse" in result:
        lines.append(f"  FLOPs sparse  {result['flops_sparse'] / 1e9:10.3f} G   (non-zero weights only)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lknas",
        description="Architecture search and scaling studies for large-kernel ConvNets.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("validate", help="check a search-space file and summarize its dimensions")
    p.add_argument("space", help="space YAML (a bare name resolves to search_spaces/)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("sample", help="print one seeded ArchConfig of a space as YAML")
    p.add_argument("space", help="space YAML (a bare name resolves to search_spaces/)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    p.add_argument("--out", help="write the config to this file instead of stdout")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("count", help="params and FLOPs (fvcore MACs of the deploy form)")
    p.add_argument("arch", help="architecture YAML (a domain-free space or a sampled config)")
    p.add_argument("--resolution", type=int, default=224, help="input size (default 224)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier size (default 1000)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_count)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except LknasError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
