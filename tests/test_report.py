"""``advkit.report``: the four report files from a synthetic harness report (contents, escaping, atomicity),
loading and its errors, and ``diff_reports`` / ``advkit report diff``."""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from advkit.errors import AdvkitError
from advkit.report import SCHEMA_VERSION, diff_reports, load_report, to_html, to_junit, to_markdown, write_reports
from advkit.report.diff import format_diff

EPS = [0.1, 0.2, 0.3]
FAILING_GATE = "min_robust_acc[default,linf@0.1]"
OUTPUTS = {"report.json", "report.md", "report.html", "junit.xml"}


def _png() -> bytes:
    img = np.zeros((6, 8, 3), np.uint8)
    img[:, :4] = (0, 0, 255)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _threat_model(clean: float, robust: dict[str, list[float]], n: int) -> dict:
    attacks = []
    for label, accs in robust.items():
        results = [{"eps": e, "attacked": round(n * clean), "fooled": round(n * (clean - acc)), "robust_acc": acc,
                    "success_rate": (clean - acc) / clean, "norm_mean": e * 0.9, "norm_max": e, "time_s": 0.5}
                   for e, acc in zip(EPS, accs)]
        attacks.append({"attack": label.lower().split("-")[0], "label": label, "params": {},
                        "gradient_free": label == "Square", "results": results})
    worst = [{"eps": e, "robust_acc": min(accs[i] for accs in robust.values()),
              "robust": round(n * min(accs[i] for accs in robust.values())), "time_s": 1.5, "time_saved_s": 0.4}
             for i, e in enumerate(EPS)]
    return {"norm": "linf", "mode": "cascade", "eps": list(EPS), "attacks": attacks, "worst_case": worst}


def make_report() -> dict:
    """Two models, three eps, three attacks (cascade), checks with warn/fail/skip, one failing gate and one
    example grid holding a real PNG."""
    png = base64.b64encode(_png()).decode("ascii")
    models = [
        {"name": "default", "source": "advkit:mnist-lenet", "clean_acc": 0.99, "n": 1000,
         "threat_models": [_threat_model(0.99, {"FGSM": [0.89, 0.60, 0.30], "PGD-50": [0.80, 0.40, 0.10],
                                                 "Square": [0.79, 0.39, 0.10]}, 1000)],
         "checks": [{"name": "monotone_eps", "status": "pass", "message": "accuracy falls with eps",
                     "evidence": {"robust_acc": [0.79, 0.39, 0.10]}},
                    {"name": "single_step", "status": "warn", "message": "FGSM finds 40% of PGD's successes",
                     "evidence": {"ratio": 0.4}},
                    {"name": "gradient_free", "status": "fail", "message": "gradients are masked",
                     "evidence": {"samples_missed_by_white_box": {"linf@0.1": 10}}},
                    {"name": "zero_grad", "status": "skip", "message": "not run", "evidence": {}}],
         "examples": [{"eps": 0.1, "attack": "PGD-50", "png_base64": png}]},
        {"name": "robust", "source": "runs/robust/model.safetensors", "clean_acc": 0.95, "n": 1000,
         "threat_models": [_threat_model(0.95, {"FGSM": [0.93, 0.90, 0.85], "PGD-50": [0.91, 0.86, 0.80],
                                                 "Square": [0.91, 0.86, 0.80]}, 1000)],
         "checks": [{"name": "monotone_eps", "status": "pass", "message": "accuracy falls with eps",
                     "evidence": {}}],
         "examples": []},
    ]
    models[0]["threat_models"][0]["attacks"][2]["results"][2]["norm_mean"] = float("nan")
    gates = [
        {"name": "min_clean_acc[default]", "kind": "min_clean_acc", "model": "default", "threshold": 0.97,
         "value": 0.99, "passed": True, "message": "clean accuracy 99.0% >= 97.0%"},
        {"name": FAILING_GATE, "kind": "min_robust_acc", "model": "default", "threshold": 0.85, "value": 0.79,
         "passed": False, "message": "robust accuracy 79.0% < 85.0%"},
        {"name": "check[robust,monotone_eps]", "kind": "check", "model": "robust", "threshold": None,
         "value": "pass", "passed": True, "message": "monotone_eps passed"},
    ]
    return {"schema": "advkit.report", "schema_version": 1, "created": "2026-11-25T10:00:00Z",
            "environment": {"advkit": "0.1.0", "torch": "2.14.1", "python": "3.11.9", "platform": "Linux",
                            "device": "cpu", "world_size": 1},
            "config": {"mode": "cascade", "threat_models": [{"norm": "linf", "eps": EPS}]},
            "data": {"dataset": "mnist", "split": "test", "n": 1000, "num_classes": 10, "shape": [1, 28, 28]},
            "models": models, "gates": gates, "passed": False,
            "timing": {"total_s": 40.2, "attack_s": 35.0, "time_saved_s": 20.1}}


