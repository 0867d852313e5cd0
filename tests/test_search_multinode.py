"""Integration: a real multi-node Ray cluster on this machine (a head and a second node, each its
own raylet, `ray.cluster_utils.Cluster`), with token authentication on, searched through
`--address` exactly as the README's scale-out section does it.

- A driver without the head's token is refused in seconds, saying so; a Ray version mismatch too.
- Trials run on both nodes and trials.csv says which (`node`); `--ray-storage` holds every trial.
- `--gpus-per-trial 0.5` on nodes that declare one logical GPU each packs two trials per GPU, and
  each trial is given its GPU (trained on the CPU here: LKNAS_TRIAL_DEVICE=cpu).
- A node killed mid-trial: that trial is recorded as an error and the search finishes its count.

The clusters are shut down (every raylet, GCS and worker process they started) even when a test
fails. Marked `multinode`; they run in CI (no GPU needed, 2 cores).
"""
from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from lknas.cli import main
from tests.helpers import write_tiny_space

pytestmark = [pytest.mark.ray, pytest.mark.multinode, pytest.mark.xdist_group("ray")]


def _refresh_ray_auth() -> None:
    """Make this process's Ray read RAY_AUTH_* again (it caches them)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@pytest.fixture(scope="module")
def token_env(tmp_path_factory):
    """RAY_AUTH_MODE=token with a token of our own (never ~/.ray/auth_token), and a data cache,
    for the clusters started in this module and the searches that join them."""
    root = tmp_path_factory.mktemp("auth")
    token = root / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "token")
        mp.setenv("RAY_AUTH_TOKEN_PATH", str(token))
        mp.delenv("RAY_AUTH_TOKEN", raising=False)
        mp.setenv("LKNAS_CACHE", str(root / "cache"))
        mp.setenv("RAY_DEDUP_LOGS", "0")
        _refresh_ray_auth()
        yield token
    _refresh_ray_auth()


def _start(head: dict, *others: dict):
    """A Cluster of a head and `others`, each node its own raylet; all alive when it returns."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=False, shutdown_at_exit=True)
    try:
        cluster.add_node(**head, include_dashboard=False)
        nodes = [cluster.add_node(**spec) for spec in others]
        cluster.wait_for_nodes()
    except BaseException:
        cluster.shutdown()
        raise
    return cluster, nodes


def _stop(cluster) -> None:
    import ray

    ray.shutdown()  # the driver our search connected
    cluster.shutdown()


@pytest.fixture(scope="module")
def gpu_cluster(token_env):
    """A head and one more node, each 2 CPUs and 1 declared (logical) GPU."""
    cluster, (worker,) = _start(dict(num_cpus=2, num_gpus=1), dict(num_cpus=2, num_gpus=1))
    try:
        yield cluster, worker
    finally:
        _stop(cluster)


@pytest.fixture
def disconnect():
    """Each search joins the cluster afresh (and is handshaken), as a new process would."""
    import ray

    ray.shutdown()
    yield
    ray.shutdown()


def search(tmp_path: Path, address: str, *flags: str) -> int:
    argv = ["search", "--space", str(write_tiny_space(tmp_path / "tiny.yaml")), "--out", str(tmp_path / "run"),
            "--quiet", "--address", address, *flags]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code


def run_cli(capsys, *args) -> tuple[int, str, float]:
    start = time.monotonic()
    code = search(*args)
    return code, capsys.readouterr().err, time.monotonic() - start


# ---------------------------------------------------------------- refused before any trial
def test_a_driver_without_the_heads_token_is_told_so_in_seconds(gpu_cluster, tmp_path, monkeypatch, capsys,
                                                                 disconnect):
    cluster, _ = gpu_cluster
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    code, err, seconds = run_cli(capsys, tmp_path, cluster.address)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "refused our credentials" in err and "RAY_AUTH_MODE is disabled here" in err
    assert "RAY_AUTH_MODE=token" in err and "~/.ray/auth_token" in err and "no Ray cluster answers" not in err
    assert seconds < 30 and not (tmp_path / "run").exists()


def test_a_wrong_token_is_refused_naming_where_it_came_from(gpu_cluster, tmp_path, monkeypatch, capsys, disconnect):
    cluster, _ = gpu_cluster
    wrong = tmp_path / "wrong"
    wrong.write_text(secrets.token_hex(32))
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(wrong))
    code, err, seconds = run_cli(capsys, tmp_path, cluster.address)
    assert code == 2 and "refused our credentials" in err and f"RAY_AUTH_TOKEN_PATH={wrong}" in err
    assert seconds < 30


def test_an_unset_auth_mode_with_the_heads_token_joins(gpu_cluster, tmp_path, monkeypatch, disconnect):
    """Ray 2.60 sends no token to an explicit address unless RAY_AUTH_MODE=token; lknas turns the
    mode on when the cluster asks for a token and one is here (as Ray does for `--address auto`)."""
    import os

    from lknas.search.cluster import init_ray

    cluster, _ = gpu_cluster
    monkeypatch.delenv("RAY_AUTH_MODE")
    init_ray(cluster.address, quiet=True)
    assert os.environ["RAY_AUTH_MODE"] == "token"
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2


