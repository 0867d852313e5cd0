"""`python -m lknas SUBCOMMAND`: the command-line front end.

Each subcommand is a small function taking the parsed arguments. `main` is the one error boundary:

- a flag value outside its documented range (see `lknas.cli_args`) is refused by argparse, exit 2;
- an expected failure (`LknasError`: a bad file, data set, device, cluster, ...) prints
  `error: <message>` naming what to change, exit 2;
- anything else is a bug: `error: unexpected ExcType: message (run with --debug for the
  traceback)`, exit 1; `--debug` prints the traceback;
- Ctrl-C: exit 130.

When a command fails (exit 1 or 2), the run directories it created and that hold no results yet
are removed (`lknas.io.remove_unfinished_run_dirs`), so a refused search leaves nothing behind.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from lknas import cli_args as A
from lknas.errors import LknasError
from lknas.space.configs import OBJECTIVE_MODES, SAMPLERS, SCHEDULERS

# the --data values (lknas.data.base.KINDS, which imports torch; a test keeps the two in step)
DATA_HELP = ("pointer | match | pathfinder | shapes (each with :key=value,...) | imagefolder:PATH | cifar10:PATH | "
             "cifar100:PATH")

EXIT_CODES = "exit codes: 0 done; 2 a user error (the message says what to change); 1 an unexpected error " \
             "(--debug shows its traceback); 130 interrupted"


def _cmd_validate(args: argparse.Namespace) -> int:
    from lknas.space import load_space

    space = load_space(args.space)
    print(f"{space.file}: OK")
    print(space.summary())
    for warning in space.warnings():
        print(f"warning: {warning}")
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


def _measure_resolution(args: argparse.Namespace, space) -> int:
    """`count` and `latency`'s input size: --resolution, else 224 (the papers' ImageNet size). A file that
    records another training resolution (an exported search result: the size its search metrics were
    measured at) gets a note on stderr saying how to repeat those."""
    if args.resolution is not None:
        return args.resolution
    train = space.raw.get("train")
    provenance = space.raw.get("provenance")
    measured = provenance.get("measured_with") if isinstance(provenance, dict) else None
    measured = measured if isinstance(measured, dict) else {}
    searched = measured.get("resolution", train.get("resolution") if isinstance(train, dict) else None)
    if isinstance(searched, int) and searched != 224:
        flags = f"--resolution {searched}"
        n = measured.get("num_classes")  # the classifier is counted and timed too
        flags += f" --num-classes {n}" if isinstance(n, int) else " and --num-classes with its data set's classes"
        print(f"note: {args.arch} was measured at {searched} px in its search; this measures at 224, the "
              f"ImageNet size: add {flags} to repeat the search's numbers", file=sys.stderr)
    return 224


def _cmd_count(args: argparse.Namespace) -> int:
    from lknas.measure import complexity
    from lknas.models import build_model
    from lknas.space import load_space

    space = load_space(args.arch)
    arch = space.fixed()
    args.resolution = _measure_resolution(args, space)
    model = build_model(arch, num_classes=args.num_classes)
    result = complexity(model, resolution=args.resolution)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_complexity(args.arch, result))
    return 0


def _arch_and_train(args: argparse.Namespace):
    """The ArchConfig of `--arch` and the TrainConfig of its file's `train` section (defaults when
    absent), overridden by the command's flags."""
    from lknas.space import load_space

    space = load_space(args.arch)
    arch = space.fixed()
    overrides = {
        key: getattr(args, key) for key in
        ("dataset", "epochs", "steps", "batch_size", "lr", "resolution", "subset", "time_limit", "seed")
        if getattr(args, key, None) is not None
    }
    cfg = space.train.replace(**overrides)
    if not cfg.is_fixed:
        cfg = space.sample_train(cfg.seed)
    return arch, cfg


def _cmd_train_proxy(args: argparse.Namespace) -> int:
    from lknas.data import parse_spec
    from lknas.measure import measure_trial
    from lknas.status import TrialStatus

    arch, cfg = _arch_and_train(args)
    parse_spec(cfg.dataset)  # a misspelt name fails before the banner names it as the data set
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print(f"training {arch.summary()} on {cfg.dataset} @ {cfg.resolution}px: "
          f"{cfg.steps or cfg.epochs} {'steps' if cfg.steps else 'epochs'}, batch {cfg.batch_size}, lr {cfg.lr:g}",
          file=sys.stderr, flush=True)
    metrics = measure_trial(arch, cfg, device=args.device, latency=not args.no_latency, erf=not args.no_erf,
                            progress=True)
    print(json.dumps(metrics, indent=2))
    if not TrialStatus(metrics["status"]).trained:
        hint = "; lower --batch-size or --resolution" if metrics["status"] == TrialStatus.OOM else ""
        raise LknasError(f"the trial ended with status {metrics['status']}: {metrics.get('error') or ''}{hint}")
    return 0