@pytest.fixture
def report() -> dict:
    return make_report()


def _worst(report: dict, model: int = 0) -> list[dict]:
    return report["models"][model]["threat_models"][0]["worst_case"]


def _dump(path: Path, report: dict) -> Path:
    path.write_text(json.dumps(report))
    return path


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``advkit ARGS`` in-process: (exit code, stdout, stderr)."""
    from advkit.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------- writing

def test_write_reports_writes_exactly_four_files_and_json_round_trips(tmp_path, report):
    out = tmp_path / "new" / "reports"
    paths = write_reports(report, out)
    assert {p.name for p in paths} == OUTPUTS and all(p.parent == out for p in paths)
    assert set(os.listdir(out)) == OUTPUTS  # no temp files left behind
    text = (out / "report.json").read_text()
    assert "NaN" not in text and text.startswith('{\n  "schema"')
    loaded = load_report(out / "report.json")
    expected = copy.deepcopy(report)
    expected["models"][0]["threat_models"][0]["attacks"][2]["results"][2]["norm_mean"] = None
    assert loaded == expected
    # writing the loaded report again gives the same bytes
    write_reports(loaded, tmp_path / "again")
    assert (tmp_path / "again" / "report.json").read_text() == text


def test_bad_report_writes_nothing(tmp_path, report):
    del report["models"][1]["clean_acc"]
    with pytest.raises(AdvkitError, match=r"models\[1\]: missing key 'clean_acc'"):
        write_reports(report, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_rendering_failure_leaves_out_dir_empty(tmp_path, report, monkeypatch):
    import advkit.report

    def boom(_report):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(advkit.report, "to_junit", boom)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="renderer bug"):
        write_reports(report, out)
    assert os.listdir(out) == []


def test_failing_gate_named_in_every_format(report):
    assert FAILING_GATE in to_markdown(report)
    assert FAILING_GATE in to_html(report)
    assert FAILING_GATE in to_junit(report)


# ------------------------------------------------------------------------------------------ markdown

def test_markdown_summary(report):
    md = to_markdown(report)
    assert md.splitlines()[0] == "## ❌ advkit robustness: FAILED (1 of 3 gates failing)"
    assert "FGSM (cumulative)" in md and "PGD-50 (cumulative)" in md
    # the eps 0.1 row of the default model: eps, clean, three attacks, worst case
    row = next(line for line in md.splitlines() if line.startswith("| 0.1 | 99.0%"))
    assert [c.strip() for c in row.strip("|").split("|")] == ["0.1", "99.0%", "89.0%", "80.0%", "79.0%", "**79.0%**"]
    assert "Checks: 1 pass, 1 warn, 1 fail, 1 skip" in md
    assert "gradients are masked" in md and "FGSM finds 40% of PGD's successes" in md
    assert "accuracy falls with eps" not in md  # passing checks are only counted
    gate_row = next(line for line in md.splitlines() if FAILING_GATE in line and line.startswith("|"))
    assert f"**{FAILING_GATE}**" in gate_row and "❌" in gate_row and "79.0%" in gate_row and "85.0%" in gate_row
    assert "40.2 s" in md and "20.1 s saved" in md


def test_markdown_full_mode_and_no_gates(report):
    for m in report["models"]:
        m["threat_models"][0]["mode"] = "full"
    report["gates"], report["passed"] = [], True
    md = to_markdown(report)
    assert "cumulative" not in md
    assert md.splitlines()[0] == "## ✅ advkit robustness: PASSED (no gates)"
    assert "No gates configured." in md


# ---------------------------------------------------------------------------------------------- html

def test_html_is_self_contained(report):
    page = to_html(report)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page and "@import" not in page and "url(" not in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 1 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert base64.b64decode(srcs[0].split(",", 1)[1]) == _png()
    assert page.count("<svg") == 2  # one plot per model and threat model
    assert page.count("<polyline") == 2 * 4  # three attacks and the worst case each
    assert "robust accuracy" in page and "eps (linf)" in page and "100%" in page


def test_html_shows_checks_gates_and_evidence(report):
    page = to_html(report)
    assert 'class="status status-fail"' in page and 'class="status status-warn"' in page
    bad = re.search(r'<tr class="bad">(.*?)</tr>', page).group(1)
    assert FAILING_GATE in bad and "FAIL" in bad
    assert page.count('<tr class="bad">') == 1
    assert "<details><summary>evidence</summary><pre>{&quot;samples_missed_by_white_box&quot;: " in page


def test_html_escapes_report_text(report):
    evil = "<script>alert(1)</script>"
    report["models"][1]["name"] = evil
    report["models"][0]["checks"][1]["message"] = 'a "quoted" <b>message</b> & more'
    report["models"][0]["threat_models"][0]["attacks"][0]["label"] = "FGSM<img src=x>"
    page = to_html(report)
    assert "<script" not in page and "<img src=x>" not in page and "<b>message" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &quot;quoted&quot; &lt;b&gt;message&lt;/b&gt; &amp; more" in page
    assert "<script" not in to_markdown(report)


def _polyline_points(page: str) -> list[list[tuple[float, float]]]:
    lines = re.findall(r'<polyline points="([^"]*)"', page)
    return [[tuple(map(float, p.split(","))) for p in line.split()] for line in lines]


def test_html_plot_one_eps_many_eps_and_missing_values(report):
    one = make_report()
    for m in one["models"]:
        tm = m["threat_models"][0]
        tm["eps"] = [0.1]
        for a in tm["attacks"]:
            a["results"] = a["results"][:1]
        tm["worst_case"] = tm["worst_case"][:1]
    lines = _polyline_points(to_html(one))
    assert len(lines) == 8 and all(len(pts) == 2 for pts in lines)  # clean accuracy at eps 0, then eps 0.1
    assert all(math.isfinite(v) for pts in lines for xy in pts for v in xy)

    tm = report["models"][0]["threat_models"][0]
    tm["eps"] = [i / 100 for i in range(1, 61)]
    for a in tm["attacks"]:
        a["results"] = [{"eps": e, "robust_acc": 1 - e} for e in tm["eps"]]
    tm["worst_case"] = [{"eps": e, "robust_acc": 1 - 1.5 * e} for e in tm["eps"]]
    tm["worst_case"][5]["robust_acc"] = None
    tm["worst_case"][6]["robust_acc"] = float("nan")
    tm["attacks"][1]["results"][0]["robust_acc"] = float("inf")
    page = to_html(report)
    lines = _polyline_points(page)
    assert [len(pts) for pts in lines[:4]] == [59, 61, 60, 61]  # worst case (drawn first), then the attacks
    assert all(math.isfinite(v) for pts in lines for xy in pts for v in xy)
    assert "nan" not in page.lower().replace("nan-", "")
    # the x axis reaches the largest eps; every point lies inside the plot area
    xs = [x for pts in lines for x, _ in pts]
    ys = [y for pts in lines for _, y in pts]
    assert max(xs) - min(xs) > 100 and min(ys) >= 0


# --------------------------------------------------------------------------------------------- junit

def test_junit_one_testcase_per_gate(report):
    root = ET.fromstring(to_junit(report))
    suite = root.find("testsuite")
    assert root.tag == "testsuites" and suite.get("name") == "advkit.robustness"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [g["name"] for g in report["gates"]]
    assert all(c.get("classname") == "advkit.gates" for c in cases)
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and float(suite.get("time")) == 40.2
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == [FAILING_GATE]
    assert failed[0].find("failure").get("message") == "robust accuracy 79.0% < 85.0%"


def test_junit_without_gates_and_with_odd_text(report):
    report["gates"], report["passed"] = [], True
    suite = ET.fromstring(to_junit(report)).find("testsuite")
    assert [c.get("name") for c in suite.findall("testcase")] == ["report"]
    assert suite.get("failures") == "0" and suite.find("testcase/failure") is None
    report["gates"] = [{"name": 'a<&>"\x00b', "kind": "check", "passed": False, "message": "bad\x07 <check>"}]
    case = ET.fromstring(to_junit(report)).find("testsuite/testcase")
    assert case.get("name") == 'a<&>"\ufffdb' and case.find("failure").get("message") == "bad\ufffd <check>"


# -------------------------------------------------------------------------------------------- loading

def test_load_report_errors(tmp_path, report):
    with pytest.raises(AdvkitError, match=r"missing\.json: no such report file"):
        load_report(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(AdvkitError, match=r"bad\.json: not JSON \(line 1, column 2"):
        load_report(bad)
    other = _dump(tmp_path / "other.json", {"schema": "something.else", "schema_version": 1})
    with pytest.raises(AdvkitError, match=r'other\.json: not an advkit report \(no "schema": "advkit.report"\)'):
        load_report(other)
    report["schema_version"] = 2
    v2 = _dump(tmp_path / "v2.json", report)
    with pytest.raises(AdvkitError) as e:
        load_report(v2)
    assert str(e.value) == f"{v2}: schema version 2, this advkit reads version {SCHEMA_VERSION}"
    report["schema_version"] = 1
    report["models"][0]["threat_models"][0]["attacks"][1]["label"] = "FGSM"
    with pytest.raises(AdvkitError, match=r"threat_models\[0\]: two entries share the attack label 'FGSM'"):
        load_report(_dump(tmp_path / "dup.json", report))


# ----------------------------------------------------------------------------------------------- diff

def test_diff_identical_reports(tmp_path, capsys, report):
    result = diff_reports(report, copy.deepcopy(report))
    assert result.changes == [] and not result.regressed
    assert format_diff(result) == "no changes beyond tolerance 1.0%\n"
    a = _dump(tmp_path / "a.json", report)
    code, out, err = run_cli(capsys, "report", "diff", a, a)
    assert (code, out, err) == (0, "no changes beyond tolerance 1.0%\n", "")


def test_diff_worst_case_drop_is_a_regression(tmp_path, capsys, report):
    new = copy.deepcopy(report)
    _worst(new)[0]["robust_acc"] -= 0.05
    result = diff_reports(report, new)
    assert result.regressed
    [change] = result.changes
    assert change["model"] == "default" and change["what"] == "worst_case linf@0.1"
    assert change["kind"] == "regression" and change["delta"] == pytest.approx(-0.05)
    assert change["old"] == 0.79 and change["new"] == pytest.approx(0.74)
    code, out, err = run_cli(capsys, "report", "diff", _dump(tmp_path / "old.json", report),
                             _dump(tmp_path / "new.json", new))
    assert code == 1 and err == ""
    assert "REGRESSION  [default] worst_case linf@0.1: 79.0% -> 74.0% (-5.0 pts)" in out
    code, out, _ = run_cli(capsys, "report", "diff", tmp_path / "old.json", tmp_path / "new.json", "--json")
    assert code == 1
    parsed = json.loads(out)
    assert parsed["regressed"] is True and parsed["tol"] == 0.01 and len(parsed["changes"]) == 1
    # a tolerance above the drop accepts it
    code, _, _ = run_cli(capsys, "report", "diff", tmp_path / "old.json", tmp_path / "new.json", "--tol", "0.06")
    assert code == 0


def test_diff_within_tolerance_and_improvements(report):
    new = copy.deepcopy(report)
    _worst(new)[1]["robust_acc"] -= 0.005
    new["models"][0]["clean_acc"] = 0.98  # exactly the tolerance: not beyond it
    assert diff_reports(report, new, tol=0.01).changes == []
    better = copy.deepcopy(report)
    _worst(better, 1)[2]["robust_acc"] += 0.05
    better["models"][1]["threat_models"][0]["attacks"][0]["results"][2]["robust_acc"] -= 0.03
    result = diff_reports(report, better)
    assert [(c["what"], c["kind"]) for c in result.changes] == [("worst_case linf@0.3", "improvement"),
                                                                ("FGSM linf@0.3", "regression")]
    assert result.regressed  # a per-attack drop counts too


def test_diff_removed_eps_model_and_gate_flip(tmp_path, capsys, report):
    new = copy.deepcopy(report)
    tm = new["models"][0]["threat_models"][0]
    tm["eps"] = tm["eps"][:2]
    tm["worst_case"] = tm["worst_case"][:2]
    for a in tm["attacks"]:
        a["results"] = a["results"][:2]
    new["models"][0]["threat_models"][0]["eps"][0] += 1e-12  # float noise still matches
    result = diff_reports(report, new)
    assert [(c["what"], c["kind"], c["old"]) for c in result.changes] == [("eps linf@0.3", "removed", 0.1)]
    assert result.regressed
    code, out, _ = run_cli(capsys, "report", "diff", _dump(tmp_path / "old.json", report),
                           _dump(tmp_path / "new.json", new))
    assert code == 1 and out.startswith("REMOVED     [default] eps linf@0.3: 10.0% -> —")

    new = copy.deepcopy(report)
    del new["models"][1]["threat_models"][0]["attacks"][0]  # FGSM: cascade numbers after it may change
    result = diff_reports(report, new)
    assert [(c["what"], c["kind"]) for c in result.changes] == [("attack FGSM (linf)", "removed")]
    assert result.regressed and format_diff(result).startswith("REMOVED     [robust] attack FGSM (linf)\n")

    new = copy.deepcopy(report)
    new["models"][1]["name"] = "robust-v2"
    new["gates"][0]["passed"], new["gates"][0]["value"] = False, 0.96
    result = diff_reports(report, new)
    assert [(c["model"], c["what"], c["kind"]) for c in result.changes] == [
        ("robust", "model", "removed"), ("robust-v2", "model", "added"),
        ("default", "gate min_clean_acc[default]", "regression")]
    assert "REGRESSED: 1 regression, 1 added, 1 removed (tolerance 1.0%)" in format_diff(result)


def test_diff_schema_mismatch(tmp_path, capsys, report):
    v2 = copy.deepcopy(report)
    v2["schema_version"] = 2
    with pytest.raises(AdvkitError, match="cannot compare reports of schema version 1 and 2"):
        diff_reports(report, v2)
    code, out, err = run_cli(capsys, "report", "diff", _dump(tmp_path / "old.json", report),
                             _dump(tmp_path / "new.json", v2))
    assert code == 2 and out == ""
    assert err.strip() == f"advkit: error: {tmp_path / 'new.json'}: schema version 2, this advkit reads version 1"
    code, _, err = run_cli(capsys, "report", "diff", tmp_path / "old.json", tmp_path / "nope.json")
    assert code == 2 and "nope.json: no such report file" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------ typed Report

def _detector_entry() -> dict:
    det = {"n_test": 40, "threshold": 0.5, "calibrated_threshold": None, "pgd_steps": 5,
           "clean": {"auc": 0.99, "ap": 0.98, "eer": 0.02, "acc": 0.97, "acc_calibrated": None},
           "roc": {"clean": {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}},
           "subset": {"n": 40, "auc": 0.99},
           "robust": [{"eps": 16 / 255, "label": "16/255", "auc": 0.5, "ap": 0.5, "acc": 0.5,
                       "fakes_called_real": 0.9}],
           "laundering": {"jpeg_q30": {"auc": 0.9, "ap": 0.9, "acc": 0.8}}, "time_s": {"robust": 1.25}}
    return {"name": "det", "source": "runs/det/model.safetensors", "clean_acc": 0.97, "n": 40, "threat_models": [],
            "checks": [], "examples": [], "detection": det}


def test_typed_report_gives_back_the_same_json(report):
    from advkit.report import Report, ThreatModel

    report["models"].append(_detector_entry())
    # keys in another order than the dataclass fields, and keys the schema does not model, come back as they were
    report["models"][1] = {"clean_acc": 0.95, **report["models"][1], "future_field": {"x": [1, 2]}}
    report["models"][0]["threat_models"][0]["per_sample"] = {"fooled_by": [[0, -1]]}
    typed = Report.from_dict(report)
    assert json.dumps(typed.to_dict()) == json.dumps(report)
    tm = typed.models[0].threat_models[0]
    assert isinstance(tm, ThreatModel) and tm.norm == "linf" and tm.per_sample == {"fooled_by": [[0, -1]]}
    assert [a.label for a in tm.attacks] == ["FGSM", "PGD-50", "Square"] and tm.attacks[2].gradient_free is True
    assert tm.attacks[1].results[0].robust_acc == 0.80 and tm.worst_case[2].robust == 100
    assert typed.models[1].extra == {"future_field": {"x": [1, 2]}} and typed.models[1].detection is None
    assert typed.models[2].detection.laundering["jpeg_q30"]["auc"] == 0.9
    assert [g.passed for g in typed.gates] == [True, False, True] and typed.timing.total_s == 40.2
    assert typed.environment.world_size == 1 and typed.data.shape == [1, 28, 28]
    assert Report.from_dict(typed.to_dict()) == typed


def test_parts_built_in_code_write_only_what_they_hold():
    from advkit.report import Example, Gate, ModelEntry

    assert Gate(name="g", kind="check", passed=True).to_dict() == {
        "name": "g", "kind": "check", "model": None, "threshold": None, "value": None, "passed": True,
        "message": None}
    assert Example(eps=0.1, attack="worst case", png_base64="").to_dict() == {
        "eps": 0.1, "attack": "worst case", "png_base64": ""}  # no norm: left out, not null
    m = ModelEntry(name="m", source=["a", "b"], clean_acc=0.5, n=2, threat_models=[], checks=[], examples=[])
    assert "detection" not in m.to_dict() and ModelEntry.from_dict(m.to_dict()) == m


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["models"][1].pop("clean_acc"), r"^models\[1\]: missing key 'clean_acc'$"),
    (lambda r: r["models"][1].update(name="default"), r"^models: two entries share the model name 'default'$"),
    (lambda r: r["models"][0]["checks"][0].update(status="ok"),
     r"^models\[0\] \(default\)\.checks\[0\]: status 'ok' is not one of pass, warn, fail, skip$"),
    (lambda r: r["models"][0]["threat_models"][0]["worst_case"][1].pop("eps"),
     r"^models\[0\] \(default\)\.threat_models\[0\]\.worst_case\[1\]: missing key 'eps'$"),
    (lambda r: r["models"][0]["threat_models"][0].update(attacks={}),
     r"^models\[0\] \(default\)\.threat_models\[0\]\.attacks: expected a list, got dict$"),
    (lambda r: r["models"][0].update(detection={"n_test": 1, "clean": {}, "robust": [], "laundering": {}, "roc": {}}),
     r"^models\[0\] \(default\)\.detection\.clean: missing key 'auc'$"),
    (lambda r: r.update(timing=[]), r"^timing: expected an object, got list$"),
    (lambda r: r["gates"][2].pop("passed"), r"^gates\[2\]: missing key 'passed'$"),
])
def test_from_dict_names_the_first_problem(report, edit, message):
    from advkit.report import Report, validate

    edit(report)
    with pytest.raises(AdvkitError, match=message):
        Report.from_dict(report)
    with pytest.raises(AdvkitError, match=message):
        validate(report)


def test_writers_and_diff_take_a_typed_report(tmp_path, report):
    from advkit.report import Report, to_json

    typed = Report.from_dict(report)
    assert to_markdown(typed) == to_markdown(report) and to_html(typed) == to_html(report)
    assert to_junit(typed) == to_junit(report) and to_json(typed) == to_json(report)
    assert diff_reports(typed, report).changes == []
    write_reports(typed, tmp_path / "typed")
    write_reports(report, tmp_path / "plain")
    for name in OUTPUTS:
        assert (tmp_path / "typed" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()


def test_build_report_is_the_one_envelope():
    import torch

    from advkit.report import Report, build_report

    models = make_report()["models"]
    gates = make_report()["gates"]
    rep = build_report(config={"seed": 0}, data={"dataset": "mnist", "split": "test", "n": 1000},
                       models=models, gates=gates, device=torch.device("cpu"), world=2, total_s=40.256,
                       attack_s=35.004, time_saved_s=1.0 / 3)
    assert isinstance(rep, Report)
    d = rep.to_dict()
    assert list(d) == ["schema", "schema_version", "created", "environment", "config", "data", "models", "gates",
                       "passed", "timing"]
    assert (d["schema"], d["schema_version"]) == ("advkit.report", SCHEMA_VERSION)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", d["created"])
    assert d["environment"]["device"] == "cpu" and d["environment"]["world_size"] == 2
    assert set(d["environment"]) == {"advkit", "torch", "python", "platform", "device", "world_size"}
    assert d["models"] == models and d["gates"] == gates and d["passed"] is False
    assert d["timing"] == {"total_s": 40.26, "attack_s": 35.0, "time_saved_s": 0.33}
    assert build_report(config={}, data={}, models=[], gates=[], device=torch.device("cpu")).passed is True
    bad = make_report()["models"]
    del bad[0]["n"]
    with pytest.raises(AdvkitError, match=r"^models\[0\]: missing key 'n'$"):
        build_report(config={}, data={}, models=bad, gates=[], device=torch.device("cpu"))


# ------------------------------------------------------------------------------------------ intervals

def _wilson_by_definition(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson interval as the set of p with |k/n - p| <= z sqrt(p (1 - p) / n), found by bisection."""
    def inside(p: float) -> bool:
        return abs(k / n - p) <= z * math.sqrt(p * (1 - p) / n)

    def edge(a: float, b: float) -> float:  # inside(a) != inside(b)
        for _ in range(100):
            mid = (a + b) / 2
            a, b = (mid, b) if inside(mid) == inside(a) else (a, mid)
        return (a + b) / 2

    p = k / n
    return (0.0 if k == 0 else edge(0.0, p)), (1.0 if k == n else edge(p, 1.0))


