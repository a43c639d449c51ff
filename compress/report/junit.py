"""JUnit XML for CI: a suite per model, a case per artifact x gate (gates.row_checks)."""

from __future__ import annotations

from typing import Any

from compress.measure.gates import DEFAULT_MAX_ERROR, DEFAULT_MAX_PPL_INCREASE, row_checks


def render_junit(reports: list[dict[str, Any]], errors: dict[str, str]) -> str:
    """JUnit XML for CI: a suite per model, a case per artifact x gate (x head for drift)."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="compress")
    for rep in reports:
        v = rep["verification"]
        suite = ET.SubElement(root, "testsuite", name=rep["model"])
        cases = 0
        for a in v["artifacts"]:
            if a["runtime"] == "keras":
                continue
            checks = row_checks(
                a, v["max_drift"], v.get("max_error", DEFAULT_MAX_ERROR), v["min_speedup"],
                max_ppl_increase=v.get("max_ppl_increase", DEFAULT_MAX_PPL_INCREASE),
            )  # fmt: skip
            for gate, why in checks:
                case = ET.SubElement(
                    suite, "testcase", classname=f"{rep['model']}.{a['name']}", name=gate
                )
                cases += 1
                if why is not None:
                    ET.SubElement(case, "failure", message=f"{a['name']}: {why}")
        for s in rep["skipped"]:
            case = ET.SubElement(suite, "testcase", classname=f"{rep['model']}.{s['name']}",
                                 name="export")  # fmt: skip
            ET.SubElement(case, "skipped", message=s["reason"])
            cases += 1
        suite.set("tests", str(cases))
        suite.set("failures", str(len(v["failures"])))
    for model, message in errors.items():
        suite = ET.SubElement(root, "testsuite", name=model, tests="1", errors="1")
        case = ET.SubElement(suite, "testcase", classname=model, name="pipeline")
        ET.SubElement(case, "error", message=message)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