def test_a_ray_version_mismatch_names_both_versions_and_the_fix(gpu_cluster, tmp_path, monkeypatch, capsys,
                                                                 disconnect):
    import ray

    from lknas.search import handshake

    cluster, _ = gpu_cluster
    monkeypatch.setattr(handshake, "local_versions", lambda: ("2.0.0", "3.11.0"))
    code, err, _ = run_cli(capsys, tmp_path, cluster.address)
    assert code == 2 and "Ray version mismatch" in err and f"the cluster runs Ray {ray.__version__}" in err
    assert "this machine Ray 2.0.0" in err and f"ray[tune]=={ray.__version__}" in err


def test_more_gpus_per_trial_than_a_node_declares_is_refused_at_once(gpu_cluster, tmp_path, capsys, disconnect):
    cluster, _ = gpu_cluster
    code, err, seconds = run_cli(capsys, tmp_path, cluster.address, "--gpus-per-trial", "2")
    assert code == 2 and "--gpus-per-trial 2" in err and "2 GPUs on 2 nodes" in err and "1 or less" in err
    assert seconds < 30


# ---------------------------------------------------------------- a search across both nodes
@pytest.fixture(scope="module")
def packed_run(gpu_cluster, tmp_path_factory):
    """4 trials, 1 CPU and half a declared GPU each, on 2 nodes of 2 CPUs and 1 GPU: two trials
    per GPU at once (100 steps, so that a trial outlasts the seconds between trial starts),
    trained on the CPU (LKNAS_TRIAL_DEVICE=cpu); Ray Tune's storage on a path standing for an NFS
    mount."""
    import ray

    cluster, _ = gpu_cluster
    tmp = tmp_path_factory.mktemp("packed")
    shared = tmp / "nfs" / "lknas"
    ray.shutdown()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LKNAS_TRIAL_DEVICE", "cpu")
        code = search(tmp, cluster.address, "--trials", "4", "--steps", "100", "--cpus-per-trial", "1",
                      "--gpus-per-trial", "0.5", "--ray-storage", str(shared), "--confirm", "0")
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    ray.shutdown()
    assert code == 0
    return pd.read_csv(tmp / "run" / "trials.csv"), shared, nodes


def test_trials_ran_on_both_nodes_and_trials_csv_names_each_trials_node(packed_run):
    trials, _, nodes = packed_run
    assert len(trials) == 4 and set(trials["status"]) == {"ok"}
    assert set(trials["node"]) == nodes and len(nodes) == 2
    assert trials["node_ip"].notna().all()


def test_half_a_gpu_per_trial_packs_two_trials_on_each_declared_gpu(packed_run):
    trials, _, _ = packed_run
    assert (trials["gpu_ids"].astype(str) == "0").all()  # each node's one logical GPU, given to every trial
    assert (trials["device"] == "cpu").all()  # LKNAS_TRIAL_DEVICE: trained on the CPU all the same
    for node, rows in trials.groupby("node"):
        spans = sorted(zip(rows["started_at"], rows["started_at"] + rows["wall_time"]))
        assert len(spans) == 2, f"node {node}: {len(spans)} trials"
        (a0, a1), (b0, b1) = spans
        assert b0 < a1, f"node {node}: its two trials did not run at once on the GPU they shared"


def test_a_shared_ray_storage_holds_the_experiment_and_every_trial(packed_run):
    trials, shared, _ = packed_run
    (experiment,) = [p for p in shared.iterdir() if p.is_dir()]
    assert (experiment / "tuner.pkl").is_file()
    assert list(experiment.glob("experiment_state-*.json"))
    dirs = sorted(p.name for p in experiment.iterdir() if p.is_dir() and p.name.startswith("trial-"))
    assert len(dirs) == 4 and set(trials["trial_id"]) == {d.rsplit("-", 1)[1] for d in dirs}
    for d in dirs:  # written by the trial's worker, on either node
        assert (experiment / d / "result.json").stat().st_size > 0


# ---------------------------------------------------------------- a node lost mid-trial
def _watch_and_kill(cluster, victim, killed: threading.Event, stop: threading.Event) -> None:
    """Kill `victim` (its raylet and every process under it) once one of its workers trains a trial."""
    import psutil

    raylet = next(p for p in victim.all_processes["raylet"])
    while not stop.is_set():
        try:
            titles = [" ".join(c.cmdline()) for c in psutil.Process(raylet.process.pid).children(recursive=True)]
        except psutil.Error:
            titles = []
        if any("ImplicitFunc.train" in t for t in titles):
            time.sleep(0.5)  # inside the trial
            cluster.remove_node(victim, allow_graceful=False)
            killed.set()
            return
        time.sleep(0.2)


def test_a_node_killed_mid_trial_fails_that_trial_and_the_search_finishes_its_count(token_env, tmp_path,
                                                                                     disconnect):
    cluster, (victim,) = _start(dict(num_cpus=1), dict(num_cpus=1))
    killed, stop = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_watch_and_kill, args=(cluster, victim, killed, stop), daemon=True)
    try:
        watcher.start()
        code = search(tmp_path, cluster.address, "--trials", "3", "--steps", "100", "--confirm", "0")
    finally:
        stop.set()
        watcher.join(timeout=30)
        _stop(cluster)
    assert killed.is_set(), "no trial ran on the second node"
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert code == 0 and len(trials) == 3
    assert (trials["status"] == "error").sum() == 1 and (trials["status"] == "ok").sum() == 2
    failed = trials[trials["status"] == "error"].iloc[0]
    assert "worker failed" in failed["error"] and failed["node"] == victim.node_id