@pytest.mark.parametrize("k, n", [(0, 10), (1, 10), (5, 10), (10, 10), (899, 1000), (3, 500), (500, 500)])
def test_wilson_interval_matches_its_definition(k, n):
    from advkit.report.stats import wilson_interval

    lo, hi = wilson_interval(k, n)
    assert (lo, hi) == pytest.approx(_wilson_by_definition(k, n), abs=1e-6)
    assert 0 <= lo <= k / n <= hi <= 1 and lo < hi
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_mcnemar_exact_p_values():
    from fractions import Fraction

    from advkit.report.stats import mcnemar_exact

    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == mcnemar_exact(6, 0) == pytest.approx(2 / 64)   # 2 * P(X <= 0), X ~ B(6, 1/2)
    assert mcnemar_exact(1, 5) == pytest.approx(2 * 7 / 64)
    assert mcnemar_exact(5, 5) == 1.0  # the doubled tail passes 1: capped
    # large counts stay exact (no float overflow of 2^n): against exact rational arithmetic
    b, c = 4700, 5000
    # one exact rational: the integer sum of C(n, i), i <= b, over 2^n, each coefficient from the one before
    # (C(n, i+1) = C(n, i) (n - i) / (i + 1), exact in integers); summing 4,701 Fractions, each reduced by a gcd
    # of ~9,700-bit numbers, took over a minute on a loaded machine
    n, coef, total = b + c, 1, 0
    for i in range(b + 1):
        total += coef
        coef = coef * (n - i) // (i + 1)
    assert coef == math.comb(n, b + 1)  # the recurrence stayed exact
    tail = Fraction(total, 2 ** n)
    assert mcnemar_exact(b, c) == pytest.approx(float(2 * tail), rel=1e-12)
    assert 0 < mcnemar_exact(b, c) < 0.05