def _cmd_latency(args: argparse.Namespace) -> int:
    from lknas.measure import measure_latency
    from lknas.space import load_space

    space = load_space(args.arch)
    arch = space.fixed()
    args.resolution = _measure_resolution(args, space)
    result = measure_latency(arch, args.resolution, batch_size=args.batch_size,
                             throughput_batch=args.throughput_batch or None, device=args.device,
                             threads=args.threads, repeats=args.repeats, num_classes=args.num_classes)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        threads = f", {result['threads']} threads" if result["threads"] else ""
        print(f"{args.arch} @ {args.resolution}x{args.resolution} on {result['device']}{threads} (deploy form)")
        print(f"  latency     {result['latency_ms']:10.3f} ms   (batch {result['batch']}, median of {result['repeats']} "
              f"runs paired with the reference net; plain median {result['raw_ms']:.3f} ms, layout {result['layout']})")
        if result["throughput"]:
            print(f"  throughput  {result['throughput']:10.1f} img/s (batch {result['throughput_batch']})")
    return 0


def _cmd_erf(args: argparse.Namespace) -> int:
    from lknas.data import build_data
    from lknas.measure import effective_receptive_field
    from lknas.measure.erf import erf_resolution
    from lknas.models import build_model

    arch, cfg = _arch_and_train(args)
    bundle = build_data(cfg.dataset, resolution=cfg.resolution, batch_size=cfg.batch_size, seed=cfg.seed)
    if args.epochs:
        from lknas.train import train_proxy

        result = train_proxy(arch, cfg, bundle, progress=True, keep_model=True)
        if result.model is None:
            raise LknasError(f"training ended with status {result.status} ({result.error}); no ERF to measure")
        model = result.model
    else:
        import torch

        torch.manual_seed(cfg.seed)
        model = build_model(arch, num_classes=bundle.num_classes, in_chans=bundle.in_chans)
    size = args.erf_resolution or erf_resolution(model, cfg.resolution)
    result = effective_receptive_field(model, bundle.val, max_images=args.images, resolution=size)
    state = f"after {args.epochs} epochs" if args.epochs else "at initialization"
    print(f"ERF of {arch.summary()} {state}, {result.images} {cfg.dataset} images resized to {size}px")
    for t, ratio in result.ratios.items():
        print(f"  t = {t:4.0%}   area ratio {ratio:.4f}")
    if args.out:
        from lknas.report.erf import write_erf_png

        title = (f"ERF of {Path(args.arch).stem} ({arch.summary()}) {state}: {result.images} {cfg.dataset} "
                 f"images at {size}x{size} px")
        print(write_erf_png(result, args.out, title))
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from lknas.search.runner import parse_objectives_flag, run_search

    if bool(args.space) == bool(args.resume):
        raise LknasError("give either --space SPACE.yaml (a new search) or --resume results/RUN (continue one)")
    overrides = dict(
        trials=args.trials, sampler=args.sampler, scheduler=args.scheduler, grace_period=args.grace_period,
        reduction_factor=args.reduction_factor, seed=args.seed,
        epochs=args.epochs, steps=args.steps, dataset=args.dataset, subset=args.subset,
        batch_size=args.batch_size, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent, time_budget=args.time_budget, address=args.address, from_=args.from_,
        ray_storage=args.ray_storage, confirm=args.confirm, retime=args.retime, trial_seeds=args.trial_seeds,
        objectives=parse_objectives_flag(args.objectives) if args.objectives else None,
    )
    outcome = run_search(args.space, resume=args.resume, out=args.out, quiet=args.quiet, **overrides)
    return _run_exit_code(outcome, search=True)


def _run_exit_code(outcome, search: bool) -> int:
    """A search's or scale study's exit code: 130 interrupted, 1 (with the first error) when every
    trial that ran raised, else 0."""
    from lknas.search.runner import all_trials_raised

    if outcome.interrupted:
        return 130
    failed = all_trials_raised(outcome.trials, Path(outcome.run_dir), search=search)
    if failed:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    return 0


