"""The report's figures: matplotlib (Agg) → SVG (inline in the HTML and ``OUT/figures/*.svg``)
and PNG (``OUT/figures/*.png``).

Output is reproducible to the byte: fixed SVG hash salt, no dates or software versions in the
file metadata, text kept as text (``svg.fonttype = 'none'``, so labels stay searchable by the
disclosure checker and the SVG stays small). Every function takes already disclosure-safe
inputs (labels as strings, hidden points removed) and returns the figure.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")


import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

def _japanese_font() -> str | None:
    """Register the IPAexGothic font that matplotlib-fontja ships (without importing that
    package, which would change matplotlib's global settings); None when it is not installed."""
    import importlib.util

    from matplotlib import font_manager

    spec = importlib.util.find_spec("matplotlib_fontja")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "fonts" / "ipaexg.ttf"
    if not path.is_file():
        return None
    font_manager.fontManager.addfont(str(path))
    return "IPAexGothic"


_JA = _japanese_font()
#: Figures are written at this resolution (journals ask for 300 dpi or more).
PNG_DPI = 300

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "hospstudy",
    # Latin text in DejaVu Sans; glyphs it lacks (Japanese) fall back to IPAexGothic
    "font.family": ["DejaVu Sans"] + ([_JA] if _JA else []),
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "figure.dpi": 100,
}
_BLUE, _ORANGE, _GREY, _GREEN, _RED = "#1f5f8b", "#d9822b", "#7f7f7f", "#3a7d44", "#b03a2e"


_RATIO_TICKS = (0.05, 0.1, 0.2, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.25, 1.5, 2, 3, 4, 5, 10, 20)


def _ratio_ticks(lo: float, hi: float) -> list[float]:
    """Readable ticks for a log-scaled ratio axis: a handful of round values inside [lo, hi]."""
    ticks = [t for t in _RATIO_TICKS if lo <= t <= hi]
    while len(ticks) > 7:
        ticks = [t for i, t in enumerate(ticks) if i % 2 == 0 or t == 1]
    # labels closer to 1 than a twelfth of the axis (e.g. 1.1 beside 1 on a 0.3-3 axis) overlap it
    span = np.log(hi / lo) if hi > lo > 0 else 0.0
    return [t for t in ticks if t == 1 or 1 not in ticks or abs(np.log(t)) >= span / 12]


def _figure(w: float = 6.4, h: float = 3.6):
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(w, h), layout="constrained")
    return fig, ax


def _write_png(path: Path, rgba: np.ndarray, dpi: float) -> None:
    """An RGBA image as a PNG with its resolution (pHYs) and nothing else: rows unfiltered,
    deflated at zlib level 1. Measured on the demo's 1920x1080 volume curve: 21 ms and 153 KB,
    against 49 ms and 150 KB through Pillow at compress_level=1 (whose per-row filter choice
    costs more than it saves on flat chart images) and several times that at Pillow's default
    level; at 10 figures a render that is about a tenth of the report's CPU time."""
    import struct
    import zlib

    h, w, _ = rgba.shape
    rows = np.zeros((h, 1 + 4 * w), np.uint8)  # a 0 (filter type None) before each row
    rows[:, 1:] = rgba.reshape(h, -1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ppm = round(dpi / 0.0254)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
                           + chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1))
                           + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)) + chunk(b"IEND", b""))


