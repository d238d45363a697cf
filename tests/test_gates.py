"""Gates on synthetic reports: the attack-strength canary (``max_robust_acc``), per-attack accuracy gates, and a
``max_drop`` that requires significance (McNemar on the paired samples). No model runs here."""

from __future__ import annotations

import copy

import pytest

from advkit.config import load_config
from advkit.errors import AdvkitError
from advkit.eval.config import EvalConfig, GatesConfig, config_dict
from advkit.eval.gates import evaluate_gates
from advkit.report.paired import decode_fooled_by, robust_after
from advkit.report.stats import wilson_interval

N = 400


def _gates(*sets: str) -> GatesConfig:
    # the gates alone: judged against hand-made reports, whatever threat models an eval config would hold
    # (EvalConfig itself refuses gates at an eps or attack that none of its threat models evaluates)
    return load_config(GatesConfig, None, [s.removeprefix("gates.") for s in sets])


def _entry(fgsm: float, pgd: float, clean: float = 0.98, mode: str = "full") -> dict:
    """A FGSM-trained model's entry at eps 0.3: FGSM and PGD each alone (full mode), worst case the lower."""
    def row(acc: float) -> dict:
        return {"eps": 0.3, "robust_acc": acc, "robust_acc_ci": wilson_interval(round(acc * N), N)}

    return {"name": "canary", "source": "runs/canary/model.safetensors", "clean_acc": clean, "n": N,
            "threat_models": [{"norm": "linf", "mode": mode, "eps": [0.3], "attacks": [
                {"attack": "fgsm", "label": "FGSM", "params": {}, "results": [row(fgsm)]},
                {"attack": "pgd", "label": "PGD-10", "params": {"steps": 10}, "results": [row(pgd)]}],
                "worst_case": [row(min(fgsm, pgd))]}],
            "checks": [], "examples": []}


CANARY = ("gates.min_robust_acc={fgsm: {linf@0.3: 0.6}}", "gates.max_robust_acc={pgd: {linf@0.3: 0.1}}")


def _by_name(gates: list[dict]) -> dict[str, dict]:
    return {g["name"]: g for g in gates}


def test_canary_passes_on_the_known_answer_and_fails_when_pgd_weakens():
    gates = _gates(*CANARY)
    ok = _by_name(evaluate_gates({"models": [_entry(fgsm=0.85, pgd=0.02)]}, gates))
    assert set(ok) == {"min_robust_acc[canary,FGSM,linf@0.3]", "max_robust_acc[canary,PGD-10,linf@0.3]"}
    assert all(g["passed"] for g in ok.values())
    assert ok["max_robust_acc[canary,PGD-10,linf@0.3]"]["message"] == \
        "robust accuracy under PGD-10 at linf eps 0.3: 2.0% [1.0, 3.9] <= 10.0%"
    # a PGD that stopped working leaves the model as robust as against FGSM: the canary fails
    bad = _by_name(evaluate_gates({"models": [_entry(fgsm=0.85, pgd=0.80)]}, gates))
    g = bad["max_robust_acc[canary,PGD-10,linf@0.3]"]
    assert not g["passed"] and g["value"] == 0.80 and g["threshold"] == 0.1 and g["kind"] == "max_robust_acc"
    assert g["message"].endswith("80.0% [75.8, 83.6] > 10.0% (the attack got weaker?)")
    assert bad["min_robust_acc[canary,FGSM,linf@0.3]"]["passed"]
    # a model that lost its FGSM robustness is no longer the known answer: the other half fails
    other = _by_name(evaluate_gates({"models": [_entry(fgsm=0.2, pgd=0.02)]}, gates))
    assert not other["min_robust_acc[canary,FGSM,linf@0.3]"]["passed"]


def test_accuracy_gates_match_labels_names_norms_and_the_worst_case():
    entry = _entry(fgsm=0.85, pgd=0.05)
    # by label or by registry name; the worst case with a plain key, as before
    gates = _gates("gates.max_robust_acc={PGD-10: {0.3: 0.1}, 0.3: 0.1}", "gates.min_robust_acc={linf@0.3: 0.01}")
    out = _by_name(evaluate_gates({"models": [entry]}, gates))
    assert list(out) == ["min_robust_acc[canary,linf@0.3]", "max_robust_acc[canary,PGD-10,linf@0.3]",
                         "max_robust_acc[canary,linf@0.3]"]
    assert all(g["passed"] for g in out.values())
    assert out["max_robust_acc[canary,linf@0.3]"]["message"].startswith("worst-case robust accuracy at linf eps 0.3")
    # nothing to judge: a failing gate that says so (a typo must not pass silently)
    out = evaluate_gates({"models": [entry]}, _gates("gates.max_robust_acc={apgd-ce: {0.3: 0.1}, l2@0.3: 0.5}"))
    assert [(g["name"], g["passed"], g["message"]) for g in out] == [
        ("max_robust_acc[canary,apgd-ce,any@0.3]", False, "no threat model evaluates attack 'apgd-ce' at eps 0.3"),
        ("max_robust_acc[canary,l2@0.3]", False, "no threat model evaluates eps 0.3 in l2")]