def test_per_sample_codes_round_trip_compactly():
    from advkit.report.paired import decode_fooled_by, encode_fooled_by

    rows = [[-2, -1, 0, 1, 9, 10, 61], [-2, 0, 0, 3, -1, -1, 35]]
    enc = encode_fooled_by(rows)
    assert enc == ["-.019aZ", "-003..z"] and decode_fooled_by(enc) == rows
    assert decode_fooled_by(rows) == rows  # the list form, as the suite and older reports write it
    assert encode_fooled_by([[62, -1]]) == [[62, -1]]  # no character for it: stays a list
    with pytest.raises(AdvkitError, match=r"unknown outcome code '\?'"):
        decode_fooled_by(["..?"])


def _with_intervals(report: dict) -> dict:
    """The synthetic report with the intervals ``advkit eval`` writes (n = 1000)."""
    from advkit.report.stats import wilson_interval

    for m in report["models"]:
        m["clean_acc_ci"] = wilson_interval(round(m["clean_acc"] * m["n"]), m["n"])
        for tm in m["threat_models"]:
            for r in [r for a in tm["attacks"] for r in a["results"]] + tm["worst_case"]:
                r["robust_acc_ci"] = wilson_interval(round(r["robust_acc"] * m["n"]), m["n"])
    return report