_CJK = re.compile("[\u2e80-\U0010ffff]")


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", dpi=_RC["figure.dpi"], metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def save(fig, name: str, fig_dir: Path) -> str:
    """Write ``fig_dir/name.svg`` and ``.png`` and return the SVG markup for inlining (without
    the XML prolog). Closes the figure."""
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(_RC):
        # Solve the layout once, at the PNG's resolution, then drop the layout engine: while a
        # figure has one (even matplotlib's "none" placeholder) every savefig draws a whole
        # extra hidden pass first; and the Agg renderer the layout measured text with is the
        # one the PNG then draws with (FigureCanvasAgg reuses it for the same size and dpi), so
        # its text-metrics cache is warm. Measured with _write_png on the scale-0.1 demo's 10
        # figures (median of 12 renders, shared machine): render_report 3.42 -> 2.40 CPU s.
        fig.set_dpi(PNG_DPI)
        engine = fig.get_layout_engine()
        if engine is not None:
            engine.execute(fig)
        fig.set_layout_engine(None)
        fig.canvas.draw()
        _write_png(fig_dir / f"{name}.png", np.asarray(fig.canvas.buffer_rgba()), PNG_DPI)
        svg = _svg(fig)
        if _CJK.search(svg):
            # text that a reader's browser may have no font for (Japanese) is drawn as paths
            with plt.rc_context({"svg.fonttype": "path"}):
                svg = _svg(fig)
    plt.close(fig)
    (fig_dir / f"{name}.svg").write_text(svg, encoding="utf-8")
    inline = re.sub(r"^<\?xml[^>]*>\s*(<!DOCTYPE[^>]*>\s*)?", "", svg)
    # ids must be unique across the several SVGs inlined in one page
    inline = re.sub(r'id="([^"]+)"', rf'id="{name}-\1"', inline)
    inline = re.sub(r'url\(#([^)]+)\)', rf'url(#{name}-\1)', inline)
    inline = re.sub(r'xlink:href="#([^"]+)"', rf'xlink:href="#{name}-\1"', inline)
    inline = re.sub(r'href="#([^"]+)"', rf'href="#{name}-\1"', inline) if "xlink:href" not in inline else inline
    return inline.replace("<svg ", f'<svg role="img" aria-label="{name}" class="figure-svg" ', 1)


def flow_diagram(boxes: Sequence[dict], units: Sequence[str] = ("admissions", "patients")):
    """Cohort flow: one box per remaining population, side boxes for what each step excluded.

    ``boxes``: dicts with ``title``, the remaining counts per unit (strings) and, after the
    first, ``excluded`` (what was excluded, in words, wrapped here and never cut) and
    ``<unit>_removed`` (strings).
    """
    import textwrap

    boxes = [dict(b) for b in boxes]
    n = len(boxes)
    for k, b in enumerate(boxes):  # rows of a safe attrition table: step titles and exclusions derived
        b.setdefault("title", "All admissions in the database" if k == 0 else ("Study cohort" if k == n - 1 else f"After step {k}"))
        if k > 0:
            b.setdefault("excluded", b.get("description", ""))
    units = [u for u in units if u in boxes[0]]

    def counts(b, suffix=""):
        return "; ".join(f"{b[u + suffix]} {u}" for u in units)

    side_text = [None] + ["Excluded: " + "\n".join(textwrap.wrap(str(b["excluded"]), 46)) + "\n" + counts(b, "_removed")
                          for b in boxes[1:]]
    heights = [max(2, (t or "").count("\n") + 1) for t in side_text]
    gap = [0.0] + [0.42 + 0.17 * h for h in heights[1:]]
    ys = list(np.cumsum(gap) * -1)
    total = -ys[-1] + 0.9
    fig, ax = _figure(7.4, max(1.8, 0.62 * total + 0.4))
    ax.set_axis_off()
    ax.set_xlim(0, 10)
    ax.set_ylim(ys[-1] - 0.45, 0.45)
    box = dict(boxstyle="round,pad=0.4", fc="#eef3f8", ec=_BLUE, lw=1)
    side = dict(boxstyle="round,pad=0.3", fc="#fbf1e6", ec=_ORANGE, lw=1)
    for k, b in enumerate(boxes):
        y = ys[k]
        ax.text(2.3, y, f"{b['title']}\n" + "\n".join(textwrap.wrap(counts(b), 34)), ha="center", va="center", bbox=box, fontsize=8)
        if k > 0:
            ax.annotate("", xy=(2.3, y + 0.3), xytext=(2.3, ys[k - 1] - 0.3), arrowprops=dict(arrowstyle="-|>", color=_GREY))
            ym = (y + ys[k - 1]) / 2
            ax.text(4.9, ym, side_text[k], ha="left", va="center", bbox=side, fontsize=7)
            ax.plot([2.3, 4.75], [ym, ym], color=_GREY, lw=0.8)
    return fig


