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

"""
Time series of one flight record (pure numpy): actions, interventions, monitor metrics, levels.

Every time is in seconds since the record's first message (message log time, the receive time),
so all plots share one axis. Each topic is optional; an absent one leaves an empty series.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import InputError
from ..names import (DIAGNOSTICS, EPISODE, FILTER_EVENTS, JOINT_STATES, level_of, MONITOR_STATUS,
                     RAW_ACTION, SAFE_ACTION, SAFETY_STOP)

MAX_LEVEL_ROWS = 12  # diagnostics timeline rows (ours first); the rest are counted in a note


@dataclass
class Actions:
    """Raw, executed and measured joint positions [N, D] in `names` order (NaN: absent, bad)."""

    names: tuple = ()
    raw_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    raw: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    exec_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    executed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    exec_source: str = ''
    state_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    state: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


@dataclass
class Interventions:
    """One row per filter event of /vla/filter_events (joint '*' = the whole action)."""

    t: np.ndarray
    step: np.ndarray
    joint: list
    reason: list
    requested: np.ndarray
    executed: np.ndarray
    magnitude: np.ndarray

    def by_reason(self) -> dict:
        return dict(Counter(self.reason))


@dataclass
class Monitor:
    """The monitor's statuses: level and every numeric value over time; alarm onsets seen."""

    t: np.ndarray
    level: np.ndarray
    metrics: dict            # key -> float array aligned with t (NaN where a status lacks it)
    alarm_t: np.ndarray      # time of the status that first showed the alarm(s)
    alarm_n: np.ndarray      # how many new alarms that status showed
    alarm_kind: list         # kind of the newest of them (status value last_alarm)


@dataclass
class Levels:
    """Every diagnostic status name: times, levels and last message, in order of first sight."""

    names: list
    t: dict
    level: dict
    last_message: dict
    last_values: dict


@dataclass
class RecordSeries:
    """Everything the report plots and summarizes, on one time axis (s since start_ns)."""

    start_ns: int
    duration_s: float
    topics: dict
    counts: dict
    actions: Actions
    interventions: Interventions
    monitor: Monitor
    levels: Levels
    episodes: list           # (t, name) per /vla/episode message
    stops: np.ndarray        # times of /vla/safety_stop True
    notes: list


def short_type(name: str) -> str:
    """'pkg/msg/Type' or 'pkg/Type' -> 'Type'."""
    return str(name).rsplit('/', 1)[-1]


def executed_topic(topics: dict) -> str | None:
    """Return where the executed action is: the safe action, else a controller's topic, or None."""
    if SAFE_ACTION in topics:
        return SAFE_ACTION
    controller_topics = (('/joint_trajectory', 'JointTrajectory'),
                         ('/commands', 'Float64MultiArray'))
    for suffix, kind in controller_topics:
        for topic, type_name in sorted(topics.items()):
            if topic.endswith(suffix) and short_type(type_name) == kind:
                return topic
    return None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


class _Collector:
    """One pass over the record's messages, kept as lists of (log_time_ns, ...) per kind."""

    def __init__(self, exec_topic: str | None):
        self.exec_topic = exec_topic
        self.raw, self.executed, self.state = [], [], []   # (ns, names | None, values)
        self.events, self.monitor, self.statuses = [], [], []
        self.episodes, self.stops = [], []

    def add(self, topic: str, ns: int, msg) -> None:
        if topic in (RAW_ACTION, self.exec_topic) and hasattr(msg, 'points'):
            target = self.raw if topic == RAW_ACTION else self.executed
            if msg.points:
                target.append((ns, list(msg.joint_names), _floats(msg.points[0].positions)))
        elif topic == self.exec_topic:
            self.executed.append((ns, None, _floats(msg.data)))
        elif topic == JOINT_STATES:
            self.state.append((ns, list(msg.name), _floats(msg.position)))
        elif topic == FILTER_EVENTS:
            self.events.extend((ns, s) for s in msg.status)
        elif topic == DIAGNOSTICS:
            self.statuses.extend((ns, s) for s in msg.status)
        elif topic == EPISODE:
            self.episodes.append((ns, str(msg.data)))
        elif topic == SAFETY_STOP and msg.data:
            self.stops.append(ns)


