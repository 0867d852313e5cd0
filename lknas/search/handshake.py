"""Ask a running Ray cluster, before `ray.init`, whether it will take this driver.

`ray.init(address=...)` meets a refused token with 20 s of C++ warnings and then "Failed to
connect to Ray cluster", and meets a version mismatch only after it has joined. `handshake`
asks the cluster's GCS once (Ray's own `GcsClient`, in a child process so that neither Ray's
auth settings nor its warnings touch this one) and tells three cases apart, each with its fix:

- the cluster refused our credentials (token authentication, Ray >= 2.52);
- it runs another Ray or Python version than this machine (Ray requires both to match);
- it took us: nothing to say.

Token authentication (`RAY_AUTH_MODE=token`, the token from `RAY_AUTH_TOKEN`, the file at
`RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token`, in that order) is Ray's. For an explicit address
Ray 2.60 sends no token unless `RAY_AUTH_MODE=token`; when the mode is unset, the cluster asks for
a token and one is found here, `handshake` turns the mode on for this process (as Ray itself does
for `--address auto` and `ray start --head`) and says so in its return value.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lknas.errors import LknasError

__all__ = ["handshake", "token_source", "TOKEN_HINT", "HANDSHAKE_TIMEOUT_S"]

HANDSHAKE_TIMEOUT_S = 30.0
TOKEN_HINT = ("give this machine the head's token (copy the head's ~/.ray/auth_token here, or export "
              "RAY_AUTH_TOKEN_PATH=FILE or RAY_AUTH_TOKEN=TOKEN) and export RAY_AUTH_MODE=token, here and on "
              "every node you `ray start --address`")

# run in a child process: prints one JSON line
_ASK = r"""
import json, sys
try:
    from ray._raylet import GcsClient
    client = GcsClient(address=sys.argv[1])
    meta = client.internal_kv_get(b"CLUSTER_METADATA", b"cluster")
    meta = json.loads(meta) if meta else {}
    out = {"status": "ok", "ray": meta.get("ray_version"), "python": meta.get("python_version")}
except Exception as err:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    out = {"status": "auth" if type(err).__name__ == "AuthenticationError" else "error", "message": first[:400]}
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Answer:
    status: str  # ok | auth | error
    ray: str | None = None
    python: str | None = None
    message: str = ""


def token_source(env: dict[str, str] | None = None) -> str | None:
    """Where Ray would take a token from in `env` ('RAY_AUTH_TOKEN', 'RAY_AUTH_TOKEN_PATH=FILE',
    '~/.ray/auth_token'), or None when there is none.

    Raises:
        LknasError: RAY_AUTH_TOKEN_PATH names a file that cannot be read or is empty (Ray aborts
            the process on it).
    """
    env = os.environ if env is None else env
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    if env.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(env["RAY_AUTH_TOKEN_PATH"]).expanduser()
        try:
            text = path.read_text().strip()
        except OSError as err:
            raise LknasError(f"RAY_AUTH_TOKEN_PATH={path}: cannot read it ({err.strerror or err}); point it at the "
                             f"file holding the head's token, or unset it") from None
        if not text:
            raise LknasError(f"RAY_AUTH_TOKEN_PATH={path}: the file is empty; put the head's token in it "
                             f"(`ray get-auth-token` on the head prints it), or unset it")
        return f"RAY_AUTH_TOKEN_PATH={path}"
    default = Path.home() / ".ray" / "auth_token"
    try:
        return "~/.ray/auth_token" if default.read_text().strip() else None
    except OSError:
        return None


def _ask(gcs: str, env: dict[str, str], timeout: float) -> Answer:
    try:
        done = subprocess.run([sys.executable, "-c", _ASK, gcs], env=env, capture_output=True, text=True,
                              timeout=timeout)
        line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        return Answer(**json.loads(line)) if line.startswith("{") else Answer(
            "error", message=(done.stderr.strip().splitlines() or ["no answer"])[-1][:400])
    except subprocess.TimeoutExpired:
        return Answer("error", message=f"no answer within {timeout:g} s")


def _enable_token_mode() -> None:
    """RAY_AUTH_MODE=token for this process and its children, including a Ray already imported."""
    os.environ["RAY_AUTH_MODE"] = "token"
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # another Ray: it reads the environment at ray.init
        pass


def local_versions() -> tuple[str, str]:
    """(Ray, Python) versions of this process, as Ray compares them."""
    import ray

    return ray.__version__, platform.python_version()


def handshake(address: str, gcs: str, timeout: float = HANDSHAKE_TIMEOUT_S) -> str:
    """Check that the Ray cluster whose GCS is at `gcs` (HOST:PORT) takes this driver; returns a
    note ('' or what was turned on), `address` is the flag's text for messages.

    Raises:
        LknasError: the cluster refused our credentials, or its Ray or Python version differs.
    """
    env = dict(os.environ)
    source = token_source(env)
    mode = env.get("RAY_AUTH_MODE", "").strip().lower()
    answer = _ask(gcs, env, timeout)
    note = ""
    if answer.status == "auth" and not mode and source:
        retry = _ask(gcs, {**env, "RAY_AUTH_MODE": "token"}, timeout)
        if retry.status != "auth":
            _enable_token_mode()
            answer, note = retry, f"the cluster uses token authentication: RAY_AUTH_MODE=token, token from {source}"
        else:
            answer, mode = retry, "token"
    if answer.status == "auth":
        if mode != "token":
            sent = f"RAY_AUTH_MODE is {mode or 'unset'} here, so no token was sent"
        elif source:
            sent = f"it refused the token from {source}, which is not the head's"
        else:
            sent = "RAY_AUTH_MODE=token here but no token was found"
        raise LknasError(f"--address {address}: the Ray cluster there refused our credentials (it uses token "
                         f"authentication; {sent}); {TOKEN_HINT}")
    if answer.status == "ok" and answer.ray:
        check_versions(address, answer.ray, answer.python or "")
    return note


def check_versions(address: str, ray_version: str, python_version: str) -> None:
    """LknasError unless the cluster's Ray and Python versions are this process's (Ray's own rule:
    the same Ray, the same Python down to the patch level unless
    RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor)."""
    mine_ray, mine_python = local_versions()
    level = os.environ.get("RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL", "patch")
    depth = 2 if level == "minor" else 3
    same_python = not python_version or python_version.split(".")[:depth] == mine_python.split(".")[:depth]
    if ray_version == mine_ray and same_python:
        return
    raise LknasError(f"--address {address}: Ray version mismatch: the cluster runs Ray {ray_version} on Python "
                     f"{python_version or '?'}, this machine Ray {mine_ray} on Python {mine_python}; install "
                     f"the cluster's versions here (pip install 'ray[tune]=={ray_version}', Python {python_version}) "
                     f"or start every node with this machine's")
