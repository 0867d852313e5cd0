"""Pack the Python packages the GPU check needs and the GPU machine lacks into .whl/site.tar.xz.

The lent GPU machine (Python 3.12, torch, timm, pandas, pyyaml; no registry) has no Ray, Optuna,
fvcore or plotly. Their wheels for Python 3.12 at the versions installed here, with what they
need that the machine lacks, are unpacked into one folder, trimmed of what a local search never
loads (Ray's Java jars, dashboard web client, RLlib and LLM libraries: 79 MB of wheel to 38 MB
packed) and packed, so that the whole working tree stays under the device tool's 64 MiB.
`benchmarks/gpu_check.sh` unpacks it into /tmp/site when it is there. Run here, from the repo:

    python benchmarks/gpu_carry.py            # writes .whl/site.tar.xz (about 2 minutes)
    python benchmarks/gpu_carry.py --dry-run  # the packages and versions
    # then: device run, carry [".whl"], command "bash benchmarks/gpu_check.sh"
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".whl" / "site.tar.xz"
# missing on the GPU machine's image (device README, KINDS.md): the search's stack and its needs;
# pydantic comes with ray[tune] (ray.train.v2 imports it)
PACKAGES = ("ray", "optuna", "fvcore", "iopath", "plotly", "yacs", "termcolor", "alembic", "sqlalchemy",
            "colorlog", "mako", "tensorboardx", "jsonschema", "jsonschema-specifications", "referencing",
            "rpds-py", "pydantic", "pydantic-core", "annotated-types", "typing-inspection")
PRUNE = ("ray/jars", "ray/dashboard/client", "ray/rllib", "ray/llm")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")


def pins() -> list[str]:
    """`name==version` of each package as installed in this environment."""
    return [f"{name}=={md.version(name)}" for name in PACKAGES]


def download(pin: str, dest: Path) -> None:
    """A Python 3.12 x86-64 wheel of `pin` into `dest`; built here from its sdist when PyPI has no wheel."""
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *plat, "-d", str(dest), pin]
    if subprocess.run(cmd, capture_output=True, text=True).returncode == 0:
        return
    with tempfile.TemporaryDirectory() as sdist:  # pure-Python sdists (fvcore, iopath)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary=:all:", "-d",
                        sdist, pin], check=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                        str(dest), *map(str, Path(sdist).iterdir())], check=True)


def unpack_wheel(wheel: Path, site: Path) -> None:
    """Unpack `wheel` into `site` keeping each file's Unix mode: ZipFile.extractall drops it, and Ray
    starts its gcs_server and raylet binaries as programs (Permission denied without the x bits)."""
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            path = z.extract(info, site)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(path, mode)


def build(out: Path = OUT) -> Path:
    """Download, unpack, trim and pack; returns the archive."""
    with tempfile.TemporaryDirectory() as tmp:
        wheels, site = Path(tmp) / "wheels", Path(tmp) / "site"
        wheels.mkdir()
        for pin in pins():
            print(f"  {pin}", flush=True)
            download(pin, wheels)
        for wheel in sorted(wheels.glob("*.whl")):
            unpack_wheel(wheel, site)
        for rel in PRUNE:
            shutil.rmtree(site / rel, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(out.name + ".part")
        with tarfile.open(part, "w:xz") as tar:
            for path in sorted(site.iterdir()):
                tar.add(path, arcname=path.name)
        part.replace(out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="list the packages and versions; download nothing")
    args = ap.parse_args(argv)
    if args.dry_run:
        print("\n".join(pins()))
        return 0
    out = build()
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB); .whl/ must be git-ignored "
          "(echo /.whl/ >> .git/info/exclude) and named in the device run's carry")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
