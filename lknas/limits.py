"""The sane range of every number a user can give lknas, in one place.

Space files, data-set names and run settings are validated against these bounds before any work
starts, so that a typo (`depth: 1000000000`, `train=10000000000`) is a clear error and never a
hang, a full disk or an exhausted memory. The bounds are generous: each is well above what the
papers' largest models use (ConvNeXt-XL: depth 27, width 2048; RepLKNet-31L: kernel 31), and
`docs/space-format.md` lists them. `LKNAS_MAX_MODEL_GB` sets the memory budget a space's largest
model must fit (see `lknas.space.budget`).
"""
from __future__ import annotations

import math
import os

# ----------------------------------------------------------------------------- architecture
MAX_STAGES = 8  # stages of a network (the papers use 4)
MAX_DEPTH = 64  # blocks per stage; also the longest kernel list (cycled over the blocks)
MAX_WIDTH = 4096  # channels of a stage or of the stem
MAX_KERNEL = 201  # largest kernel side (odd)
MAX_R_C = (MAX_KERNEL - 1) // 2  # peripheral fine-centre radius
MAX_M = 16  # peripheral growth factor of the coarse segments
MAX_MLP_RATIO = 16.0
MAX_DW_RATIO = 8.0
MAX_WIDTH_MULTIPLIER = 8.0
MAX_LAYER_SCALE = 1.0
MAX_UPDATE_INTERVAL = 1_000_000  # sparsity: steps between prune-and-regrow updates

# ----------------------------------------------------------------------------- domains and files
MAX_CHOICES = 1000  # values of one choice list
MAX_GRID = 100_000  # combinations the grid sampler may enumerate
MAX_FILE_BYTES = 256 * 1024  # a space file (the bundled ones are 2-4 kB; PyYAML reads ~200 kB/s)
MAX_NESTING = 32  # levels of nested mappings and lists in a space file
MAX_NODES = 1_000_000  # values in a space file, YAML aliases expanded
MAX_INT_DIGITS = 30  # digits of an integer written in a space file
MAX_PROBLEMS = 100  # problems listed at once (the rest are counted)

# ----------------------------------------------------------------------------- training and search
MIN_RESOLUTION, MAX_RESOLUTION = 16, 1024
MAX_EPOCHS = 10_000
MAX_STEPS = 10_000_000
MAX_BATCH_SIZE = 4096
MAX_LR = 10.0
MAX_WEIGHT_DECAY = 10.0
MAX_CLASSES = 100_000
MAX_SUBSET = 100_000_000
MAX_SECONDS = 10_000_000.0  # time limits and budgets (about 115 days)
MAX_SEED = 2**31 - 1  # a search adds the finished-trial count: numpy seeds stay below 2**32
MAX_TRIALS = 100_000
MAX_RETIME_ROUNDS = 20  # quiet re-timing rounds of a search's latency front
MAX_TRIAL_SEEDS = 10  # training seeds averaged in one search trial
MAX_CONCURRENT = 1024
MAX_CPUS_PER_TRIAL = 1024.0
MAX_GPUS_PER_TRIAL = 64.0
MAX_COUNT = 10**15  # params / FLOPs constraints

# ----------------------------------------------------------------------------- command-line only
MAX_SEEDS_PER_POINT = 1000  # `scale --seeds N`: N trials per point of a study
MAX_THREADS = 1024  # CPU threads for a latency
MAX_REPEATS = 100_000  # timed runs of a latency
MAX_MIX_ALPHA = 100.0  # mixup / cutmix Beta(alpha, alpha)
MAX_ERF_IMAGES = 100_000  # images an ERF aggregates
MAX_BUDGET_FACTOR = 1000.0  # `fidelity --factor`: the target budget over the proxy's
MAX_REDUCTION_FACTOR = 100  # asha / moasha: search.reduction_factor

# ----------------------------------------------------------------------------- data sets
MAX_DATA_SIZE = 1_000_000  # images of one synthetic split (train= / val=)
MAX_DATA_BYTES = 8 * 2**30  # a synthetic split held in memory as uint8
MAX_WORKERS = 256

# ----------------------------------------------------------------------------- memory budget
MODEL_GB_ENV = "LKNAS_MAX_MODEL_GB"
DEFAULT_MAX_MODEL_GB = 64.0


class BudgetSettingError(ValueError):
    """`LKNAS_MAX_MODEL_GB` is set to something that is not a size."""


def max_model_bytes() -> float:
    """The training-memory budget of one model in bytes: `$LKNAS_MAX_MODEL_GB` GB (default 64;
    `off` or `inf` for no budget). BudgetSettingError if the variable holds something else."""
    raw = os.environ.get(MODEL_GB_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_MODEL_GB * 1e9
    if raw.lower() in ("off", "inf", "none"):
        return math.inf
    try:
        gb = float(raw)
    except ValueError:
        gb = math.nan
    if not (gb > 0 and math.isfinite(gb)):
        raise BudgetSettingError(f"{MODEL_GB_ENV}={raw!r} is not a size; give a number of GB > 0 "
                                 f"(e.g. {MODEL_GB_ENV}=128) or 'off'")
    return gb * 1e9
