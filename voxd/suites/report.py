"""What `voxd test` prints and writes: a table, JUnit XML (for CI) and a JSON report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from xml.etree import ElementTree as ET

from voxd.suites.results import ScenarioResult
from voxd.suites.runner import RunReport

MARK = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip", "error": "ERR ", "xfailed": "xfail", "xpassed": "XPASS"}


def one_line(r: ScenarioResult) -> str:
    where = f"{Path(r.suite).name}:{r.line}" if r.line else Path(r.suite).name
    why = r.note if r.status in ("xfailed", "xpassed") or not r.failures else r.failures[0]
    extra = f"  (+{len(r.failures) - 1} more)" if len(r.failures) > 1 else ""
    text = f"{MARK[r.status]:<5} {where:<22} {r.name[:44]:<44} {r.seconds:6.1f}s"
    return text + (f"  {why}{extra}" if why else "")


def table(report: RunReport) -> str:
    lines = [f"{'':5} {'suite:line':<22} {'scenario':<44} {'time':>7}  reason"]
    lines += [one_line(r) for r in report.results]
    failed = [r for r in report.results if r.status in ("failed", "error")]
    if failed:
        lines += ["", "failures:"]
        for r in failed:
            lines.append(f"  {r.name} ({Path(r.suite).name}:{r.line}, {r.mode})")
            lines += [f"    - {f}" for f in (r.failures or [r.note])]
            if r.transcript:
                lines.append("    transcript:")
                lines += [f"      {t}" for t in r.transcript]
    notes = sorted({n for r in report.results for n in r.judge_notes})
    if notes:
        lines += ["", *notes]
    for e in report.errors:
        lines.append(f"suite error: {e}")
    counts = {k: sum(r.status == k for r in report.results) for k in MARK}
    lines += ["", f"{len(report.results)} scenarios: {counts['passed']} passed, {counts['failed']} failed, "
              f"{counts['error']} errors, {counts['skipped']} skipped"
              + (f", {counts['xfailed']} known defects" if counts["xfailed"] else "")
              + (f", {counts['xpassed']} known defects now pass" if counts["xpassed"] else "")
              + (f", {len(report.errors)} suite errors" if report.errors else "") + f" in {report.seconds:.1f} s"]
    return "\n".join(lines)


def junit(report: RunReport) -> str:
    root = ET.Element("testsuites", name="voxd test", time=f"{report.seconds:.2f}")
    by_suite: dict[str, list[ScenarioResult]] = {}
    for r in report.results:
        by_suite.setdefault(r.suite, []).append(r)
    for suite, results in by_suite.items():
        el = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)),
                           failures=str(sum(r.status == "failed" for r in results)),
                           errors=str(sum(r.status == "error" for r in results)),
                           skipped=str(sum(r.status == "skipped" for r in results)),
                           time=f"{sum(r.seconds for r in results):.2f}",
                           timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"))
        for r in results:
            case = ET.SubElement(el, "testcase", classname=f"{r.agent}.{r.mode}", name=r.name,
                                 file=suite, line=str(r.line or 0), time=f"{r.seconds:.2f}")
            if r.status == "failed":
                f = ET.SubElement(case, "failure", message=r.failures[0][:500])
                f.text = "\n".join(r.failures) + "\n\ntranscript:\n" + "\n".join(r.transcript)
            elif r.status == "error":
                ET.SubElement(case, "error", message=r.note[:500]).text = r.note
            elif r.status in ("skipped", "xfailed"):
                ET.SubElement(case, "skipped", message=r.note)
            notes = r.judge_notes
            if notes or r.transcript:
                ET.SubElement(case, "system-out").text = "\n".join(notes + r.transcript)
    for e in report.errors:
        el = ET.SubElement(root, "testsuite", name=e.file, tests="1", failures="0", errors="1")
        case = ET.SubElement(el, "testcase", classname="suite", name="load", file=e.file)
        ET.SubElement(case, "error", message=str(e)).text = str(e)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def as_json(report: RunReport) -> str:
    counts = {k: sum(r.status == k for r in report.results) for k in MARK}
    return json.dumps({"ok": not report.failed, "seconds": round(report.seconds, 2), "counts": counts,
                       "suite_errors": [str(e) for e in report.errors],
                       "scenarios": [r.to_dict() for r in report.results]}, indent=2, default=str) + "\n"


def write(report: RunReport, junit_path: Path | None, json_path: Path | None) -> None:
    for path, text in ((junit_path, junit(report)), (json_path, as_json(report))):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