def _floats(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _matrix(rows: list, names: tuple, start_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack (ns, names, values) rows into times [N] and values [N, D] in `names` order."""
    col = {n: i for i, n in enumerate(names)}
    out = np.full((len(rows), len(names)), np.nan)
    for r, (_, row_names, values) in enumerate(rows):
        row_names = names if row_names is None else row_names
        if len(row_names) != values.size:
            continue  # a malformed message stays a gap (NaN row)
        for name, value in zip(row_names, values.tolist()):
            if name in col:
                out[r, col[name]] = value
    return _seconds([r[0] for r in rows], start_ns), out


def _seconds(ns: list, start_ns: int) -> np.ndarray:
    return (np.asarray(ns, dtype=np.int64) - start_ns) / 1e9


def _joint_names(c: _Collector, joints, notes: list) -> tuple:
    """Joint order: raw, then executed, then measured names; restricted to `joints` if given."""
    names: list = []
    for rows in (c.raw, c.executed):
        for _, row_names, _ in rows[:1]:
            names += [n for n in row_names or () if n not in names]
    if c.executed and c.executed[0][1] is None:   # Float64MultiArray: controller order, no names
        width = c.executed[0][2].size
        if width == len(names):
            notes.append(f'{c.exec_topic} carries no joint names: assumed in {RAW_ACTION} order')
            c.executed = [(ns, names, v) for ns, _, v in c.executed]
        else:
            notes.append(f'{c.exec_topic} has {width} values but {len(names)} joints are named: '
                         'executed commands not plotted')
            c.executed = []
    if not names and c.state:
        names = list(c.state[0][1])
    if joints:
        unknown = [j for j in joints if j not in names]
        if unknown:
            raise InputError(f'--joints: {", ".join(unknown)} not in the record '
                             f'(joints: {", ".join(names) or "none"})')
        names = [n for n in names if n in joints]
    return tuple(names)


def _actions(c: _Collector, names: tuple, start_ns: int) -> Actions:
    raw_t, raw = _matrix(c.raw, names, start_ns)
    exec_t, executed = _matrix(c.executed, names, start_ns)
    state_t, state = _matrix(c.state, names, start_ns)
    return Actions(names, raw_t, raw, exec_t, executed, c.exec_topic if c.executed else '',
                   state_t, state)


def _interventions(c: _Collector, names: tuple, start_ns: int, subset: bool) -> Interventions:
    rows = []
    for ns, status in c.events:
        values = {kv.key: kv.value for kv in status.values}
        joint = values.get('joint', '*')
        if subset and joint != '*' and joint not in names:
            continue
        step = _number(values.get('step'))
        rows.append((ns, -1 if step is None else int(step), joint,
                     status.message or values.get('reason', '?'),
                     *(_number(values.get(k)) for k in ('requested', 'executed', 'magnitude'))))
    cols = list(zip(*rows)) if rows else [()] * 7
    num = [np.array([np.nan if v is None else v for v in col], dtype=float) for col in cols[4:]]
    return Interventions(_seconds(list(cols[0]), start_ns), np.array(cols[1], dtype=int),
                         list(cols[2]), list(cols[3]), *num)


def _monitor(c: _Collector, start_ns: int) -> Monitor:
    rows = [(ns, level_of(s.level), {kv.key: kv.value for kv in s.values})
            for ns, s in c.statuses if s.name == MONITOR_STATUS]
    keys = []
    for _, _, values in rows:
        keys += [k for k, v in values.items() if k not in keys and _number(v) is not None]
    metrics = {k: np.array([_number(v.get(k)) for _, _, v in rows], dtype=float) for k in keys}
    alarm_t, alarm_n, alarm_kind = [], [], []
    seen = 0
    for (ns, _, values), count in zip(rows, metrics.get('alarms', ())):
        if not np.isfinite(count):
            continue                      # STALE/inactive status: no values, count unknown
        new = count - seen if count >= seen else count   # a drop = a new episode began
        if new > 0:
            alarm_t.append(ns)
            alarm_n.append(int(new))
            alarm_kind.append(values.get('last_alarm', '?').split('@')[0])
        seen = count
    return Monitor(_seconds([r[0] for r in rows], start_ns),
                   np.array([r[1] for r in rows], dtype=int),
                   metrics, _seconds(alarm_t, start_ns), np.array(alarm_n, dtype=int), alarm_kind)


def _levels(c: _Collector, start_ns: int, notes: list) -> Levels:
    by_name: dict = {}
    for ns, s in c.statuses:
        by_name.setdefault(s.name, []).append((ns, level_of(s.level), s.message, s.values))
    names = sorted(by_name, key=lambda n: not n.startswith('vla_safety/'))
    if len(names) > MAX_LEVEL_ROWS:
        notes.append(f'levels timeline shows {MAX_LEVEL_ROWS} of {len(names)} diagnostic statuses')
        names = names[:MAX_LEVEL_ROWS]
    return Levels(names, {n: _seconds([r[0] for r in by_name[n]], start_ns) for n in names},
                  {n: np.array([r[1] for r in by_name[n]], dtype=int) for n in names},
                  {n: by_name[n][-1][2] for n in names},
                  {n: {kv.key: kv.value for kv in by_name[n][-1][3]} for n in names})


def extract(record, joints=None) -> RecordSeries:
    """Read the report's topics of an `open_record` object into series (joints: a subset)."""
    topics, counts = dict(record.topics), dict(record.counts)
    exec_topic = executed_topic(topics)
    wanted = [t for t in (RAW_ACTION, exec_topic, JOINT_STATES, FILTER_EVENTS, DIAGNOSTICS,
                          EPISODE, SAFETY_STOP) if t in topics]
    collector, first, last = _Collector(exec_topic), None, None
    for topic, ns, msg in record.messages(topics=wanted) if wanted else ():
        first = ns if first is None else min(first, ns)
        last = ns if last is None else max(last, ns)
        collector.add(topic, ns, msg)
    start = first or 0
    notes: list = []
    names = _joint_names(collector, joints, notes)
    return RecordSeries(
        start_ns=start, duration_s=((last or 0) - start) / 1e9, topics=topics, counts=counts,
        actions=_actions(collector, names, start),
        interventions=_interventions(collector, names, start, bool(joints)),
        monitor=_monitor(collector, start), levels=_levels(collector, start, notes),
        episodes=[((ns - start) / 1e9, name) for ns, name in collector.episodes],
        stops=_seconds(collector.stops, start), notes=notes)