def forest_plot(rows: Sequence[dict], xlabel: str = "Odds ratio (95% CI), log scale"):
    """Forest plot. ``rows``: dicts with ``label``, ``estimate``, ``conf_low``, ``conf_high``
    (ratios) and optional ``group`` (rows of one group share a colour)."""
    rows = [r for r in rows if np.isfinite([r["estimate"], r["conf_low"], r["conf_high"]]).all()]
    fig, ax = _figure(7.0, max(2.2, 0.28 * len(rows) + 1.0))
    groups = list(dict.fromkeys(r.get("group", "") for r in rows))
    colours = [_BLUE, _ORANGE, _GREEN, _RED, _GREY]
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        c = colours[groups.index(r.get("group", "")) % len(colours)]
        ax.plot([r["conf_low"], r["conf_high"]], [y, y], color=c, lw=1.4)
        ax.plot(r["estimate"], y, "s", color=c, ms=4.5)
    ax.axvline(1.0, color=_GREY, lw=0.8, ls="--")
    ax.set_xscale("log")
    if rows:
        lo = min(r["conf_low"] for r in rows)
        hi = max(r["conf_high"] for r in rows)
        ax.set_xticks(_ratio_ticks(lo / 1.05, hi * 1.05) or [1])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r["label"] for r in rows][::-1], fontsize=7.5)
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # unlabelled log ticks read as an unexplained band
    if len(groups) > 1:
        for g, c in zip(groups, colours):
            ax.plot([], [], "s", color=c, label=g)
        ax.legend(frameon=False, fontsize=7.5, loc="best")
    return fig


def volume_curve(volume, estimate, conf_low, conf_high, rug: Sequence[float] = (), reference: float | None = None,
                 xlabel: str = "Annual hospital volume (cases)", ylabel: str = "Odds ratio (95% CI)"):
    """Spline odds ratio against volume with its confidence band and a rug of hospital volumes."""
    fig, ax = _figure()
    v = np.asarray(volume, float)
    est, conf_low, conf_high = (np.asarray(a, float) for a in (estimate, conf_low, conf_high))
    finite = np.concatenate([x[np.isfinite(x) & (x > 0)] for x in (est, conf_low, conf_high)])
    # an interval that runs off to 0 or infinity must not squash the curve: cap the axis
    lo_lim = max(float(np.min(finite)) if finite.size else 0.5, 0.05)
    hi_lim = min(float(np.max(finite)) if finite.size else 2.0, 20.0)
    lo_lim, hi_lim = min(lo_lim, 0.8), max(hi_lim, 1.25)
    conf_low = np.clip(np.nan_to_num(conf_low, nan=lo_lim), lo_lim, hi_lim)
    conf_high = np.clip(np.nan_to_num(conf_high, nan=hi_lim, posinf=hi_lim), lo_lim, hi_lim)
    estimate = est
    ax.fill_between(v, conf_low, conf_high, color=_BLUE, alpha=0.18, lw=0, label="95% CI")
    ax.plot(v, estimate, color=_BLUE, lw=1.8, label="Odds ratio")
    ax.axhline(1.0, color=_GREY, lw=0.8, ls="--")
    if reference is not None and np.isfinite(reference):
        ax.axvline(reference, color=_GREY, lw=0.6, ls=":")
    ax.set_yscale("log")
    lo, hi = lo_lim / 1.1, hi_lim * 1.1
    ax.set_ylim(lo, hi)
    ax.set_yticks(_ratio_ticks(lo, hi) or [1])
    rug = np.asarray(rug, float)
    if rug.size:
        base = lo * (hi / lo) ** 0.02
        ax.plot(rug, np.full(rug.shape, base), "|", color="black", ms=8, alpha=0.35, label="Hospital-years")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # unlabelled log ticks read as an unexplained band
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=7.5)
    return fig


def love_plot(rows: Sequence[dict], methods: Sequence[str]):
    """Absolute standardized mean differences per covariate, unweighted and per weighting method.
    ``rows``: dicts with ``covariate`` and one key per method (``unweighted``, ``iptw``, ...)."""
    fig, ax = _figure(6.4, max(2.4, 0.22 * len(rows) + 1.0))
    markers = ["o", "s", "^", "D"]
    colours = [_GREY, _BLUE, _ORANGE, _GREEN]
    ys = np.arange(len(rows))[::-1]
    for m, mk, c in zip(methods, markers, colours):
        x = [abs(float(r.get(m, np.nan))) for r in rows]
        ax.plot(x, ys, mk, color=c, ms=4, label=m, ls="none")
    ax.axvline(0.1, color=_RED, lw=0.8, ls="--")
    ax.set_yticks(ys)
    ax.set_yticklabels([r["covariate"] for r in rows], fontsize=7)
    ax.set_xlabel("Absolute standardized mean difference")
    ax.legend(frameon=False, fontsize=7.5, loc="lower right")
    return fig