def test_tables_show_intervals_and_plots_error_bars(report):
    from advkit.report import Report

    report = _with_intervals(report)
    md = to_markdown(report)
    row = next(line for line in md.splitlines() if line.startswith("| 0.1 | 99.0%"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["0.1", "99.0% [98.2, 99.5]", "89.0% [86.9, 90.8]", "80.0% [77.4, 82.4]",
                     "79.0% [76.4, 81.4]", "**79.0% [76.4, 81.4]**"]
    assert "robust accuracy with 95% Wilson intervals [lo, hi]:" in md
    assert "clean accuracy **99.0%** [98.2, 99.5] on 1000 samples" in md
    page = to_html(report)
    assert "<td>80.0% [77.4, 82.4]</td>" in page and "95% Wilson intervals" in page
    # an error bar per plotted point: eps 0 (clean) and three eps, for three attacks and the worst case, 2 models
    assert page.count('<path class="ci"') == 2 * 4 * 4
    assert page.count("<polyline") == 2 * 4  # the lines themselves are unchanged
    assert "(95% interval 76.4% to 81.4%)" in page
    # the intervals are typed fields, written back as they came
    typed = Report.from_dict(report)
    assert typed.models[0].clean_acc_ci == report["models"][0]["clean_acc_ci"]
    assert typed.models[0].threat_models[0].worst_case[0].robust_acc_ci == report["models"][0]["threat_models"][0][
        "worst_case"][0]["robust_acc_ci"]
    assert json.dumps(typed.to_dict()) == json.dumps(report)


def test_detection_tables_show_auc_intervals(report):
    det_entry = _detector_entry()
    det = det_entry["detection"]
    det["clean"].update(auc_ci=[0.97, 0.998], acc_ci=[0.85, 0.99])
    det["robust"][0]["auc_ci"] = [0.31, 0.69]
    det["roc"]["pgd@16/255"] = {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}
    report["models"].append(det_entry)
    md = to_markdown(report)
    assert "**0.9900 [0.9700, 0.9980]**" in md and "0.5000 [0.3100, 0.6900]" in md and "97.0% [85.0, 99.0]" in md
    page = to_html(report)
    assert "0.9900 [0.9700, 0.9980]" in page and "AUC 0.500 [0.310, 0.690]" in page


# ------------------------------------------------------------------------------------- paired diff

def _paired(report: dict, codes: dict[str, list[str]], **data) -> dict:
    """``report`` with per-sample outcomes (one code string per eps, per model) and numbers that match them."""
    from advkit.report.paired import decode_fooled_by, robust_after

    report = copy.deepcopy(report)
    report["data"].update(data)
    for m in report["models"]:
        rows = decode_fooled_by(codes[m["name"]])
        n = len(rows[0])
        m["n"] = report["data"]["n"] = n
        m["clean_acc"] = sum(c != -2 for c in rows[0]) / n
        tm = m["threat_models"][0]
        tm["per_sample"] = {"fooled_by": codes[m["name"]]}
        for ei, w in enumerate(tm["worst_case"]):
            w["robust"] = sum(robust_after(rows, ei))
            w["robust_acc"] = w["robust"] / n
            for ai, a in enumerate(tm["attacks"]):
                a["results"][ei]["robust_acc"] = sum(robust_after(rows, ei, ai)) / n
    return report


def _codes(n_robust: list[int], n: int = 200, wrong: int = 10, seed: int = 0) -> list[str]:
    """Codes for ``n`` samples: ``wrong`` misclassified, then per eps the first ``n_robust[ei]`` of the rest
    robust and the others fooled by attack 1 (cascade: fooled at one eps, fooled at the next)."""
    rows = []
    for r in n_robust:
        rows.append("-" * wrong + "." * r + "1" * (n - wrong - r))
    return rows


def test_diff_pairs_samples_and_says_whether_a_drop_is_significant(tmp_path, capsys, report):
    base = {"default": _codes([150, 100, 60]), "robust": _codes([180, 170, 160])}
    old = _paired(report, base)
    small = _paired(report, {**base, "default": _codes([150, 97, 60])})     # 3 samples lost: noise
    big = _paired(report, {**base, "default": _codes([150, 85, 60])})       # 15 lost, none gained
    result = diff_reports(old, small, tol=0.01)
    # the worst case and the cumulative columns that include the changed samples (at 0.3, FGSM's column
    # counts the samples fooled at 0.2 as fooled before it ran)
    assert [(c["what"], c["kind"], c["significant"]) for c in result.changes] == [
        ("worst_case linf@0.2", "regression", False), ("PGD-50 linf@0.2", "regression", False),
        ("Square linf@0.2", "regression", False), ("FGSM linf@0.3", "regression", False)]
    assert all(c["p_value"] == pytest.approx(0.25) for c in result.changes)  # 2 * (1/2)^3
    assert result.regressed and not diff_reports(old, small, significant_only=True).regressed
    tests = {(t["model"], t["what"]): t for t in result.paired}
    assert tests[("default", "worst_case linf@0.2")]["lost"] == 3 and tests[("robust", "clean_acc")]["p_value"] == 1
    assert tests[("default", "PGD-50 linf@0.2")]["old"] == old["models"][0]["threat_models"][0]["attacks"][1][
        "results"][1]["robust_acc"]  # the cumulative per-attack numbers are the report's
    result = diff_reports(old, big, significant_only=True)
    ch = result.changes[0]
    assert ch["what"] == "worst_case linf@0.2" and ch["significant"] and result.regressed
    assert ch["p_value"] == pytest.approx(2 / 2 ** 15)
    a, b = _dump(tmp_path / "old.json", old), _dump(tmp_path / "big.json", big)
    code, out, err = run_cli(capsys, "report", "diff", a, b, "--significant")
    assert code == 1 and err == ""
    assert ("REGRESSION  [default] worst_case linf@0.2: 50.0% -> 42.5% (-7.5 pts); McNemar p < 0.0001, "
            "significant") in out
    code, out, _ = run_cli(capsys, "report", "diff", a, _dump(tmp_path / "small.json", small), "--significant")
    assert code == 0 and "McNemar p = 0.25, not significant" in out and "significant drops only" in out
    code, out, _ = run_cli(capsys, "report", "diff", a, b, "--json")
    parsed = json.loads(out)
    assert parsed["changes"][0]["significant"] is True and len(parsed["paired"]) == 2 * (1 + 3 * 4)


@pytest.mark.parametrize("edit, needle", [
    (lambda r: r["data"].update(split="train"), "different data: data.split 'test' vs 'train'"),
    (lambda r: r["data"].update(fingerprint="sha256:1"), "different data: sample set 'sha256:0' vs 'sha256:1'"),
    (lambda r: r["models"][0]["threat_models"][0]["attacks"][1]["params"].update(steps=10),
     "different attack suites for model 'default' (linf): attack 2 (PGD-50) is pgd {} vs pgd {steps: 10}"),
    (lambda r: r["models"][0]["threat_models"][0]["attacks"].pop(),
     "different attack suites for model 'default' (linf): FGSM, PGD-50, Square vs FGSM, PGD-50"),
    (lambda r: r["models"][0]["threat_models"][0].update(mode="full"),
     "different suite modes for model 'default' (linf): cascade vs full"),
    (lambda r: r["models"][1]["threat_models"][0].update(eps=[0.1, 0.2, 0.4]),
     "different eps grids for model 'robust' (linf): [0.1, 0.2, 0.3] vs [0.1, 0.2, 0.4]"),
    (lambda r: r["models"][1]["threat_models"][0]["per_sample"].update(fooled_by=_codes([1, 1, 1], n=150)),
     "different sample sets for model 'robust' (linf): 200 vs 150 per-sample outcomes"),
])
def test_diff_refuses_reports_that_do_not_pair(tmp_path, capsys, report, edit, needle):
    codes = {"default": _codes([150, 100, 60]), "robust": _codes([180, 170, 160])}
    old = _paired(report, codes, fingerprint="sha256:0")
    new = copy.deepcopy(old)
    edit(new)
    with pytest.raises(AdvkitError, match=re.escape(needle)):
        diff_reports(old, new)
    code, out, err = run_cli(capsys, "report", "diff", _dump(tmp_path / "a.json", old), _dump(tmp_path / "b.json", new))
    assert code == 2 and out == ""
    assert err.strip() == f"advkit: error: cannot compare these reports: {needle}"


def test_diff_refuses_other_data_even_without_per_sample_outcomes(report):
    other = copy.deepcopy(report)
    other["data"]["n"] = 500
    with pytest.raises(AdvkitError, match=r"^cannot compare these reports: different data: data.n 1000 vs 500$"):
        diff_reports(report, other)
