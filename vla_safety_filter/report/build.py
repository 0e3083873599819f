# Copyright 2026 vla_safety_filter maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""One call from a record to its report folder (used by `vla-safety report` and the demo)."""
from __future__ import annotations

import os

from ..core.errors import InputError


def build_report(record: str, out_dir: str, joints=None):
    """Extract, plot, write report.html; return (page path, {png: None or why skipped}, notes)."""
    from .page import write_report
    from .plots import render
    from .series import extract
    from ..record.read import open_record

    if not os.path.exists(record):
        raise InputError(f'{record}: no such record')
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputError(f'{out_dir}: exists and is not a directory')
    series = extract(open_record(record), joints)
    os.makedirs(out_dir, exist_ok=True)
    plots = render(series, out_dir)
    return write_report(series, record, out_dir, plots), plots, series.notes