def test_gate_config_forms_round_trip_and_bad_ones_say_where():
    gates = _gates(*CANARY, "gates.min_robust_acc={0.1: 0.9, fgsm: {linf@0.3: 0.6}}",
                   "gates.max_drop={value: 0.02, significant: true}")
    assert gates.min_robust_acc == {(None, None, 0.1): 0.9, ("fgsm", "linf", 0.3): 0.6}
    assert gates.max_robust_acc == {("pgd", "linf", 0.3): 0.1}
    assert (gates.max_drop, gates.max_drop_significant) == (0.02, True)
    d = config_dict(load_config(EvalConfig, None, [*CANARY, "gates.max_drop=0.01"]))["gates"]
    assert d["min_robust_acc"] == {"fgsm": {"linf@0.3": 0.6}} and d["max_robust_acc"] == {"pgd": {"linf@0.3": 0.1}}
    assert (d["max_drop"], d["max_drop_significant"]) == (0.01, False)  # the old form: no significance
    assert _gates("gates.max_drop_significant=true", "gates.max_drop=0.03").max_drop_significant
    for bad, needle in [("gates.max_robust_acc={pgd: {0.3: 1.5}}", "gates.max_robust_acc[pgd][0.3]: expected an"),
                        ("gates.max_robust_acc={pgd: {l3@0.3: 0.1}}", "unknown norm in 'l3@0.3'"),
                        ("gates.max_drop={vale: 0.02}", "gates.max_drop: expected a fraction or"),
                        ("gates.max_drop={value: 0.02, significant: maybe}", "significant true or false")]:
        with pytest.raises(AdvkitError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            _gates(bad)


# ------------------------------------------------------------------------------ max_drop with significance

def _report(codes: list[str], **data) -> dict:
    """One model, cascade FGSM + PGD at eps 0.1 and 0.3, numbers consistent with ``codes`` (one per eps)."""
    rows = decode_fooled_by(codes)
    n = len(rows[0])
    entry = _entry(0, 0, mode="cascade")
    tm = entry["threat_models"][0]
    tm["eps"] = [0.1, 0.3]
    for ai, a in enumerate(tm["attacks"]):
        a["results"] = [{"eps": e, "robust_acc": sum(robust_after(rows, ei, ai)) / n} for ei, e in enumerate(tm["eps"])]
    tm["worst_case"] = [{"eps": e, "robust_acc": sum(robust_after(rows, ei)) / n} for ei, e in enumerate(tm["eps"])]
    tm["per_sample"] = {"fooled_by": codes}
    entry.update(n=n, clean_acc=sum(c != -2 for c in rows[0]) / n)
    return {"models": [entry], "data": {"dataset": "mnist", "split": "test", "n": n, **data}}


def _codes(robust_01: int, robust_03: int, n: int = 400, wrong: int = 10) -> list[str]:
    return ["-" * wrong + "." * robust_01 + "1" * (n - wrong - robust_01),
            "-" * wrong + "." * robust_03 + "1" * (n - wrong - robust_03)]


def test_max_drop_can_require_significance():
    base = _report(_codes(300, 200))
    noise = _report(_codes(300, 190))   # 10 samples lost at 0.3: 2.5 points, p = 2 / 2^10
    small = _report(_codes(300, 195))   # 5 lost: 1.25 points, p = 0.0625: not significant
    plain = _by_name(evaluate_gates(small, _gates("gates.max_drop=0.01"), base))
    g = plain["max_drop[canary,linf@0.3]"]
    assert not g["passed"] and g["value"] == pytest.approx(0.0125) and g["p_value"] == pytest.approx(0.0625)
    sig = _gates("gates.max_drop={value: 0.01, significant: true}")
    out = _by_name(evaluate_gates(small, sig, base))
    g = out["max_drop[canary,linf@0.3]"]
    assert g["passed"] and g["message"].endswith("McNemar p = 0.062 on 5 lost / 0 gained samples: not significant, "
                                                 "allowed")
    assert out["max_drop[canary,clean]"]["passed"] and out["max_drop[canary,linf@0.1]"]["passed"]
    g = _by_name(evaluate_gates(noise, sig, base))["max_drop[canary,linf@0.3]"]
    assert not g["passed"] and g["p_value"] == pytest.approx(2 / 2 ** 10) and g["message"].endswith(": significant")


def test_max_drop_significance_that_cannot_be_tested_falls_back_to_the_plain_gate():
    sig = _gates("gates.max_drop={value: 0.01, significant: true}")
    base, small = _report(_codes(300, 200)), _report(_codes(300, 195))
    # no per-sample outcomes in the baseline (an older report): judged on the drop alone
    old = copy.deepcopy(base)
    del old["models"][0]["threat_models"][0]["per_sample"]
    g = _by_name(evaluate_gates(small, sig, old))["max_drop[canary,linf@0.3]"]
    assert not g["passed"] and "not tested for significance (no per-sample outcomes to pair)" in g["message"]
    assert "p_value" not in g
    # other data: the samples do not pair
    other = _report(_codes(300, 200), fingerprint="sha256:a")
    g = _by_name(evaluate_gates(_report(_codes(300, 195), fingerprint="sha256:b"), sig, other))[
        "max_drop[canary,linf@0.3]"]
    assert not g["passed"] and "different data: sample set 'sha256:a' vs 'sha256:b'" in g["message"]
    # another attack suite: the samples pair, but the outcomes do not measure the same thing
    stronger = _report(_codes(300, 200))
    stronger["models"][0]["threat_models"][0]["attacks"][1]["params"]["steps"] = 100
    g = _by_name(evaluate_gates(small, sig, stronger))["max_drop[canary,linf@0.3]"]
    assert not g["passed"] and "different attack suites for model 'canary' (linf)" in g["message"]
