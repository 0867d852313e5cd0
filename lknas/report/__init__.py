"""Plots and the HTML report of a run: `python -m lknas report results/RUN`.

    from lknas.report import write_report, pareto_figure
    write_report("results/RUN")      # RUN/report.html and RUN/figures/*.png
"""
from lknas.report.erf import compute_erfs, erf_figure
from lknas.report.export import export_pngs, find_chromium
from lknas.report.figures import dimension_figure, edf_figure, pareto_figure, scaling_figure
from lknas.report.html import ReportResult, build_figures, write_report
from lknas.report.search_figures import hypervolume_figure, hypervolume_history, importance_figure, load_study

__all__ = [
    "ReportResult", "build_figures", "compute_erfs", "dimension_figure", "edf_figure", "erf_figure", "export_pngs",
    "find_chromium", "hypervolume_figure", "hypervolume_history", "importance_figure", "load_study",
    "pareto_figure", "scaling_figure", "write_report",
]
