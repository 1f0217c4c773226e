"""Section 2's repeatability table: mean ± Student-t 95% half-width and CV % over a point's repeats."""
from __future__ import annotations

from orchestrator.analysis import format as fmt
from orchestrator.analysis.repeats import REPEAT_METRICS, any_repeated
from orchestrator.report.analyse import Analysis
from orchestrator.report.markdown import Col, col, heading, para, sim_legend, table
from orchestrator.report.result_sections import BATCH, FLAGS, SERIES, groups
from orchestrator.report.summary import workload_title


def mean_ci(mean, half) -> str:
    """``580 ± 9.8`` (``580 ± —`` without an interval: one repeat)."""
    return fmt.MISSING if fmt.is_missing(mean) else f"{fmt.num(mean)} ± {fmt.num(half)}"


def cv_pct(cv) -> str:
    """A coefficient of variation (fraction) as ``0.68%``; ``—`` without one (never 0)."""
    return fmt.MISSING if fmt.is_missing(cv) else f"{fmt.num(float(cv) * 100.0)}%"


def _metric_cols(metric: str, name: str) -> list[Col]:
    return [Col(f"{name} mean ± 95% CI", lambda r: mean_ci(getattr(r, f"{metric}_mean"),
                                                          getattr(r, f"{metric}_ci95_half_width"))),
            Col(f"{name} CV", lambda r: cv_pct(getattr(r, f"{metric}_cv")))]


REPEAT_COLS = [SERIES, BATCH, FLAGS, col("repeats", "n_repeats", "batch")]
REPEAT_COLS += [c for m, name in REPEAT_METRICS.items() for c in _metric_cols(m, name)]


def _repeat_counts(a: Analysis) -> str:
    n = a.repeatability["n_repeats"]
    lo, hi = int(n.min()), int(n.max())
    return f"{lo} ok repeats" if lo == hi else f"{lo} to {hi} ok repeats"


def repeatability_section(a: Analysis) -> list[str]:
    """``### Repeatability`` (inside section 2): one table per workload and GPU when any point
    has two or more repeats; else one sentence saying there is no interval."""
    out = heading(3, "Repeatability")
    if not any_repeated(a.points):
        return out + para("Every point ran once (repeats=1): there is no confidence interval or coefficient of "
                          "variation; run the sweep with repeats=N (N ≥ 2) for them.")
    out += para(f"Each point holds {_repeat_counts(a)} (failed repeats are left out; see Appendix A). Shown: "
                "mean ± the half-width of the **Student-t 95% confidence interval** of the mean (t(0.975, n − 1) × "
                "s ÷ √n, s = sample standard deviation of the n repeats) and the coefficient of variation "
                "CV = s ÷ mean. With one repeat there is no interval or CV (—). Energy is J per output token, gross "
                "and net. Full precision, with the interval's bounds: tables/repeatability.csv.")
    out += sim_legend(a.repeatability)
    for wl, gpu, g in groups(a.repeatability):
        out += heading(4, f"{workload_title(a.points, wl)} · {gpu}")
        out += table(g, REPEAT_COLS)
    return out
