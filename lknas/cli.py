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

SAMPLER_CHOICES = ("tpe", "nsga2", "nsga3", "gp", "random", "qmc", "grid", "cmaes")


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
    from lknas.measure import measure_trial

    arch, cfg = _arch_and_train(args)
    print(f"training {arch.summary()} on {cfg.dataset} @ {cfg.resolution}px: "
          f"{cfg.steps or cfg.epochs} {'steps' if cfg.steps else 'epochs'}, batch {cfg.batch_size}, lr {cfg.lr:g}",
          file=sys.stderr, flush=True)
    metrics = measure_trial(arch, cfg, device=args.device, latency=not args.no_latency, erf=not args.no_erf,
                            progress=True)
    print(json.dumps(metrics, indent=2))
    return 0 if metrics["status"] in ("ok", "stopped") else 1


def _cmd_latency(args: argparse.Namespace) -> int:
    from lknas.measure import measure_latency
    from lknas.space import load_arch

    arch = load_arch(args.arch)
    result = measure_latency(arch, args.resolution, batch_size=args.batch_size,
                             throughput_batch=args.throughput_batch or None, device=args.device,
                             threads=args.threads, repeats=args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        threads = f", {result['threads']} threads" if result["threads"] else ""
        print(f"{args.arch} @ {args.resolution}x{args.resolution} on {result['device']}{threads} (deploy form)")
        print(f"  latency     {result['latency_ms']:10.3f} ms   (batch {result['batch']}, median of {result['repeats']})")
        if result["throughput"]:
            print(f"  throughput  {result['throughput']:10.1f} img/s (batch {result['throughput_batch']})")
    return 0


def _cmd_erf(args: argparse.Namespace) -> int:
    from lknas.data import build_data
    from lknas.measure import effective_receptive_field, save_heatmap
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
        print(f"wrote {save_heatmap(result.heatmap, args.out)}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from lknas.search.runner import parse_objectives_flag, run_search

    if bool(args.space) == bool(args.resume):
        raise LknasError("give either --space SPACE.yaml (a new search) or --resume results/RUN (continue one)")
    overrides = dict(
        trials=args.trials, sampler=args.sampler, scheduler=args.scheduler, seed=args.seed,
        epochs=args.epochs, steps=args.steps, dataset=args.dataset, subset=args.subset,
        batch_size=args.batch_size, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent, time_budget=args.time_budget, address=args.address, from_=args.from_,
        ray_storage=args.ray_storage, confirm=args.confirm,
        objectives=parse_objectives_flag(args.objectives) if args.objectives else None,
    )
    outcome = run_search(args.space, resume=args.resume, out=args.out, quiet=args.quiet, **overrides)
    return 130 if outcome.interrupted else 0


def _cmd_scale(args: argparse.Namespace) -> int:
    from lknas.study.runner import run_scale

    outcome = run_scale(args.experiment, out=args.out, seeds=args.seeds, epochs=args.epochs, steps=args.steps,
                        dataset=args.dataset, address=args.address, cpus_per_trial=args.cpus_per_trial,
                        gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent, quiet=args.quiet)
    return 130 if outcome.interrupted else 0


def _cmd_fidelity(args: argparse.Namespace) -> int:
    from lknas.study.fidelity import run_fidelity

    if not args.space and not (args.out and _is_run(args.out)):
        raise LknasError("give --space SPACE.yaml (a new measurement) or --out RUN of one to continue")
    stats = run_fidelity(args.space, out=args.out, archs=args.archs, seeds=args.seeds, sample_seed=args.sample_seed,
                         factor=args.factor, epochs=args.epochs, steps=args.steps, dataset=args.dataset,
                         target_epochs=args.target_epochs, target_steps=args.target_steps,
                         target_resolution=args.target_resolution, target_dataset=args.target_data,
                         address=args.address, cpus_per_trial=args.cpus_per_trial,
                         gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent, quiet=args.quiet)
    print(f"results: {stats['run_dir']} (fidelity.json, trials.csv, summary.txt); "
          f"figures: python -m lknas report {stats['run_dir']}")
    return 130 if stats.get("interrupted") else 0


def _is_run(path: str) -> bool:
    from pathlib import Path

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


def _cmd_train(args: argparse.Namespace) -> int:
    from lknas.data import build_data
    from lknas.space import load_arch
    from lknas.train.full import TrainRecipe, train_full

    arch = load_arch(args.arch)
    recipe = TrainRecipe(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs, mixup=args.mixup, cutmix=args.cutmix,
        auto_augment=None if args.aa in ("", "none") else args.aa, drop_path=args.drop_path,
        model_ema=not args.no_ema, resolution=args.resolution, workers=args.workers, seed=args.seed,
    )
    bundle = build_data(args.dataset, resolution=recipe.resolution, batch_size=recipe.batch_size, seed=recipe.seed,
                        subset=args.subset, augment=recipe.auto_augment or True, workers=recipe.workers)
    from pathlib import Path

    out = args.out or str(Path("results") / "train" / f"{Path(args.arch).stem}-{arch.hash()}")
    print(f"training {arch.summary()} on {bundle.name} ({bundle.train_size} images, {bundle.num_classes} classes) "
          f"for {recipe.epochs} epochs into {out}", file=sys.stderr, flush=True)
    summary = train_full(arch, bundle, recipe, out, resume=args.resume, device=args.device)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    from lknas.train.deploy import deploy_checkpoint

    result = deploy_checkpoint(args.checkpoint, args.out, resolution=args.resolution, export=args.export,
                               threads=args.threads)
    print(f"wrote {result['checkpoint']}" + (f" and {result['export']}" if "export" in result else ""))
    print(f"  {result['arch']} @ {args.resolution}x{args.resolution}")
    print(f"  params      {result['params'] / 1e6:10.3f} M (deploy form)")
    print(f"  FLOPs       {result['flops'] / 1e9:10.4f} G (MACs)")
    threads = f", {result['threads']} threads" if result.get("threads") else ""
    print(f"  latency     {result['latency_ms']:10.3f} ms (batch 1, {result['device']}{threads})")
    if result.get("throughput"):
        print(f"  throughput  {result['throughput']:10.1f} img/s (batch {result['throughput_batch']})")
    return 0


def _add_train_flags(p: argparse.ArgumentParser, epochs_default: int | None = None) -> None:
    p.add_argument("--arch", required=True, help="architecture YAML (its `train` section gives the defaults)")
    p.add_argument("--data", dest="dataset", help="pathfinder | shapes | imagefolder:PATH | cifar10:PATH | cifar100:PATH")
    p.add_argument("--epochs", type=int, default=epochs_default, help="training epochs")
    p.add_argument("--steps", type=int, help="training steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, help="batch size")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--resolution", type=int, help="input size")
    p.add_argument("--subset", type=int, help="use at most this many training images")
    p.add_argument("--time-limit", type=float, help="stop training after this many seconds")
    p.add_argument("--seed", type=int, help="seed of data, init and order")


def _confirm_flag(text: str) -> int | str:
    from lknas.space.configs import parse_confirm
    from lknas.space.fields import Invalid

    try:
        return parse_confirm(text)
    except Invalid as err:
        raise argparse.ArgumentTypeError(err.message) from None


def _add_ray_flags(p: argparse.ArgumentParser) -> None:
    """Where the trials run (search and scale): resources per trial, concurrency, the Ray cluster."""
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default 1)")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions allowed (default 0)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: CPUs / cpus-per-trial)")
    p.add_argument("--address", help="an existing Ray cluster: 'auto' or HOST:PORT (default: a local Ray)")


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

    p = sub.add_parser("search", help="multi-objective architecture search (Ray Tune + Optuna)")
    p.add_argument("--space", help="space YAML (a bare name resolves to search_spaces/)")
    p.add_argument("--resume", metavar="RUN", help="continue the search in results/RUN")
    p.add_argument("--trials", type=int, help="number of trials (space: search.trials)")
    p.add_argument("--sampler", choices=SAMPLER_CHOICES, help="Optuna sampler (space: search.sampler)")
    p.add_argument("--objectives", help="e.g. accuracy,latency or accuracy:max,flops:min (space: search.objectives)")
    p.add_argument("--scheduler", choices=("fifo", "asha"), help="fifo, or asha: early-stop on the first objective")
    p.add_argument("--epochs", type=int, help="proxy epochs per trial (space: train.epochs)")
    p.add_argument("--steps", type=int, help="proxy steps per trial (overrides --epochs)")
    p.add_argument("--data", dest="dataset", help="pathfinder | shapes | imagefolder:PATH | cifar10:PATH | cifar100:PATH")
    p.add_argument("--subset", type=int, help="use at most this many training images")
    p.add_argument("--batch-size", type=int, help="proxy batch size")
    p.add_argument("--seed", type=int, help="sampler seed (space: search.seed)")
    p.add_argument("--out", help="run directory (default results/SPACE-DATE-TIME)")
    _add_ray_flags(p)
    p.add_argument("--ray-storage", help="Ray Tune's experiment storage (default results/RUN/ray); on a multi-node "
                   "cluster a shared path (NFS) or a cloud URI (s3://...)")
    p.add_argument("--time-budget", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--from", dest="from_", metavar="FILE_OR_RUN",
                   help="evaluate these first: an architecture YAML, a directory of them, or a run's Pareto set")
    p.add_argument("--confirm", type=_confirm_flag, metavar="N|auto",
                   help="re-train the Pareto set with N extra seeds after the search (0..10; default auto: 2 or 1 "
                        "when that costs at most 30%% of the search)")
    p.add_argument("--quiet", action="store_true", help="log lines instead of the live progress view")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("export", help="write found architectures as self-contained YAMLs (with provenance)")
    p.add_argument("run", help="a search run directory (results/RUN)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pareto", action="store_true", help="every architecture of the Pareto set")
    which.add_argument("--trial", type=int, help="one trial by number")
    which.add_argument("--best", metavar="OBJECTIVE", help="the best trial by accuracy, latency, params, flops or erf")
    p.add_argument("--out", help="directory to write (default RUN/export)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("train", help="full training recipe (timm): augmentation, mixup, EMA, checkpoints, deploy")
    p.add_argument("--arch", required=True, help="architecture YAML (e.g. from `lknas export`)")
    p.add_argument("--data", dest="dataset", required=True,
                   help="imagefolder:PATH | cifar10:PATH | cifar100:PATH | pathfinder | shapes")
    p.add_argument("--epochs", type=int, default=300, help="epochs (default 300)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=float, help="peak lr (default 4e-3 * batch / 4096)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default 0.05)")
    p.add_argument("--warmup-epochs", type=float, default=20, help="linear warm-up epochs (default 20)")
    p.add_argument("--mixup", type=float, default=0.8, help="mixup alpha, 0 to disable (default 0.8)")
    p.add_argument("--cutmix", type=float, default=1.0, help="cutmix alpha, 0 to disable (default 1.0)")
    p.add_argument("--aa", default="rand-m9-mstd0.5-inc1", help="timm auto-augment policy, 'none' to disable")
    p.add_argument("--drop-path", type=float, help="stochastic depth (default: the architecture's)")
    p.add_argument("--no-ema", action="store_true", help="no model EMA")
    p.add_argument("--resolution", type=int, default=224, help="input size (default 224)")
    p.add_argument("--subset", type=int, help="use at most this many training images")
    p.add_argument("--workers", type=int, default=4, help="data loader workers (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default)")
    p.add_argument("--out", help="output directory (default results/train/ARCH-HASH)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint-last.pt")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("deploy", help="write the reparameterized deploy form of a checkpoint and measure it")
    p.add_argument("checkpoint", help="a checkpoint written by `lknas train` (checkpoint-last.pt or deploy.pt)")
    p.add_argument("--out", required=True, help="deploy checkpoint to write (e.g. model.pt)")
    p.add_argument("--export", choices=("export", "onnx"), help="also write a torch.export program or ONNX")
    p.add_argument("--resolution", type=int, default=224, help="input size for FLOPs and latency (default 224)")
    p.add_argument("--threads", type=int, help="CPU threads for the latency")
    p.set_defaults(func=_cmd_deploy)

    p = sub.add_parser("scale", help="scaling study: kernel, depth, width, resolution one at a time (Ray Tune)")
    p.add_argument("--experiment", help="experiment YAML (e.g. experiments/kernel_types.yaml)")
    p.add_argument("--out", help="run directory (default results/NAME-DATE-TIME); an existing study continues")
    p.add_argument("--seeds", type=int, help="seeds per point (experiment: seeds)")
    p.add_argument("--epochs", type=int, help="proxy epochs per trial (experiment: train.epochs)")
    p.add_argument("--steps", type=int, help="proxy steps per trial (overrides --epochs)")
    p.add_argument("--data", dest="dataset", help="one data set instead of the experiment's datasets")
    _add_ray_flags(p)
    p.add_argument("--quiet", action="store_true", help="log lines instead of the live progress view")
    p.set_defaults(func=_cmd_scale)

    p = sub.add_parser("fidelity", help="rank agreement of the proxy budget with a larger one, and its seed noise")
    p.add_argument("--space", help="space YAML (a bare name resolves to search_spaces/)")
    p.add_argument("--archs", type=int, default=12, help="architectures sampled from the space (default 12)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per architecture and budget (default 2)")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the architecture sample (default 0)")
    p.add_argument("--epochs", type=int, help="proxy budget in epochs (default: the space's train section)")
    p.add_argument("--steps", type=int, help="proxy budget in steps (overrides --epochs)")
    p.add_argument("--data", dest="dataset", help="proxy data set (default: the space's)")
    p.add_argument("--factor", type=float, default=4.0, help="target budget = factor x the proxy's (default 4)")
    p.add_argument("--target-epochs", type=int, help="target budget in epochs (instead of --factor)")
    p.add_argument("--target-steps", type=int, help="target budget in steps (instead of --factor)")
    p.add_argument("--target-resolution", type=int, help="target input size (default: the proxy's)")
    p.add_argument("--target-data", help="target data set, e.g. with more images (default: the proxy's)")
    p.add_argument("--out", help="run directory (default results/fidelity-SPACE-DATE-TIME); an existing one continues")
    _add_ray_flags(p)
    p.add_argument("--quiet", action="store_true", help="log lines instead of the live progress view")
    p.set_defaults(func=_cmd_fidelity)

    p = sub.add_parser("report", help="plots and report.html of a search or scaling run")
    p.add_argument("run", help="run directory, e.g. results/peleK_space-20261122-101500")
    p.add_argument("--no-png", action="store_true", help="skip the static PNGs (figures/)")
    p.add_argument("--no-erf", action="store_true", help="skip the ERF heatmaps")
    p.add_argument("--compare", nargs="+", metavar="RUN", help="other runs (spaces) to compare by error EDF")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("train-proxy", help="train one architecture on a proxy task and print its metrics as JSON")
    _add_train_flags(p)
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--no-erf", action="store_true", help="skip the effective receptive field")
    p.set_defaults(func=_cmd_train_proxy)

    p = sub.add_parser("latency", help="latency and throughput of the deploy (reparameterized) form")
    p.add_argument("--arch", required=True, help="architecture YAML")
    p.add_argument("--resolution", type=int, default=224, help="input size (default 224)")
    p.add_argument("--batch-size", type=int, default=1, help="latency batch (default 1)")
    p.add_argument("--throughput-batch", type=int, default=32, help="throughput batch, 0 to skip (default 32)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's current setting)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs; the median is reported (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_latency)

    p = sub.add_parser("erf", help="effective receptive field (RepLKNet's area ratios) and a heatmap PNG")
    _add_train_flags(p, epochs_default=0)
    p.add_argument("--images", type=int, default=32, help="images to aggregate (default 32)")
    p.add_argument("--erf-resolution", type=int,
                   help="measure at this input size (default: the last feature map gets >= 8 cells a side)")
    p.add_argument("--out", help="write the heatmap to this PNG")
    p.set_defaults(func=_cmd_erf)
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
