"""The doctor report hub and sidecar share (shared/doctor_report.py): one line per check, then the verdict."""

from __future__ import annotations

from shared.doctor_report import Check, DoctorReport


def test_report_marks_each_check_and_fails_only_on_a_required_one() -> None:
    """A passed check is ``ok``, a failed optional one ``warn``, a failed required one ``FAIL`` and fails the report."""
    report = DoctorReport([Check("disk", True, "9 GiB free"), Check("backups", False, "none yet", False)])
    assert report.ok
    assert report.render() == "[ok  ] disk: 9 GiB free\n[warn] backups: none yet\nall required checks passed"
    report.checks.append(Check("database", False, "damaged"))
    assert not report.ok
    assert report.render().splitlines()[-2:] == ["[FAIL] database: damaged", "some required checks FAILED"]


def test_an_empty_report_passes() -> None:
    """A report with no checks passes and says so."""
    assert DoctorReport().ok and DoctorReport().render() == "all required checks passed"