def _cmd_scale(args: argparse.Namespace) -> int:
    from lknas.study.runner import run_scale

    outcome = run_scale(args.experiment, out=args.out, seeds=args.seeds, epochs=args.epochs, steps=args.steps,
                        dataset=args.dataset, address=args.address, cpus_per_trial=args.cpus_per_trial,
                        gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent, quiet=args.quiet)
    return _run_exit_code(outcome, search=False)


def _cmd_fidelity(args: argparse.Namespace) -> int:
    from lknas.study.fidelity import run_fidelity

    if not args.space and not (args.out and _is_run(args.out)):
        raise LknasError("give --space SPACE.yaml (a new measurement) or --out RUN of one to continue")
    stats = run_fidelity(args.space, out=args.out, archs=args.archs, seeds=args.seeds, target_seeds=args.target_seeds,
                         sample_seed=args.sample_seed,
                         factor=args.factor, epochs=args.epochs, steps=args.steps, dataset=args.dataset,
                         target_epochs=args.target_epochs, target_steps=args.target_steps,
                         target_resolution=args.target_resolution, target_dataset=args.target_data,
                         proxy_set=args.proxy_set, target_set=args.target_set, target_from=args.target_from,
                         reuse_from=args.reuse_from,
                         address=args.address, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                         max_concurrent=args.max_concurrent, quiet=args.quiet)
    print(f"results: {stats['run_dir']} (fidelity.json, trials.csv, summary.txt); "
          f"figures: python -m lknas report {stats['run_dir']}")
    return 130 if stats.get("interrupted") else 0


def _is_run(path: str) -> bool:
    return (Path(path) / "jobs.json").is_file()


def _cmd_report(args: argparse.Namespace) -> int:
    from lknas.report import write_report

    result = write_report(args.run, png=not args.no_png, erf=not args.no_erf, compare=args.compare or ())
    print(f"wrote {result.html}")
    print(result.png_message)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from lknas.models.registry import model_name_for
    from lknas.search.export import export_archs

    files = export_archs(args.run, args.out, pareto=args.pareto, trial=args.trial, best=args.best)
    for f in files:
        print(f"wrote {f}  (timm: {model_name_for(f)} once registered)")
    print(f"use them with timm: LKNAS_ARCH_PATH={files[0].parent} python -c \"import lknas, timm; "
          f"timm.create_model('{model_name_for(files[0])}', num_classes=10)\"")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from lknas.demo import run_demo

    run_demo(args.out, trials=args.trials, steps=args.steps, png=not args.no_png)
    return 0


def _file_dataset(space) -> str:
    """The `train.dataset` an architecture file carries (search results and exports do)."""
    train = space.raw.get("train")
    if isinstance(train, dict) and isinstance(train.get("dataset"), str):
        return train["dataset"]
    raise LknasError(f"{space.file} names no data set (no train.dataset): give one with --data, e.g. "
                     f"--data imagefolder:PATH or --data cifar10:PATH")


def _train_resolution(args: argparse.Namespace, space, data_from_file: bool) -> int:
    """`lknas train`'s input size: --resolution; else, on the file's own data set, the resolution the
    search measured the architecture at (its kernel choices were made for those map sizes); else 224."""
    if args.resolution is not None:
        return args.resolution
    train = space.raw.get("train")
    if data_from_file and isinstance(train, dict) and isinstance(train.get("resolution"), int):
        return train["resolution"]
    return 224


def _cmd_train(args: argparse.Namespace) -> int:
    from lknas.data import build_data
    from lknas.space import load_space
    from lknas.train.full import TrainRecipe, check_recipe, train_full

    space = load_space(args.arch)
    arch = space.fixed()
    data_from_file = args.dataset is None
    if data_from_file:
        args.dataset = _file_dataset(space)
    recipe = TrainRecipe(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs, mixup=args.mixup, cutmix=args.cutmix,
        auto_augment=None if args.aa in ("", "none") else args.aa, drop_path=args.drop_path,
        model_ema=not args.no_ema, resolution=_train_resolution(args, space, data_from_file), seed=args.seed,
        **({"workers": args.workers} if args.workers is not None else {}),
    )
    check_recipe(recipe)  # a policy timm does not know fails before the data is scanned
    bundle = build_data(args.dataset, resolution=recipe.resolution, batch_size=recipe.batch_size, seed=recipe.seed,
                        subset=args.subset, augment=recipe.auto_augment or True, workers=recipe.workers)
    out = args.out or str(Path("results") / "train" / f"{Path(args.arch).stem}-{arch.hash()}")
    print(f"training {arch.summary()} on {bundle.name} ({bundle.train_size} images, {bundle.num_classes} classes) "
          f"@ {recipe.resolution}px for {recipe.epochs} epochs into {out}", file=sys.stderr, flush=True)
    summary = train_full(arch, bundle, recipe, out, resume=args.resume, device=args.device)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    from lknas.train.deploy import deploy_checkpoint

    result = deploy_checkpoint(args.checkpoint, args.out, resolution=args.resolution, export=args.export,
                               threads=args.threads)
    print(f"wrote {result['checkpoint']}" + (f" and {result['export']}" if "export" in result else ""))
    print(f"  {result['arch']} @ {result['resolution']}x{result['resolution']}")
    print(f"  params      {result['params'] / 1e6:10.3f} M (deploy form)")
    print(f"  FLOPs       {result['flops'] / 1e9:10.4f} G (MACs)")
    threads = f", {result['threads']} threads" if result.get("threads") else ""
    print(f"  latency     {result['latency_ms']:10.3f} ms (batch 1, {result['device']}{threads})")
    if result.get("throughput"):
        print(f"  throughput  {result['throughput']:10.1f} img/s (batch {result['throughput_batch']})")
    return 0


