"""report.html: one self-contained page per run, checked in headless Chromium (not blank, every
section and chart there, nothing logged to the console), re-rendered by `compress report`, and
safe against hostile names in a report."""

from __future__ import annotations

import html
import json
import re
import shutil

import pytest
from browser import blank, render

from compress.cli import main
from compress.report import page as report_html

SECTIONS = ("Artifacts", "Size and latency", "Accuracy and drift per head",
            "Confusion difference against the float model",
            "Per layer: weights and quantization sensitivity", "Kernels and time per op type",
            "Recipe candidates",
            "Environment and reproduction")  # fmt: skip


def test_the_cnn_report_renders_in_a_browser_with_every_section(cnn_run, tmp_path):
    page = cnn_run["run_dir"] / "report.html"
    # self-contained: nothing fetched, no script (namespace names are not fetched)
    text = re.sub(r'xmlns(:\w+)?="[^"]*"', "", page.read_text())
    assert not re.search(r"<script|<link|@import|url\((?!#)|src=|https?:|file:", text)
    shot = tmp_path / "cnn.png"
    seen = render(page, shot)
    assert not blank(shot)
    assert seen["console"] == [], seen["console"]
    dom = seen["dom"]
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in dom, section
    assert "PASSED" in dom or "FAILED" in dom
    # size, latency, SQNR per quantized artifact, one drift chart per head that drifted (a head
    # where every artifact matches the float model says "no drift" instead of an empty frame)
    report = cnn_run["report"]
    arts = report["verification"]["artifacts"]
    drifted = [h for h in arts[0]["heads"] if any(a["heads"][h].get("drift") for a in arts)]
    # a file whose layers could not be inspected says why instead (layer_errors.unavailable)
    inspected = [a for a in arts if (a.get("layer_errors") or {}).get("layers")]
    assert dom.count("<svg") >= 2 + len(inspected) + len(drifted)
    for a in arts:
        why_not = (a.get("layer_errors") or {}).get("unavailable")
        if why_not:  # said on the page (escaped there: checked in its source)
            assert html.escape(why_not, quote=True) in page.read_text()
    if len(drifted) < len(arts[0]["heads"]):
        assert "no drift: every artifact matches the float model" in dom
    for a in report["verification"]["artifacts"]:
        assert a["name"] in dom
    assert "compress run cnn --quantize int8 --epochs 2" in dom  # the command to reproduce it


