"""Static PNGs of plotly figures: kaleido driving a system Chrome/Chromium, never a crash.

Kaleido (>= 1.0) renders through a Chrome it finds on the system. Without one (or without kaleido)
the PNGs are skipped and the message says how to get them; report.html needs neither.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["find_chromium", "export_pngs", "NO_CHROMIUM", "NO_KALEIDO"]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
NO_CHROMIUM = ("PNG figures skipped: kaleido renders them with Chrome/Chromium and none was found. Install one "
               "(Debian/Ubuntu: `apt-get install chromium`; elsewhere `plotly_get_chrome`), or set BROWSER_PATH "
               "to its executable, then run `python -m lknas report RUN` again. report.html is complete without them.")
NO_KALEIDO = ("PNG figures skipped: the kaleido package is missing (`pip install kaleido`); it also needs "
              "Chrome/Chromium (Debian/Ubuntu: `apt-get install chromium`). report.html is complete without them.")


def find_chromium() -> str | None:
    """The Chrome/Chromium executable to render with: $BROWSER_PATH, else the first on PATH."""
    env = os.environ.get("BROWSER_PATH")
    if env and Path(env).is_file():
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def export_pngs(figures: dict, directory: str | os.PathLike, width: int = 1100, height: int | None = None,
                scale: float = 1.5) -> tuple[list[Path], str]:
    """Write each figure to `directory/NAME.png` (one browser for all). Returns (paths written,
    a message for the user: where they are, or why there are none)."""
    if not figures:
        return [], "no figures to export"
    try:
        import kaleido  # noqa: F401
        import plotly.io as pio
    except ImportError:
        return [], NO_KALEIDO
    browser = find_chromium()
    if browser is None:
        return [], NO_CHROMIUM
    os.environ.setdefault("BROWSER_PATH", browser)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    names = list(figures)
    paths = [out / f"{n}.png" for n in names]
    heights = [height or int(figures[n].layout.height or 550) for n in names]
    error = None
    todo = list(range(len(names)))
    for _attempt in range(2):  # a figure the browser drops (a render timeout on a loaded machine) gets a retry
        for i in todo:
            paths[i].unlink(missing_ok=True)  # a stale PNG of an earlier report must not pass for this one
        try:
            pio.write_images([figures[names[i]] for i in todo], [paths[i] for i in todo], format="png",
                             width=width, height=[heights[i] for i in todo], scale=scale)
        except Exception as err:  # a browser that does not start, a sandbox, a timeout: say so and go on
            error = err
        todo = [i for i in todo if not paths[i].is_file()]
        if not todo:
            return paths, f"wrote {len(paths)} PNGs to {out}"
    written = [p for p in paths if p.is_file()]
    why = f"{type(error).__name__}: {str(error)[:300]}" if error else "no error reported"
    return written, (f"PNG export failed for {', '.join(names[i] for i in todo)} with {browser} ({why}); "
                     f"report.html is complete without them")