def _num(p: argparse.ArgumentParser, flag: str, number: A.Number, help: str, **kw) -> None:
    """A numeric flag: its type refuses values outside `number`'s range, its help shows the range."""
    p.add_argument(flag, type=number, help=A.with_range(help, number), **kw)


def _file_arg(p: argparse.ArgumentParser, flag: str, help: str, required: bool = True) -> None:
    """The command's input file, accepted either way: `lknas validate SPACE.yaml` or `lknas validate
    --space SPACE.yaml` (a user who ran `search --space` tries it on `validate` next). `main` joins
    the two into `args.<name>` (`_join_file_arg`)."""
    name = flag.lstrip("-")
    meta = name.upper()
    p.add_argument(f"{name}_positional", nargs="?", metavar=meta, help=f"{help} (or {flag} {meta})")
    p.add_argument(flag, metavar=meta, help=f"{help} (or as the first argument)")
    p.set_defaults(_file_arg=(name, required, p))


def _join_file_arg(args: argparse.Namespace) -> None:
    """`args.<name>` from whichever form `_file_arg` took; a usage error (exit 2) if the file is
    missing or given twice with two different values."""
    name, required, parser = getattr(args, "_file_arg", (None, False, None))
    if name is None:
        return
    positional, flag = getattr(args, f"{name}_positional"), getattr(args, name)
    if positional and flag and positional != flag:
        parser.error(f"the {name} is given twice ({positional} and --{name} {flag}): give it once")
    setattr(args, name, flag or positional)
    if required and not getattr(args, name):
        parser.error(f"the following arguments are required: {name.upper()} (or --{name} {name.upper()})")


def _add_train_flags(p: argparse.ArgumentParser, epochs: A.Number = A.EPOCHS, epochs_default: int | None = None) -> None:
    _file_arg(p, "--arch", "architecture YAML (its `train` section gives the defaults)")
    p.add_argument("--data", dest="dataset", help=DATA_HELP)
    _num(p, "--epochs", epochs, "training epochs", default=epochs_default)
    _num(p, "--steps", A.STEPS, "training steps (overrides --epochs)")
    _num(p, "--batch-size", A.BATCH, "batch size")
    _num(p, "--lr", A.LR, "peak learning rate")
    _num(p, "--resolution", A.RESOLUTION, "input size (synthetic data: 32 to 256)")
    _num(p, "--subset", A.SUBSET, "use at most this many training images")
    _num(p, "--time-limit", A.SECONDS, "stop training after this many seconds")
    _num(p, "--seed", A.SEED, "seed of data, init and order")


def _confirm_flag(text: str) -> int | str:
    from lknas.space.configs import parse_confirm
    from lknas.space.fields import Invalid

    try:
        return parse_confirm(text)
    except Invalid as err:
        raise argparse.ArgumentTypeError(err.message) from None


def _add_ray_flags(p: argparse.ArgumentParser) -> None:
    """Where the trials run (search and scale): resources per trial, concurrency, the Ray cluster."""
    _num(p, "--cpus-per-trial", A.CPUS, "CPUs per trial, at most a node's (default 1)")
    _num(p, "--gpus-per-trial", A.GPUS, "GPUs per trial, fractions allowed, at most a node's (default 0)")
    _num(p, "--max-concurrent", A.CONCURRENT, "trials at once (default: CPUs / cpus-per-trial)")
    p.add_argument("--address", help="an existing Ray cluster: 'auto' or HOST:PORT (default: a local Ray); "
                   "refused within seconds when no cluster answers there")