def cif_plot(curves: Sequence[dict], xlabel: str = "Days after surgery", ylabel: str = "Cumulative incidence, %"):
    """Cumulative incidence curves, in percent. ``curves``: dicts with ``label``, ``time``,
    ``cif`` (a proportion) and optional ``linestyle`` and ``colour`` (an index: one colour per
    group, one line style per state)."""
    fig, ax = _figure(6.4, 3.9)
    colours = [_BLUE, _ORANGE, _GREEN, _RED, _GREY]
    for i, c in enumerate(curves):
        k = c["colour"] if "colour" in c else (i // 2 if c.get("linestyle") else i)
        ax.step(c["time"], 100 * np.asarray(c["cif"], float), where="post", color=colours[k % len(colours)],
                ls=c.get("linestyle", "-"), lw=1.5, label=c["label"])
    ax.set_ylim(0, 100)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=7.5, ncols=2 if len(curves) > 4 else 1)
    return fig


#: Funnel points by their position against the control limits: colours (narrowest limit
#: first) and legend text.
_FLAG_STYLE = {"within": ([_BLUE], "Within the limits"), "above": ([_ORANGE, _RED], "Above the {c} limit"),
               "below": (["#7fb685", _GREEN], "Below the {c} limit")}


def funnel_plot(n, rate, overall: float, limits: Sequence[dict], ylabel: str = "Risk-standardized rate, %",
                flags: Sequence[str] | None = None):
    """Funnel plot in percent: one anonymous point per hospital (cases, rate as a proportion)
    and control limits. ``limits``: dicts with ``coverage``, ``n``, ``lower``, ``upper``.
    ``flags`` (``within``, ``above 95%``, ``below 99.8%``, ... per point) colour the points
    outside the limits and name them in the legend."""
    fig, ax = _figure()
    n, rate = np.asarray(n, float), 100 * np.asarray(rate, float)
    flags = np.asarray(list(flags) if flags is not None else ["within"] * len(n), dtype=object)
    coverages = sorted({str(f).partition(" ")[2] for f in flags if str(f) != "within"}, key=lambda c: float(c.rstrip("%") or 0))
    for flag in sorted(set(flags), key=lambda f: (f != "within", f)):
        side, _, cov = str(flag).partition(" ")
        colours, text = _FLAG_STYLE.get(side, ([_GREY], str(flag)))
        colour = colours[min(coverages.index(cov), len(colours) - 1)] if cov in coverages else colours[0]
        m = flags == flag
        ax.scatter(n[m], rate[m], s=9 if side == "within" else 14, color=colour, alpha=0.6 if side == "within" else 0.9,
                   lw=0, label=text.format(c=cov) if side != "within" or len(set(flags)) > 1 else "Hospitals")
    ax.axhline(100 * overall, color=_GREY, lw=1.0, label="Overall")
    styles = ["--", ":"]
    for i, lim in enumerate(limits):
        ax.plot(lim["n"], 100 * np.asarray(lim["lower"], float), color=_RED, lw=0.9, ls=styles[i % 2],
                label=f"{100 * float(lim['coverage']):g}% limits")
        ax.plot(lim["n"], 100 * np.asarray(lim["upper"], float), color=_RED, lw=0.9, ls=styles[i % 2])
    ax.set_xlabel("Patients per hospital")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False, fontsize=7.5)
    return fig


def trends_plot(years: Sequence, counts: Sequence[float | None], series: dict[str, Sequence[float | None]],
                ylabel: str = "Patients with the outcome, %"):
    """Patients per fiscal year (bars) and outcome proportions (lines, right axis, in percent);
    ``None`` marks a suppressed value, which is not drawn."""
    fig, ax = _figure(8.0, 3.6)
    x = np.arange(len(years))
    h = np.array([np.nan if c is None else c for c in counts], float)
    ax.bar(x, np.nan_to_num(h), color="#c9d9e8", label="Patients")
    ax.set_xticks(x)
    ax.set_xticklabels([str(y) for y in years])
    ax.set_ylabel("Patients")
    ax2 = ax.twinx()
    for (name, vals), c in zip(series.items(), [_RED, _ORANGE, _GREEN, _BLUE, "#6a3d9a", "#8c564b"]):
        ax2.plot(x, [np.nan if v is None else 100 * v for v in vals], "o-", color=c, ms=3, lw=1.3, label=name)
    ax2.set_ylabel(ylabel)
    ax2.set_ylim(bottom=0)
    ax2.spines["right"].set_visible(True)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax2.legend(lines[0] + lines2[0], lines[1] + lines2[1], frameon=False, fontsize=7.5, loc="upper left",
               bbox_to_anchor=(1.12, 1.0))
    return fig