def test_a_page_with_a_script_error_is_caught(tmp_path):
    """The console check itself can fail."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><h1>x</h1><script>throw new Error('boom')</script></body></html>")
    seen = render(page, tmp_path / "bad.png", height=400)
    assert any("boom" in line for line in seen["console"]), seen["console"]


def test_compress_report_rerenders_and_the_run_still_verifies(cnn_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(cnn_run["run_dir"], run_dir)
    (run_dir / "report.html").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.html").read_text() == (cnn_run["run_dir"] / "report.html").read_text()
    assert main(["verify-artifacts", str(run_dir)]) == 0
    capsys.readouterr()


def test_compress_report_on_a_directory_without_a_report_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no report.json or tune.json" in err and err.count("\n") == 1


def test_hostile_names_are_text_not_markup(cnn_run):
    report = json.loads(json.dumps(cnn_run["report"]))
    report["model"] = "<script>alert(1)</script>"
    report["verification"]["artifacts"][0]["name"] = '<img src=x onerror="alert(2)">'
    text = report_html.run_page(report)
    assert "<script>alert(1)" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_confusion_difference_names_the_classes_that_moved(cnn_run):
    report = json.loads(json.dumps(cnn_run["report"]))
    arts = report["verification"]["artifacts"]
    quantized = next(a for a in arts if a["precision"] == "int8")
    matrix = quantized["heads"]["digit"]["confusion"]
    assert sum(map(sum, matrix)) == report["verification"]["test_samples"]
    keras = next(a for a in arts if a["runtime"] == "keras")["heads"]["digit"]["confusion"]
    moved = [row[:] for row in keras]
    moved[3][3] -= 2  # two samples of class 3 now predicted as 5
    moved[3][5] += 2
    quantized["heads"]["digit"]["confusion"] = moved
    text = report_html.run_page(report)
    assert "2 of" in text and "class 3: -2" in text


def test_a_thousand_class_head_is_stored_sparse_and_drawn_by_the_classes_that_moved(cnn_run):
    """An ImageNet-size head: its confusion is stored as non-zero cells (not a million
    counts), and report.html draws only the classes whose samples moved, labelled by id."""
    import numpy as np

    from compress.measure.heads import confusion, confusion_matrix

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 1000, 64)
    moved = labels.copy()
    moved[:3] = (moved[:3] + 1) % 1000  # three samples now predicted as the next class
    base, after = confusion(labels, labels, 1000), confusion(labels, moved, 1000)
    assert base["classes"] == 1000 and len(base["cells"]) == len(set(labels.tolist()))
    assert confusion_matrix(after).sum() == 64 and len(json.dumps(after)) < 2000
    report = json.loads(json.dumps(cnn_run["report"]))
    for a in report["verification"]["artifacts"]:
        a["heads"]["digit"]["confusion"] = after if a["precision"] == "int8" else base
    text = report_html.run_page(report)
    shown = sorted({int(c) for c in labels[:3]} | {int(c + 1) % 1000 for c in labels[:3]})
    # what is drawn is the moved classes' sub-matrix (drawn whole, 1000x1000 took 90 s)
    diff = confusion_matrix(after) - confusion_matrix(base)
    assert report_html._moved_classes(diff).tolist() == shown
    assert f"Drawn: {len(shown)} of the 1000 classes" in text and "3 of 64 samples moved" in text
    assert f">{shown[-1]}<" in text  # ticks name the class ids


def _with_zero_drift(report: dict) -> dict:
    report = json.loads(json.dumps(report))
    for a in report["verification"]["artifacts"]:
        for m in a["heads"].values():
            m["drift"] = 0.0
    return report


def test_a_head_without_drift_says_so_instead_of_an_empty_chart(cnn_run):
    text = report_html.run_page(_with_zero_drift(cnn_run["report"]))
    head = text.split("<h2>Accuracy and drift per head</h2>", 1)[1].split("<h2>", 1)[0]
    assert "no drift: every artifact matches the float model on this head" in head
    assert "<svg" not in head  # no empty frame
    drifted = json.loads(json.dumps(cnn_run["report"]))
    drifted["verification"]["artifacts"][-1]["heads"]["digit"]["drift"] = 0.5
    head = report_html.run_page(drifted).split("<h2>Accuracy and drift per head</h2>", 1)[1]
    assert "<svg" in head.split("<h2>", 1)[0]


def test_one_colour_means_one_thing_across_the_charts(cnn_run):
    """A runtime's colour is its own on every chart; the size chart's raw/gzip bars and the
    drift colours are never a runtime's."""
    from compress.report import markup

    arts = cnn_run["report"]["verification"]["artifacts"]
    colours = markup.runtime_colors(a["runtime"] for a in arts)
    others = {markup.RAW, markup.GZIP, markup.LOST, markup.GAINED, markup.GATE, markup.CAPPED}
    assert not others & set(markup.PALETTE)
    assert len(set(colours.values())) == len(colours)
    text = report_html.run_page(cnn_run["report"])
    section = text.split("<h2>Size and latency</h2>", 1)[1].split("<h2>", 1)[0]
    _, size, latency = section.split('<div class="chart">')
    assert "size per artifact" in size and "latency, batch 1" in latency
    assert not any(c in size for c in colours.values())  # sizes: greys only
    assert markup.RAW in size and markup.GZIP in size
    timed = {a["runtime"] for a in arts if a.get("latency_ms")}
    assert all(colours[r] in latency for r in timed)


def test_the_artifact_table_fits_the_page_at_1280_px(cnn_run, tmp_path):
    """Measured in Chromium: a copy of the page with a probe script that writes the widths."""
    page = tmp_path / "probe.html"
    probe = (
        "<script>var w=document.querySelector('.wide');"
        "document.body.setAttribute('data-widths',[document.documentElement.scrollWidth,"
        "window.innerWidth,w.scrollWidth,w.clientWidth].join(','))</script>"
    )
    page.write_text(
        (cnn_run["run_dir"] / "report.html").read_text().replace("</body>", probe + "</body>")
    )
    seen = render(page, tmp_path / "probe.png", height=900)
    widths = re.search(r'data-widths="([\d,]+)"', seen["dom"])
    assert widths, seen["dom"][:500]
    page_w, window_w, table_w, box_w = map(int, widths.group(1).split(","))
    assert page_w <= window_w and table_w <= box_w, (page_w, window_w, table_w, box_w)


# In the page a test renders: every <text> of every chart measured by the browser against its
# <svg>'s box; those that stick out are written into the DOM.
_MEASURE = """<script>
const out = [];
document.querySelectorAll("svg").forEach((svg) => {
  const box = svg.getBoundingClientRect();
  svg.querySelectorAll("text").forEach((t) => {
    const r = t.getBoundingClientRect();
    if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 ||
        r.bottom > box.bottom + 0.5) out.push(t.textContent);
  });
});
document.body.setAttribute("data-clipped", JSON.stringify(out));
document.body.setAttribute("data-texts", document.querySelectorAll("svg text").length);
</script>"""


