"""One call from a record to its report folder (used by `vla-safety report` and the demo)."""
from __future__ import annotations

import os

from ..core.errors import InputError


def build_report(record: str, out_dir: str, joints=None):
    """Extract, plot and write report.html; returns (page path, {png: None or why skipped}, notes)."""
    from ..record.read import open_record
    from .html import write_report
    from .plots import render
    from .series import extract

    if not os.path.exists(record):
        raise InputError(f'{record}: no such record')
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputError(f'{out_dir}: exists and is not a directory')
    series = extract(open_record(record), joints)
    os.makedirs(out_dir, exist_ok=True)
    plots = render(series, out_dir)
    return write_report(series, record, out_dir, plots), plots, series.notes
