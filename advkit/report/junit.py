"""JUnit XML: one test case per gate, so CI systems show failing robustness gates like failing tests."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from advkit.report.schema import Report, as_dict, finite, gate_value

# characters XML 1.0 cannot hold at all, even escaped
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(x: Any) -> str:
    return _NOT_XML.sub("\ufffd", str(x))


def to_junit(report: Report | dict[str, Any]) -> str:
    """The report's gates as JUnit XML, for CI systems that show test results.

    Args:
        report: a valid report (typed, or its dict).

    Returns:
        ``<testsuites><testsuite name="advkit.robustness">`` with a ``<testcase>`` per gate (a failing gate
        carries a ``<failure>``); a report without gates holds one passing case named ``report``.
    """
    report = as_dict(report)
    gates = report["gates"]
    failures = sum(g.get("passed") is not True for g in gates)
    tests = max(len(gates), 1)
    total = f"{finite(report['timing'].get('total_s')) or 0.0:.3f}"
    counts = {"tests": str(tests), "failures": str(failures), "errors": "0", "skipped": "0", "time": total}
    root = ET.Element("testsuites", {"name": "advkit", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": "advkit.robustness", **counts,
                                              "timestamp": _text(report["created"])})
    if not gates:
        ET.SubElement(suite, "testcase", {"classname": "advkit.gates", "name": "report", "time": "0"})
    for g in gates:
        case = ET.SubElement(suite, "testcase", {"classname": "advkit.gates", "name": _text(g["name"]),
                                                 "time": "0"})
        if g.get("passed") is not True:
            message = g.get("message") or f"gate {g['name']} failed"
            failure = ET.SubElement(case, "failure", {"message": _text(message), "type": _text(g["kind"])})
            failure.text = _text(f"{message}\nkind: {g['kind']}\nmodel: {g.get('model', '—')}\n"
                                 f"value: {gate_value(g.get('value'), g['kind'])}\n"
                                 f"threshold: {gate_value(g.get('threshold'), g['kind'])}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