def test_charts_keep_every_label_inside_their_frame_in_a_browser(tmp_path):
    """The charts are SVG written by compress (report/charts.py), their margins from an estimate
    of each label's width: Chromium draws the widest labels (capitals, W and m, a 48-character
    layer name), long titles and axis labels, and no text leaves its chart."""
    from compress.report import charts, markup

    labels = ["W" * 30, "model_int8.onnx", "…" + "m" * 47, "x"]
    bars = [charts.Bars([3e6, -2.5, 0.0, 1234.5], markup.RAW, "raw " + "M" * 20,
                        upper=[4e6, 0.0, 1.0, 2000.0]),
            charts.Bars([1.0, 2.0, 3.0, 4.0], ["#4c78a8"] * 4, "gzip")]  # fmt: skip
    lines = [charts.Line(0.0, "#333"), charts.Line(2.0, markup.GATE, True, "max drift")]
    wide = charts.bar_chart(labels, bars, title="T" * 90, xlabel="SQNR " + "W" * 80, lines=lines,
                            tick_format=lambda x: f"{x / 1e6:g} MB")  # fmt: skip
    small = charts.bar_chart(["a"], [charts.Bars([0.001], "#222")], title="", xlabel="ms")
    heat = charts.heatmap([[0, -3], [3, 0]], ["998", "999"], title="m" * 60,
                          xlabel="predicted class", ylabel="true class")  # fmt: skip
    body = [charts.chart(wide), charts.chart(small, heat)]
    page = tmp_path / "charts.html"
    page.write_text(markup.page("charts", body).replace("</body>", _MEASURE + "</body>"))
    dom = render(page, tmp_path / "charts.png", height=1600)["dom"]
    clipped = re.search(r'data-clipped="([^"]*)"', dom)
    assert clipped, dom[:500]
    assert json.loads(html.unescape(clipped.group(1))) == []
    texts = int(re.search(r'data-texts="(\d+)"', dom).group(1))
    assert texts == sum(b.count("<text") for b in (wide, small, heat))  # all were measured


def test_bar_lengths_are_proportional_to_the_values():
    from compress.report import charts

    svg = charts.bar_chart(["a", "b", "c"], [charts.Bars([1.0, 2.0, 4.0], "#111")], title="t",
                           xlabel="x")  # fmt: skip
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)" '
                                           r'height="[\d.]+" fill="#111"', svg)]  # fmt: skip
    assert len(widths) == 3
    assert widths[1] == pytest.approx(2 * widths[0], rel=0.01)
    assert widths[2] == pytest.approx(4 * widths[0], rel=0.01)
    assert charts.nice_ticks(0, 4) == [0, 1, 2, 3, 4]
    assert charts.nice_ticks(-2.5, 3e6)[-1] >= 3e6 and charts.nice_ticks(-2.5, 3e6)[0] <= -2.5
    assert "<script>" not in charts.bar_chart(["<script>"], [charts.Bars([1], "#111")],
                                              title="<b>", xlabel="&")  # fmt: skip


def test_a_layer_with_undefined_sqnr_is_named_and_the_page_still_renders(cnn_run):
    """A layer whose fp32 output is all zeros on the samples has no SQNR (stored as None):
    the page names it instead of failing, and a chart drawn from NaN or infinite values draws
    them at zero instead of writing NaN into the SVG."""
    from compress.report import charts

    report = json.loads(json.dumps(cnn_run["report"]))
    art = next(a for a in report["verification"]["artifacts"]
               if (a.get("layer_errors") or {}).get("layers"))  # fmt: skip
    art["layer_errors"]["layers"].append({"layer": "dead_relu", "op": "Relu", "sqnr_db": None})
    text = report_html.run_page(report)
    assert "SQNR undefined" in text and "dead_relu" in text.split("SQNR undefined", 1)[1]
    bars = charts.Bars([float("nan"), float("inf"), 1.0], "#111")
    svg = charts.bar_chart(["a", "b", "c"], [bars], title="t", xlabel="x")
    assert "nan" not in svg.lower() and "inf" not in svg.lower()


def test_the_sensitivity_line_says_undefined_rather_than_none():
    from compress.measure.sensitivity import summary

    rows = [{"layer": "dead", "op": "Relu", "sqnr_db": None}, {"layer": "d", "op": None,
                                                                  "sqnr_db": 12.5}]  # fmt: skip
    assert summary(rows) == "dead (Relu) SQNR undefined, d 12.5 dB"


def test_latency_timed_at_no_batch_size_draws_no_empty_frame(cnn_run):
    report = json.loads(json.dumps(cnn_run["report"]))
    for a in report["verification"]["artifacts"]:
        if a.get("latency_ms"):
            a["latency_ms"] = {"b1": {}}  # a timing that measured nothing
    text = report_html.run_page(report)
    section = text.split("<h2>Size and latency</h2>", 1)[1].split("<h2>", 1)[0]
    assert section.count('<div class="chart">') == 1  # the size chart only
