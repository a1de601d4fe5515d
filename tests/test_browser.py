"""The report in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by
Playwright for Python, with every non-file request blocked and recorded."""

import json
import shutil
from pathlib import Path

import pytest

from hospstudy.report.html import SECTION_TITLES, ReportInputs, published_reference, render_report
from hospstudy.report.labels import code_like
from hospstudy.report.results import Results

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ARTIFACTS = Path(__file__).parent / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

# elements wider than their box: the page itself, and each table's scroll wrapper
OVERFLOW = """() => {
  const out = [];
  const d = document.documentElement;
  if (d.scrollWidth > d.clientWidth + 1) out.push(['page', d.scrollWidth, d.clientWidth]);
  document.querySelectorAll('.scroll').forEach(e => {
    if (e.scrollWidth > e.clientWidth + 1) out.push([e.querySelector('table').id, e.scrollWidth, e.clientWidth]);
  });
  return out;
}"""

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make browser installs it)")]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from test_report import STUDY, TRUTH, make_analytic, make_attrition, make_results

    out = tmp_path_factory.mktemp("browser_report")
    df = make_analytic(n=2000, hospitals=80)
    inp = ReportInputs(study=STUDY, attrition=make_attrition(len(df), len(df)), analytic=df,
                       results=Results.from_dict(json.loads(json.dumps(make_results()))), truth=TRUTH,
                       run_info={"run_date": "2026-01-01T00:00:00Z", "seed": 1}, published=published_reference())
    return render_report(inp, out)


def test_report_in_headless_chromium(report, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    requests, errors = [], []
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS,
                                                    headless=True, viewport={"width": 1280, "height": 900})
        try:
            def route(r):
                if r.request.url.startswith("file://"):
                    r.continue_()
                else:
                    requests.append(r.request.url)
                    r.abort()

            ctx.route("**/*", route)
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith(("file://", "data:")) else requests.append(r.url))
            page.goto(report.html.resolve().as_uri(), wait_until="load")
            headings = page.eval_on_selector_all("h1, h2", "els => els.map(e => e.textContent.trim())")
            sizes = page.eval_on_selector_all(
                "figure svg", "els => els.map(e => { const b = e.getBoundingClientRect(); return [e.closest('figure').id, b.width, b.height]; })")
            banner = page.locator("#synthetic-banner").inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
            overflow_screen = page.evaluate(OVERFLOW)
            text = page.evaluate("Array.from(document.querySelectorAll('section:not(#methods)')).map(s => s.innerText).join('\\n')")
            page.emulate_media(media="print")
            page.set_viewport_size({"width": 718, "height": 1000})  # A4 (210 mm) less 2 x 12.7 mm margins, at 96 dpi
            overflow_print = page.evaluate(OVERFLOW)
            print_height = page.evaluate("document.body.scrollHeight")
        finally:
            ctx.close()
    assert requests == [], f"the report tried to reach the network: {requests}"
    assert errors == [], f"console errors: {errors}"
    for _, title in SECTION_TITLES[1:]:
        assert any(title in h for h in headings), f"missing section heading {title!r}; got {headings}"
    assert headings[0].startswith("Spinal metastasis surgery")
    assert len(sizes) == 7, sizes
    for fig_id, w, h in sizes:
        assert w > 50 and h > 50, f"{fig_id} has size {w}x{h}"
    assert "SYNTHETIC DATA" in banner
    assert print_height > 0
    assert overflow_screen == [], f"wider than the page at 1280 px: {overflow_screen}"
    assert overflow_print == [], f"wider than an A4 page in print: {overflow_print}"
    assert "…" not in text, "a label was cut"
    found = code_like(text)
    assert found == [], f"code-like identifiers in the visible text: {found}"
    from PIL import Image

    pngs = [p for p in report.figures if p.suffix == ".png"]
    assert len(pngs) == 7 and all(min(Image.open(p).info["dpi"]) >= 299.9 for p in pngs)
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000