def format_complexity(name: str, result: dict) -> str:
    """Human-readable lines for `lknas count`."""
    lines = [f"{name} @ {result['resolution']}x{result['resolution']}"]
    lines.append(f"  params        {result['params'] / 1e6:10.2f} M   (training form)")
    lines.append(f"  params deploy {result['params_deploy'] / 1e6:10.2f} M   (reparameterized)")
    if "params_nonzero" in result:
        lines.append(
            f"  params nonzero{result['params_nonzero'] / 1e6:10.2f} M   "
            f"(density {result['density']:g} on {result['sparsity_targets']}, "
            f"{result['sparsity_init']} layer densities)"
        )
    lines.append(f"  FLOPs         {result['flops'] / 1e9:10.3f} G   (MACs of the deploy form)")
    if "flops_sparse" in result:
        lines.append(f"  FLOPs sparse  {result['flops_sparse'] / 1e9:10.3f} G   (non-zero weights only)")
    if result.get("kernels_applied") and result["kernels_applied"] != result.get("kernels"):
        kernels = "-".join(map(str, result["kernels"]))
        applied = "-".join(map(str, result["kernels_applied"]))
        lines.append(f"  applied       kernels {applied} of {kernels}: larger ones reach only padding at "
                     f"{result['resolution']}px")
        lines.append(f"  FLOPs applied {result['flops_applied'] / 1e9:10.3f} G   (the kernels as applied"
                     + (f"; sparse {result['flops_sparse_applied'] / 1e9:.3f} G)" if "flops_sparse_applied" in result
                        else ")"))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    debug = argparse.ArgumentParser(add_help=False)  # --debug also after the subcommand
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="print the traceback of an unexpected error")
    parser = argparse.ArgumentParser(
        prog="python -m lknas",
        description="Architecture search and scaling studies for large-kernel ConvNets.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[debug], epilog=EXIT_CODES)

    p = command("demo", "the 2-minute tour: a tiny search, its report, an export and a re-training")
    p.add_argument("--out", type=A.out_dir, help="directory for all of it (default results/demo-DATE-TIME)")
    _num(p, "--trials", A.TRIALS, "search trials (default 4)")
    _num(p, "--steps", A.STEPS, "proxy training steps a trial (default 60)")
    p.add_argument("--no-png", action="store_true", help="skip the report's static PNGs")
    p.set_defaults(func=_cmd_demo)

    p = command("validate", "check a search-space file and summarize its dimensions")
    _file_arg(p, "--space", "space YAML (a bare name resolves to search_spaces/)")
    p.set_defaults(func=_cmd_validate)

    p = command("sample", "print one seeded ArchConfig of a space as YAML")
    _file_arg(p, "--space", "space YAML (a bare name resolves to search_spaces/)")
    _num(p, "--seed", A.SEED, "sampling seed (default 0)", default=0)
    p.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    p.add_argument("--out", type=A.out_file, help="write the config to this file instead of stdout")
    p.set_defaults(func=_cmd_sample)

    p = command("count", "params and FLOPs (fvcore MACs of the deploy form)")
    _file_arg(p, "--arch", "architecture YAML (a domain-free space or a sampled config)")
    _num(p, "--resolution", A.RESOLUTION, "input size, at least the architecture's total stride (default 224)")
    _num(p, "--num-classes", A.NUM_CLASSES, "classifier size (default 1000)", default=1000)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_count)

    p = command("search", "multi-objective architecture search (Ray Tune + Optuna)")
    _file_arg(p, "--space", "space YAML (a bare name resolves to search_spaces/)", required=False)
    p.add_argument("--resume", metavar="RUN", help="continue the search in results/RUN (a flag that would change "
                   "what it searches is refused)")
    _num(p, "--trials", A.TRIALS, "number of trials (space: search.trials)")
    p.add_argument("--sampler", choices=SAMPLERS, help="Optuna sampler (space: search.sampler)")
    p.add_argument("--objectives", help="each once, e.g. accuracy,latency or accuracy:max,flops:min; any of "
                   f"{', '.join(OBJECTIVE_MODES)} (space: search.objectives)")
    p.add_argument("--scheduler", choices=SCHEDULERS, help="fifo; asha: early-stop on the first objective; moasha: "
                   "early-stop on every objective (non-dominated sorting at each rung) (space: search.scheduler)")
    _num(p, "--grace-period", A.EPOCHS, "asha/moasha: epochs before a trial can be stopped (space: "
         "search.grace_period, default 1)")
    _num(p, "--reduction-factor", A.REDUCTION_FACTOR, "asha/moasha: the top 1/FACTOR of each rung continues "
         "(space: search.reduction_factor, default 2)")
    _num(p, "--epochs", A.EPOCHS, "proxy epochs per trial (space: train.epochs)")
    _num(p, "--steps", A.STEPS, "proxy steps per trial (overrides --epochs)")
    p.add_argument("--data", dest="dataset", help=DATA_HELP)
    _num(p, "--subset", A.SUBSET, "use at most this many training images")
    _num(p, "--batch-size", A.BATCH, "proxy batch size")
    _num(p, "--seed", A.SEED, "sampler seed (space: search.seed)")
    p.add_argument("--out", type=A.out_dir, help="run directory (default results/SPACE-DATE-TIME)")
    _add_ray_flags(p)
    p.add_argument("--ray-storage", help="Ray Tune's experiment storage (default results/RUN/ray); on a multi-node "
                   "cluster a shared path (NFS) or a cloud URI (s3://...)")
    _num(p, "--time-budget", A.SECONDS, "stop starting trials after this many seconds")
    p.add_argument("--from", dest="from_", metavar="FILE_OR_RUN",
                   help="evaluate these first: an architecture YAML, a directory of them, or a run's Pareto set")
    p.add_argument("--confirm", type=_confirm_flag, metavar="N|auto",
                   help="re-train the Pareto set with N extra seeds after the search (0..10; default auto: 2 or 1 "
                        "when that costs at most 30%% of the search, else 1 for the most accurate members that fit)")
    _num(p, "--retime", A.RETIME, "after the search, time the architectures near the latency front again on the "
         "idle node, in this many interleaved rounds; the front uses their mean (default 3; 0: off)", metavar="N")
    _num(p, "--trial-seeds", A.TRIAL_SEEDS, "train every trial with N seeds and rank it by their mean accuracy (space: "
         "search.trial_seeds, default 1): for a proxy that `lknas fidelity` finds noisy; N times the cost", metavar="N")
    p.add_argument("--quiet", action="store_true", help="log lines instead of the live progress view")
    p.add_argument("--verbose", action="store_true", help="keep Ray's own hints (token authentication, Tuner.restore)")
    p.set_defaults(func=_cmd_search)

    p = command("export", "write found architectures as self-contained YAMLs (with provenance)")
    p.add_argument("run", help="a search run directory (results/RUN)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pareto", action="store_true", help="every architecture of the Pareto set")
    which.add_argument("--trial", type=A.TRIAL_ID, help=A.with_range("one trial by number", A.TRIAL_ID))
    which.add_argument("--best", metavar="OBJECTIVE", choices=tuple(OBJECTIVE_MODES),
                       help=f"the best trial by one of {', '.join(OBJECTIVE_MODES)}")
    p.add_argument("--out", type=A.out_dir, help="directory to write (default RUN/export)")
    p.set_defaults(func=_cmd_export)

    p = command("train", "full training recipe (timm): augmentation, mixup, EMA, checkpoints, deploy")
    _file_arg(p, "--arch", "architecture YAML (e.g. from `lknas export`)")
    p.add_argument("--data", dest="dataset",
                   help=f"{DATA_HELP} (default: the "
                        "file's train.dataset, as a search result or export carries it)")
    _num(p, "--epochs", A.EPOCHS, "epochs (default 300)", default=300)
    _num(p, "--batch-size", A.BATCH, "batch size (default 128)", default=128)
    _num(p, "--lr", A.LR, "peak lr (default 4e-3 * batch / 4096)")
    _num(p, "--weight-decay", A.WEIGHT_DECAY, "AdamW weight decay (default 0.05)", default=0.05)
    _num(p, "--warmup-epochs", A.WARMUP, "linear warm-up epochs (default 20)", default=20)
    _num(p, "--mixup", A.MIX_ALPHA, "mixup alpha, 0 to disable (default 0.8)", default=0.8)
    _num(p, "--cutmix", A.MIX_ALPHA, "cutmix alpha, 0 to disable (default 1.0)", default=1.0)
    p.add_argument("--aa", default="rand-m9-mstd0.5-inc1", help="timm auto-augment policy, 'none' to disable")
    _num(p, "--drop-path", A.DROP_RATE, "stochastic depth (default: the architecture's)")
    p.add_argument("--no-ema", action="store_true", help="no model EMA")
    _num(p, "--resolution", A.RESOLUTION, "input size (default: the file's train.resolution when the data set "
         "is the file's, as the search measured it; else 224)")
    _num(p, "--subset", A.SUBSET, "use at most this many training images")
    _num(p, "--workers", A.WORKERS, "data loader workers (default: one per core, at most 4)")
    _num(p, "--seed", A.SEED, "seed (default 0)", default=0)
    p.add_argument("--device", type=A.device, default="auto", help="cpu | cuda | cuda:N | auto (default)")
    p.add_argument("--out", type=A.out_dir, help="output directory (default results/train/ARCH-HASH)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint-last.pt")
    p.set_defaults(func=_cmd_train)

    p = command("deploy", "write the reparameterized deploy form of a checkpoint and measure it")
    p.add_argument("checkpoint", help="a checkpoint written by `lknas train` (checkpoint-last.pt or deploy.pt)")
    p.add_argument("--out", type=A.out_file, required=True, help="deploy checkpoint to write (e.g. model.pt)")
    p.add_argument("--export", choices=("export", "onnx"), help="also write a torch.export program or ONNX")
    _num(p, "--resolution", A.RESOLUTION, "input size for the deploy form, FLOPs and latency (default: the "
         "resolution the checkpoint was trained at; 224 for one that does not record it)")
    _num(p, "--threads", A.THREADS, "CPU threads for the latency")
    p.set_defaults(func=_cmd_deploy)

    p = command("scale", "scaling study: kernel, depth, width, resolution one at a time (Ray Tune)")
    p.add_argument("--experiment", help="experiment YAML (e.g. experiments/kernel_types.yaml)")
    p.add_argument("--out", type=A.out_dir,
                   help="run directory (default results/NAME-DATE-TIME); an existing study continues")
    _num(p, "--seeds", A.SEEDS, "seeds per point (experiment: seeds); with --out of a study, adds the missing seeds")
    _num(p, "--epochs", A.EPOCHS, "proxy epochs per trial (experiment: train.epochs)")
    _num(p, "--steps", A.STEPS, "proxy steps per trial (overrides --epochs)")
    p.add_argument("--data", dest="dataset", help="one data set instead of the experiment's datasets")
    _add_ray_flags(p)
    p.add_argument("--quiet", action="store_true", help="log lines instead of the live progress view")
    p.add_argument("--verbose", action="store_true", help="keep Ray's own hints (token authentication, Tuner.restore)")
    p.set_defaults(func=_cmd_scale)

    p = command("fidelity", "rank agreement of the proxy budget with a larger one, and its seed noise")
    _file_arg(p, "--space", "space YAML (a bare name resolves to search_spaces/)", required=False)
    _num(p, "--archs", A.FIDELITY_ARCHS, "architectures sampled from the space (default 12)", default=12)
    _num(p, "--seeds", A.FIDELITY_SEEDS, "seeds per architecture and budget (default 2)", default=2)
    _num(p, "--target-seeds", A.FIDELITY_SEEDS, "seeds per architecture at the target budget (default: --seeds): "
         "fewer than --seeds measures how many averaged proxy runs rank like the target without paying for more "
         "target runs; more gives a steadier target when its seeds disagree (see the noise ceiling line)")
    _num(p, "--sample-seed", A.SEED, "seed of the architecture sample (default 0)", default=0)
    _num(p, "--epochs", A.EPOCHS, "proxy budget in epochs (default: the space's train section)")
    _num(p, "--steps", A.STEPS, "proxy budget in steps (overrides --epochs)")
    p.add_argument("--data", dest="dataset", help="proxy data set (default: the space's)")
    _num(p, "--factor", A.BUDGET_FACTOR, "target budget = factor x the proxy's (default 4)", default=4.0)
    _num(p, "--target-epochs", A.EPOCHS, "target budget in epochs (instead of --factor)")
    _num(p, "--target-steps", A.STEPS, "target budget in steps (instead of --factor)")
    _num(p, "--target-resolution", A.RESOLUTION, "target input size (default: the proxy's)")
    p.add_argument("--target-data", help="target data set, e.g. with more images (default: the proxy's)")
    p.add_argument("--proxy-set", metavar="KEY=VALUE", action="append",
                   help="a train setting of the proxy half only, e.g. warmup_epochs=0.1 or lr=1e-3 (repeatable): "
                        "another proxy recipe against the same target (with --target-from)")
    p.add_argument("--target-set", metavar="KEY=VALUE", action="append",
                   help="a train setting of the target half only (repeatable), e.g. curriculum_fraction=0.3: "
                        "the recipe earlier target trials were trained with, so they are reused")
    p.add_argument("--target-from", metavar="RUN",
                   help="an earlier fidelity run whose target trials are reused where they are exactly this "
                        "run's (another proxy budget against the same target)")
    p.add_argument("--reuse-from", metavar="RUN", action="append",
                   help="an earlier fidelity run (or a trials .jsonl file of one) whose trials (both budgets) are "
                        "reused where they are exactly this run's: more --archs or --seeds than it measured train "
                        "only the new jobs; repeat it to reuse several")
    p.add_argument("--out", type=A.out_dir,
                   help="run directory (default results/fidelity-SPACE-DATE-TIME); an existing one continues")
    _add_ray_flags(p)
    p.add_argument("--quiet", action="store_true", help="log lines instead of the live progress view")
    p.add_argument("--verbose", action="store_true", help="keep Ray's own hints (token authentication, Tuner.restore)")
    p.set_defaults(func=_cmd_fidelity)

    p = command("report", "plots and report.html of a search or scaling run")
    p.add_argument("run", help="run directory, e.g. results/peleK_space-20261122-101500")
    p.add_argument("--no-png", action="store_true", help="skip the static PNGs (figures/)")
    p.add_argument("--no-erf", action="store_true", help="skip the ERF heatmaps")
    p.add_argument("--compare", nargs="+", metavar="RUN", help="other runs (spaces) to compare by error EDF")
    p.set_defaults(func=_cmd_report)

    p = command("train-proxy", "train one architecture on a proxy task and print its metrics as JSON")
    _add_train_flags(p)
    p.add_argument("--device", type=A.device, default="auto", help="cpu | cuda | cuda:N | auto (default)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--no-erf", action="store_true", help="skip the effective receptive field")
    _num(p, "--threads", A.THREADS, "CPU threads for training (default: torch's setting; a search trial "
                                    "trains with its --cpus-per-trial, 1 by default)")
    p.set_defaults(func=_cmd_train_proxy)

    p = command("latency", "latency and throughput of the deploy (reparameterized) form")
    _file_arg(p, "--arch", "architecture YAML")
    _num(p, "--resolution", A.RESOLUTION, "input size, at least the architecture's total stride (default 224)")
    _num(p, "--batch-size", A.BATCH, "latency batch (default 1)", default=1)
    _num(p, "--num-classes", A.NUM_CLASSES, "classifier size (default 1000, as count)", default=1000)
    _num(p, "--throughput-batch", A.THROUGHPUT_BATCH, "throughput batch, 0 to skip (default 32)", default=32)
    p.add_argument("--device", type=A.device, default="cpu", help="cpu (default), cuda or cuda:N")
    _num(p, "--threads", A.THREADS, "CPU threads (default: torch's current setting)")
    _num(p, "--repeats", A.REPEATS, "timed runs; the median is reported (default 20)", default=20)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_latency)

    p = command("erf", "effective receptive field (RepLKNet's area ratios) and a heatmap PNG")
    _add_train_flags(p, epochs=A.ERF_EPOCHS, epochs_default=0)
    _num(p, "--images", A.IMAGES, "images to aggregate (default 32)", default=32)
    _num(p, "--erf-resolution", A.RESOLUTION,
         "measure at this input size (default: the last feature map gets >= 8 cells a side)")
    p.add_argument("--out", type=A.out_file, help="write the heatmap to this PNG")
    p.set_defaults(func=_cmd_erf)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (see the module docstring). Bad flags exit through
    argparse (SystemExit 2)."""
    from lknas.io import forget_run_dirs, remove_unfinished_run_dirs

    parser = build_parser()
    args = parser.parse_args(argv)
    _join_file_arg(args)
    debug = getattr(args, "debug", False) or os.environ.get("LKNAS_DEBUG", "") not in ("", "0")
    func: Callable[[argparse.Namespace], int] = args.func
    if hasattr(args, "verbose") and not args.verbose:
        from lknas.ray_messages import filter_ray_hints

        filter_ray_hints()
    try:
        from lknas.ops.allocator import keep_freed_memory

        keep_freed_memory()  # steady CPU timings in this process (LKNAS_MALLOC=system: off)
        code = func(args)
    except LknasError as err:
        remove_unfinished_run_dirs()
        if debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        forget_run_dirs()  # an interrupted run can be resumed: keep it
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: say so briefly; --debug has the traceback
        remove_unfinished_run_dirs()
        if debug:
            traceback.print_exc()
        text = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
        print(f"error: unexpected {type(err).__name__}: {text} (run with --debug for the traceback)"
              if not debug else f"error: unexpected {type(err).__name__}: {text}", file=sys.stderr)
        return 1
    forget_run_dirs()
    return code


if __name__ == "__main__":
    sys.exit(main())
