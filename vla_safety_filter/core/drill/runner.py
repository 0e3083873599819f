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
Run a drill: every condition on the same seeds, one synchronous episode at a time, then measure.

An episode: reset world and policy with seed S + k; ask the policy for a chunk whenever the last
one is used up (or every `replan_every` steps); the fault (if any) corrupts the chunk; the filter
(if any) takes it as its plan and ticks once per world step on simulated time k * dt; the world
executes the command (a silent filter leaves the world holding its last command). The action
monitor watches the raw actions in every condition (its metrics predict failure); only `+stop`
lets its alarms latch the filter, which ends the episode as a stop. The monitor scores the
recorded episodes of a block of seeds after they end, in one pass
(`ActionMonitor.score_episodes`: the same alarms, costs and summaries as stepping each). Under
`+stop` the stop latches at the step whose update raises the first alarm. The alarms depend on
the raw actions alone, and a `+stop` episode runs as its twin (the same fault and filter without
`+stop`, same seed) up to there: with the twin in the drill, that step and its alarms are read
from the twin's scored episode (which runs first) while the raw actions are the twin's (a policy
that does not repeat itself parts from them: from there an `AlarmScan` finds them); without a
twin the `AlarmScan` finds them beforehand, chunk by chunk. Costs per episode: filter
interventions and monitor alarms by the cost model's weights plus the world's physical costs.
"""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
import copy
from dataclasses import dataclass, field
import json
import math
import multiprocessing
import os

import numpy as np

from .conditions import action_normalizer, ChunkFault, Condition, WRONG_UNNORMALIZER
from .measures import cost_summary, mcnemar_exact, roc_curve, score_aurocs, wilson_interval
from .policies import DEFAULT_HORIZON, episode_ends, load_demos, make_policy, Policy, PolicyFault
from .worlds import make_world
from ..contract import Contract
from ..costs import CostModel, DEFAULT_COSTS
from ..errors import InputError
from ..execspec import Metadata
from ..executive import Executive, LATCHED
from ..monitors import (ActionMonitor, Alarm, alarm_reason, AlarmScan, FAULT_KINDS,
                        METRIC_NAMES, SafetyStop)
from ..params import CalibrationData, load_calibration_for

#: physical costs the worlds report, per step (SafeVLA: cost of unsafe states, not only actions)
WORLD_COSTS = {'world.outside_workspace': 0.5, 'world.nonfinite_command': 1.0,
               'world.joint_limit': 1.0, 'world.table_contact': 0.5}
#: alarm-free time before the monitor withdraws a stop (the action_monitor node's stop_clear_s)
STOP_CLEAR_S = 0.3
#: per-episode failure predictors: metric means, conformal exceedance rate, number of alarms
SCORES = (*METRIC_NAMES, 'exceedance_rate', 'alarms')


@dataclass(frozen=True)
class Safety:
    """What the filter and monitor need: the contract, the calibration data, the cost model."""

    contract: Contract
    calibration: CalibrationData
    costs: CostModel
    source: str


@dataclass(frozen=True)
class DrillSettings:
    """One drill: seeds S..S+n-1, the conditions, when to replan and where faults start."""

    episodes: int
    seed: int
    conditions: tuple[Condition, ...]
    replan_every: int | None = None
    fault_at_s: float = 2.0
    early_steps: int = 50
    max_steps: int | None = None
    profile: str = 'generic'
    sibling: Metadata | None = None   # a sibling dataset's unnormalizer (wrong-unnormalizer)
    own: Metadata | None = None       # the policy's unnormalizer; None: mean_std of calibration


@dataclass
class Episode:
    """
    One executed episode: its outcome, cost, monitor summaries and per-step arrays.

    `raw`, `executed` and `states` grow as lists while the episode runs and are stacked into
    float64 arrays [n_steps, width] when it ends (cheap to send between processes).
    """

    seed: int
    condition: str
    success: bool = False
    policy_fault: str = ''
    stopped: bool = False
    cost: float = 0.0
    cost_by_kind: dict = field(default_factory=dict)
    interventions: int = 0
    whole: dict = field(default_factory=dict)
    early: dict = field(default_factory=dict)
    raw: list = field(default_factory=list)
    executed: list = field(default_factory=list)
    states: list = field(default_factory=list)

    @property
    def n_steps(self) -> int:
        """Return the number of world steps the episode ran."""
        return len(self.executed)


@dataclass(frozen=True)
class DrillSetup:
    """How to build a drill's world and policy in another process (names, not objects)."""

    world: str
    policy: str
    horizon: int = DEFAULT_HORIZON
    timeout: float = 10.0
    render: bool = False

    def build(self):
        """Return a new (world, policy) pair."""
        world = make_world(self.world, render=self.render)
        return world, make_policy(self.policy, timeout=self.timeout, horizon=self.horizon)


def safety_from_params(path: str, world) -> Safety:
    """Contract and calibration data from `vla-safety calibrate`'s parameter YAML."""
    contract, calibration = load_calibration_for(path)
    return _checked(Safety(contract, calibration, _cost_model(), path), world)


def safety_from_demos(path: str, world, seed: int = 0) -> Safety:
    """
    Calibrate contract and monitor on the demonstrations' actions (as `calibrate` does).

    The world's own position limits (PushT's workspace, ALOHA's actuator ranges) are the
    hardware limits the bounds are intersected with, as `calibrate --hardware-limits` would.
    """
    from ..calibration import calibrate   # here: scipy.stats would slow every worker's start
    actions, _, episodes = load_demos(path)
    starts = np.flatnonzero(np.r_[True, np.diff(episodes) != 0])
    ends = episode_ends(episodes)[starts]
    result = calibrate([actions[s:e] for s, e in zip(starts, ends)], world.action_names,
                       world.dt, seed=seed, hardware=world.hardware_limits())
    return _checked(Safety(result.contract, result.data, _cost_model(), path), world)


def demo_normalizer(path: str, world, mode: str = 'mean_std') -> Metadata:
    """Return the unnormalizer (mean_std or min_max) of a dataset's actions for this world."""
    actions, _, _ = load_demos(path)
    if actions.shape[1] != len(world.action_names):
        raise InputError(f'{path}: actions have {actions.shape[1]} dimensions, world '
                         f'{world.name} has {len(world.action_names)}')
    return action_normalizer(actions, mode, source=path)


def _cost_model() -> CostModel:
    """Return the default weights (core.costs) plus the worlds' physical costs."""
    return CostModel(costs={**DEFAULT_COSTS, **WORLD_COSTS})


def _checked(safety: Safety, world) -> Safety:
    """Refuse a contract that cannot command this world (dimension or control period)."""
    c = safety.contract
    if c.dim != len(world.action_names) or not np.isclose(c.dt, world.dt):
        raise InputError(f'{safety.source}: contract has {c.dim} joints at dt {c.dt:g} s; world '
                         f'{world.name} needs {len(world.action_names)} at dt {world.dt:g} s')
    return safety


def check_settings(settings: DrillSettings) -> None:
    """Refuse settings no episode can run with (a wrong unnormalizer without its sibling)."""
    if settings.sibling is None and any(c.fault == WRONG_UNNORMALIZER
                                        for c in settings.conditions):
        raise InputError(f"fault {WRONG_UNNORMALIZER} needs a sibling dataset's statistics "
                         f'(--sibling DEMOS.npz)')
    mode = 'mean_std' if settings.own is None else settings.own.mode
    if settings.sibling is not None and settings.sibling.mode != mode:
        raise InputError(f'{settings.sibling.source}: the sibling unnormalizer is '
                         f"{settings.sibling.mode}, the policy's {mode}")


def new_monitor(safety: Safety, settings: DrillSettings, dt: float) -> ActionMonitor:
    """
    Return the action monitor of a drill (its CUSUM design takes seconds: build it once).

    With the calibration's motion scores (step, seam, window, measured-threshold CUSUMs), as
    the action_monitor node runs it.
    """
    return ActionMonitor(safety.calibration, dt, settings.profile, safety.costs,
                         motion=safety.calibration.motion)


def check_chunk(chunk, dim: int) -> np.ndarray:
    """Return a policy's chunk as float64 [H, dim] with finite values, else raise PolicyFault."""
    try:
        chunk = np.asarray(chunk, dtype=np.float64)
    except (TypeError, ValueError):
        raise PolicyFault('the policy replied with something that is not numbers') from None
    if chunk.ndim == 1 and chunk.size == dim:
        chunk = chunk[None, :]
    if chunk.ndim != 2 or chunk.shape[1] != dim or chunk.shape[0] == 0:
        raise PolicyFault(f'the policy replied with shape {chunk.shape}, expected [H, {dim}]')
    if not np.all(np.isfinite(chunk)):
        raise PolicyFault('the policy replied with non-finite actions')
    return chunk


@dataclass(frozen=True)
class Twin:
    """
    What a `+stop` episode knows from its twin's: the first alarms, where they are known.

    `alarms`: {step: the alarms its update raises} of the twin's first update that raised any
    ({} if none did); `raw`: the twin's raw actions through that step (all without one).
    """

    alarms: dict
    raw: np.ndarray

    def covers(self, steps: np.ndarray, k: int) -> bool:
        """Return whether a chunk's steps from step k are the twin's, as far as it knows them."""
        end = min(k + len(steps), len(self.raw))
        return self.raw[k:end].tobytes() == steps[:end - k].tobytes()


@dataclass
class _Loop:
    """
    Per-episode state of the loop: stop logic, fault, filter, the current plan.

    `charges` keeps each step's filter reasons and world costs for a monitor that scores the
    episode after it ends (`stop` None: the monitor is not stepped); under `+stop`, `alarms`
    holds step -> the alarms its update raises: the `twin`'s first ones while its raw actions
    are the twin's, else what `scan` finds in each chunk's steps.
    """

    stop: SafetyStop | None
    fault: ChunkFault | None
    executive: Executive | None
    scan: AlarmScan | None = None
    alarms: dict = field(default_factory=dict)
    twin: Twin | None = None
    plan: np.ndarray | None = None
    plan_t0: int = 0
    refusals: tuple = ()
    charges: list = field(default_factory=list)


class EpisodeRunner:
    """Runs episodes of one world and policy under a condition; reusable across episodes."""

    def __init__(self, world, policy: Policy, safety: Safety, settings: DrillSettings,
                 monitor: ActionMonitor | None = None):
        check_settings(settings)
        self.world, self.policy, self.safety, self.settings = world, policy, safety, settings
        self.dt = world.dt
        self.max_steps = settings.max_steps or world.max_steps
        self.monitor = monitor or new_monitor(safety, settings, self.dt)
        self.hold_off = max(1, int(np.ceil(STOP_CLEAR_S / self.dt)))
        self.fault_at = int(round(settings.fault_at_s / self.dt))

    def run(self, condition: Condition, seed: int, live_monitor: bool = False) -> Episode:
        """
        One episode of `condition` on world seed `seed`.

        The monitor scores the recorded episode once it has ended; under `+stop` an AlarmScan
        first finds, a chunk at a time before it runs, the update that raises the first alarm
        (there the stop latches the filter). `live_monitor` steps the monitor beside the world
        instead (the reference: the same episodes at several times the cost per step).
        """
        return self.run_all(condition, [seed], live_monitor)[0]

    def run_all(self, condition: Condition, seeds, live_monitor: bool = False,
                twins: dict | None = None) -> list[Episode]:
        """
        Episodes of `condition` on each seed, as `run` runs them one by one.

        The monitor scores the recorded episodes together after the last one ended
        (`ActionMonitor.score_episodes`: each episode's scores as alone, numpy's per-call cost
        shared). Under `+stop`, `twins` (seed -> `twin_record` of the twin condition's episode)
        gives each seed's stop without a scan.
        """
        twins = twins or {}
        played = [self._play(condition, seed, live_monitor,
                             None if seed not in twins else twin_of(twins[seed],
                                                                    self.monitor.block))
                  for seed in seeds]
        if not live_monitor:
            scores = self.monitor.score_episodes([(ep.raw, charges) for ep, charges in played],
                                                 self.settings.early_steps)
            for (ep, _), score in zip(played, scores):
                self._summarize(ep, score.whole, score.early)
        return [ep for ep, _ in played]

    def _play(self, condition: Condition, seed: int, live: bool,
              twin: Twin | None = None) -> tuple[Episode, list]:
        """
        Run one episode; return it and each step's charges for the monitor (None if live).

        Live, the stepped monitor's summaries are taken at once. `twin`: what a `+stop`
        episode knows from its twin's (None: scan for its stop).
        """
        ep = Episode(seed, condition.name)
        self.world.reset(seed)
        self.policy.reset(seed, self.world.task)
        if live:
            self.monitor.reset_episode()
        twin = twin if condition.stop and not live else None
        loop = _Loop(SafetyStop('alarm' if condition.stop else 'none', self.hold_off)
                     if live else None, self._fault(condition, seed),
                     self._start_filter() if condition.filtered else None,
                     AlarmScan(self.monitor) if condition.stop and not live and twin is None
                     else None, {} if twin is None else twin.alarms, twin)
        for k in range(self.max_steps):
            if loop.plan is None or k - loop.plan_t0 >= self._chunk_steps(loop.plan):
                try:
                    self._request(loop, ep, k)
                except PolicyFault as exc:
                    ep.policy_fault = str(exc) or type(exc).__name__
                    break
            success = self._step(loop, ep, k)
            if live and k + 1 == self.settings.early_steps:
                ep.early = self._early_summary()
            latched = loop.executive is not None and loop.executive.state == LATCHED
            if success or latched:
                ep.success, ep.stopped = success, not success
                break
        self._stack(ep)
        if not live:
            return ep, loop.charges
        self._summarize(ep, self.monitor.episode_summary(), ep.early)
        return ep, None

    def _early_summary(self) -> dict:
        """Return the monitor's summary of the first steps without closing its open block."""
        return copy.deepcopy(self.monitor).episode_summary()

    def _charge(self, reasons: tuple, world_costs: tuple) -> None:
        """Charge one step's filter interventions and the world's physical costs."""
        self.monitor.record_interventions(reasons)
        for kind in world_costs:
            self.monitor.budget.charge(kind)

    def _fault(self, condition: Condition, seed: int) -> ChunkFault | None:
        """Return the condition's fault, seeded by the episode, starting at --fault-at."""
        if condition.fault is None:
            return None
        cal = self.safety.calibration
        return ChunkFault(condition.fault, self.fault_at, seed, cal.mu, cal.sigma, self.dt,
                          self.settings.sibling, self.settings.own)

    def _request(self, loop: '_Loop', ep: Episode, k: int) -> None:
        """
        Ask the policy for a chunk at step k; fault it, make it the filter's plan.

        Under `+stop` its steps' alarms are the twin's while its actions are, else scanned
        (from the episode's start when it parts from its twin's here: alarm-free before).
        """
        plan = check_chunk(self.policy.act(self.world.observation()), self.safety.contract.dim)
        if loop.fault is not None:
            plan = loop.fault.apply(plan, k)
        loop.plan, loop.plan_t0 = plan, k
        steps = plan[:self._chunk_steps(plan)]
        if loop.twin is not None and not loop.twin.covers(steps, k):
            self._part(loop, ep, steps)
        elif loop.scan is not None:   # the alarms of the steps this chunk will run
            loop.alarms = loop.scan.scan(steps)
        if loop.executive is not None:
            offsets = self.dt * np.arange(1, len(plan) + 1)
            loop.refusals = loop.executive.on_chunk(plan, offsets, k * self.dt)

    def _part(self, loop: '_Loop', ep: Episode, steps: np.ndarray) -> None:
        """
        Scan for the stop from here on, the twin's alarms unknown (the steps before: none).

        For a `+stop` episode whose actions part from its twin's, or that outlives its twin.
        """
        loop.twin, loop.scan = None, AlarmScan(self.monitor)
        if ep.raw:
            loop.scan.scan(np.array(ep.raw))
        loop.alarms = loop.scan.scan(steps)

    def _step(self, loop: '_Loop', ep: Episode, k: int) -> bool:
        """Monitor (if live) the raw action, filter it, step the world, charge; True on success."""
        if loop.twin is not None and k == len(loop.twin.raw):   # past the twin (alarm-free)
            self._part(loop, ep, loop.plan[k - loop.plan_t0:self._chunk_steps(loop.plan)])
        raw = loop.plan[k - loop.plan_t0]
        if loop.stop is not None:
            status = self.monitor.update(raw)
            if loop.stop.after_step(self.monitor, status) and loop.executive is not None:
                loop.executive.set_stop(True, loop.stop.reason)
        elif k in loop.alarms and loop.executive is not None:   # as SafetyStop('alarm') would
            loop.executive.set_stop(True, alarm_reason(loop.alarms[k]))
        command, reasons = raw, ()
        if loop.executive is not None:
            command, reasons = self._tick(loop.executive, k, loop.refusals)
            loop.refusals = ()
        ep.interventions += bool(reasons)
        result = self.world.step(command)
        if loop.stop is not None:
            self._charge(reasons, result.costs)
        else:
            loop.charges.append((reasons, result.costs))
        ep.raw.append(raw)
        ep.executed.append(self.world.executed_command)
        ep.states.append(result.state.copy())
        return result.success

    def _chunk_steps(self, plan: np.ndarray) -> int:
        """How many steps of a chunk run before the next request."""
        every = self.settings.replan_every
        return len(plan) if every is None else min(len(plan), every)

    def _start_filter(self) -> Executive:
        """Return a fresh executive activated from the world's measured position at time 0."""
        executive = Executive(self.safety.contract)
        executive.observe(self.world.measured_position(), 0.0)
        executive.start(0.0)
        return executive

    def _tick(self, executive: Executive, k: int, refusals) -> tuple:
        """Observe the measured position, tick; the command (None = nothing) and its reasons."""
        now = k * self.dt
        executive.observe(self.world.measured_position(), now)
        tick = executive.tick(now)
        reasons = tuple(dict.fromkeys(e.reason for e in (*refusals, *tick.events)))
        return tick.command, reasons

    def _stack(self, ep: Episode) -> None:
        """Stack the episode's per-step rows into arrays."""
        dim = self.safety.contract.dim
        ep.raw = np.array(ep.raw, dtype=np.float64).reshape(-1, dim)
        ep.executed = np.array(ep.executed, dtype=np.float64).reshape(-1, dim)
        ep.states = np.array(ep.states, dtype=np.float64).reshape(-1, self.world.state_dim)

    @staticmethod
    def _summarize(ep: Episode, whole: dict, early: dict | None) -> None:
        """Keep the monitor's summaries (the first steps': the whole if shorter) and the cost."""
        ep.whole = whole
        ep.early = early or whole
        ep.cost = float(whole['cost'])
        ep.cost_by_kind = dict(whole['cost_by_kind'])


def twin_record(ep: Episode) -> tuple[int, list, np.ndarray]:
    """Return what a `+stop` episode takes from its twin's: length, summary alarms, raw actions."""
    return ep.n_steps, ep.whole['alarms'], ep.raw


def twin_of(record: tuple, block: int) -> Twin:
    """Return what a `+stop` episode knows from its twin's `twin_record` (monitor's block)."""
    n_steps, alarms, raw = record
    first = first_alarms(n_steps, alarms, block)
    return Twin(first, raw[:next(iter(first)) + 1] if first else raw)


def first_alarms(n_steps: int, alarms: list, block: int) -> dict:
    """
    Return {step: alarms} of the update that raised an episode's first alarm ({} if none).

    From the scored episode's length and summary alarms, in the order an AlarmScan gives them
    (the monitor advances in blocks of `block` steps): a bad row's alarm is raised by its own
    step's update, the others by the update that completes their block; one of the last,
    partial block is raised by the closing summary, no update. The summary keeps the first
    MAX_ALARMS_KEPT alarms, far more than one update raises.
    """
    first, raised = None, []
    for entry in alarms:
        alarm = Alarm(entry['kind'], entry['step'])
        step = alarm.step if alarm.kind in FAULT_KINDS else (alarm.step // block + 1) * block - 1
        if step >= n_steps or first not in (None, step):
            break
        first = step
        raised.append(alarm)
    return {} if first is None else {first: tuple(raised)}


def twins(conditions) -> dict[int, int]:
    """Map the index of each `+stop` condition whose twin is among `conditions` to the twin's."""
    plain = {c.fault: i for i, c in enumerate(conditions) if c.filtered and not c.stop}
    return {i: plain[c.fault] for i, c in enumerate(conditions) if c.stop and c.fault in plain}


def run_drill(world, policy: Policy, safety: Safety, settings: DrillSettings,
              progress=None) -> list[Episode]:
    """
    Every condition on seeds S..S+n-1 (condition-major); `progress()` after each episode.

    In blocks of seeds as a worker of run_drill_parallel runs them (scored together); the
    `+stop` conditions with a twin run after the others, their stops read from the twin's.
    """
    runner = EpisodeRunner(world, policy, safety, settings)
    seeds = [settings.seed + k for k in range(settings.episodes)]
    size = _block_size(settings, 1)
    paired = twins(settings.conditions)
    done: dict[int, list] = {}
    for i in sorted(range(len(settings.conditions)), key=lambda i: i in paired):
        records = {ep.seed: twin_record(ep) for ep in done.get(paired.get(i), ())}
        done[i] = []
        for start in range(0, len(seeds), size):
            for ep in runner.run_all(settings.conditions[i], seeds[start:start + size],
                                     twins=records):
                done[i].append(ep)
                if progress is not None:
                    progress(ep)
    return [ep for i in range(len(settings.conditions)) for ep in done[i]]


# ---- worker processes ------------------------------------------------------------------------
_WORKER: dict = {}


def _start_worker(setup: DrillSetup, safety: Safety, settings: DrillSettings) -> None:
    """Build this worker process's world, policy, monitor and episode runner once."""
    world, policy = setup.build()
    _WORKER['runner'] = EpisodeRunner(world, policy, safety, settings)


def _run_block(condition_index: int, seeds: list[int], twins: dict | None = None
               ) -> list[Episode]:
    """Run episodes of one condition on the given seeds in this worker (`run_all`'s twins)."""
    runner = _WORKER['runner']
    condition = runner.settings.conditions[condition_index]
    return runner.run_all(condition, seeds, twins=twins)


def _expected_length(condition: Condition) -> int:
    """Rank how long a condition's episodes run: faults fail to the time limit, stops end early."""
    return (condition.fault is not None) - 2 * condition.stop


def _block_size(settings: DrillSettings, workers: int) -> int:
    """Return how many seeds of a condition run together: about eight blocks per worker."""
    return max(1, math.ceil(settings.episodes / (8 * workers)))


def _blocks(settings: DrillSettings, workers: int) -> list[tuple[int, list[int]]]:
    """
    Split every condition's seeds into blocks, about eight per worker and condition.

    Longest episodes first (faults without a stop), the short ones last, so that the workers
    finish together instead of one waiting for the other's long block.
    """
    size = _block_size(settings, workers)
    seeds = [settings.seed + k for k in range(settings.episodes)]
    order = sorted(range(len(settings.conditions)),
                   key=lambda i: -_expected_length(settings.conditions[i]))
    return [(i, seeds[start:start + size]) for i in order
            for start in range(0, len(seeds), size)]


def run_drill_parallel(setup: DrillSetup, safety: Safety, settings: DrillSettings,
                       workers: int, progress=None) -> list[Episode]:
    """
    Run the drill of run_drill in `workers` processes; the episodes are the same, in its order.

    Each episode depends only on its condition and seed (world, policy, fault, filter and
    monitor are reset from them), so splitting the seeds between processes changes nothing but
    the wall time. Workers are spawned (no fork of a threaded parent) and build their own world,
    policy and monitor from `setup` (checked here first) at the same time, each on its core.
    A `+stop` block with a twin is sent when its twin's block of the same seeds has ended, with
    their records (`twin_record`).
    """
    check_settings(settings)
    world, policy = setup.build()   # bad names fail here, with their message, not in a worker
    policy.close()
    world.close()
    paired = twins(settings.conditions)
    blocks = _blocks(settings, workers)
    after = {(paired[i], seeds[0]): (i, seeds) for i, seeds in blocks if i in paired}
    episodes: list = []
    with ProcessPoolExecutor(max_workers=workers,
                             mp_context=multiprocessing.get_context('spawn'),
                             initializer=_start_worker,
                             initargs=(setup, safety, settings)) as pool:
        pending = {pool.submit(_run_block, i, seeds): (i, seeds)
                   for i, seeds in blocks if i not in paired}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    i, seeds = pending.pop(future)
                    block = future.result()
                    episodes.extend(block)
                    stop = after.get((i, seeds[0]))
                    if stop is not None:
                        records = {ep.seed: twin_record(ep) for ep in block}
                        pending[pool.submit(_run_block, *stop, records)] = stop
                    for ep in block if progress is not None else ():
                        progress(ep)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    rank = {c.name: i for i, c in enumerate(settings.conditions)}
    return sorted(episodes, key=lambda ep: (rank[ep.condition], ep.seed))


# ---- measures and outputs --------------------------------------------------------------------
def _scores(episodes: list[Episode], part: str) -> dict:
    """Per-episode monitor scores (SCORES) from the whole episode or its first steps."""
    summaries = [getattr(ep, part) for ep in episodes]
    out = {name: np.array([s['metric_mean'][name] for s in summaries], dtype=np.float64)
           for name in METRIC_NAMES}
    out['exceedance_rate'] = np.array([s['exceedance_rate'] for s in summaries], dtype=np.float64)
    out['alarms'] = np.array([len(s['alarms']) for s in summaries], dtype=np.float64)
    return out


def _lead_times(episodes: list[Episode], dt: float) -> dict:
    """
    Measure the first alarm's lead before the time limit in failed episodes that ran to it.

    Also count the successful episodes that raised an alarm (false alarms).
    """
    failed = [ep for ep in episodes if not (ep.success or ep.stopped or ep.policy_fault)]
    leads = [(ep.n_steps - ep.whole['first_alarm_step']) * dt for ep in failed
             if ep.whole['first_alarm_step'] is not None]
    succeeded = [ep for ep in episodes if ep.success]
    return {
        'timeouts_with_alarm': len(leads),
        'timeouts': len(failed),
        'median_lead_s': float(np.median(leads)) if leads else None,
        'successes_with_alarm': sum(ep.whole['first_alarm_step'] is not None for ep in succeeded),
        'successes': len(succeeded),
    }


def _mean_by_kind(episodes: list[Episode]) -> dict:
    """Mean cost per episode of each kind (interventions, alarms, the world's physical costs)."""
    totals: dict[str, float] = {}
    for ep in episodes:
        for kind, cost in ep.cost_by_kind.items():
            totals[kind] = totals.get(kind, 0.0) + cost
    return {kind: total / len(episodes) for kind, total in sorted(totals.items())}


def summarize(episodes: list[Episode], settings: DrillSettings, budget: float, dt: float) -> dict:
    """`conditions.<name>`: n, successes, rate, ci95, McNemar p vs none, costs, AUROCs, leads."""
    by_name = {c.name: [ep for ep in episodes if ep.condition == c.name]
               for c in settings.conditions}
    baseline = by_name.get('none')
    out = {}
    for name, eps in by_name.items():
        success = np.array([ep.success for ep in eps], dtype=bool)
        failed = ~success
        entry = {
            'n': len(eps),
            'successes': int(success.sum()),
            'success_rate': float(success.mean()) if eps else None,
            'ci95': list(wilson_interval(int(success.sum()), len(eps))),
            'mcnemar_p_vs_none': None,
            'policy_faults': sum(bool(ep.policy_fault) for ep in eps),
            'stopped': sum(ep.stopped for ep in eps),
            'mean_steps': float(np.mean([ep.n_steps for ep in eps])) if eps else None,
            'steps_with_intervention': int(sum(ep.interventions for ep in eps)),
            'cost': cost_summary([ep.cost for ep in eps], budget),
            'mean_cost_by_kind': _mean_by_kind(eps),
            'auroc_whole': score_aurocs(_scores(eps, 'whole'), failed),
            f'auroc_first_{settings.early_steps}_steps':
                score_aurocs(_scores(eps, 'early'), failed),
            'alarm_lead': _lead_times(eps, dt),
        }
        if baseline is not None and name != 'none':
            test = mcnemar_exact([ep.success for ep in baseline], success)
            entry['mcnemar_p_vs_none'] = test['p']
            entry['mcnemar_discordant'] = {'only_none': test['only_baseline'],
                                           f'only_{name}': test['only_treated']}
        out[name] = entry
    return out


def roc_curves(episodes: list[Episode], settings: DrillSettings) -> dict:
    """ROC points per condition and score on the first steps (for the plots)."""
    curves = {}
    for c in settings.conditions:
        eps = [ep for ep in episodes if ep.condition == c.name]
        failed = np.array([not ep.success for ep in eps], dtype=bool)
        curves[c.name] = {name: roc_curve(values, failed)
                          for name, values in _scores(eps, 'early').items()}
    return curves


def _first_alarm(ep: Episode) -> int:
    """Step of the episode's first monitor alarm, -1 without one."""
    step = ep.whole['first_alarm_step']
    return -1 if step is None else int(step)


def save_episodes(path: str, episodes: list[Episode], dim: int, state_dim: int) -> None:
    """
    Write episodes.npz without pickles.

    Per episode: outcomes, monitor scores (whole episode and first steps, columns named by
    score_names) and the first alarm; per step: actions and states.
    """
    steps = [np.full(ep.n_steps, i, dtype=np.int64) for i, ep in enumerate(episodes)]

    def stacked(name: str, width: int) -> np.ndarray:
        rows = [np.asarray(getattr(ep, name), dtype=np.float64).reshape(-1, width)
                for ep in episodes]
        return np.concatenate(rows) if rows else np.zeros((0, width))

    np.savez_compressed(
        path,
        seed=np.array([ep.seed for ep in episodes], dtype=np.int64),
        condition=np.array([ep.condition for ep in episodes], dtype=np.str_),
        success=np.array([ep.success for ep in episodes], dtype=bool),
        n_steps=np.array([ep.n_steps for ep in episodes], dtype=np.int64),
        cost=np.array([ep.cost for ep in episodes], dtype=np.float64),
        policy_fault=np.array([bool(ep.policy_fault) for ep in episodes], dtype=bool),
        stopped=np.array([ep.stopped for ep in episodes], dtype=bool),
        score_names=np.array(SCORES, dtype=np.str_),
        scores_whole=np.stack([_scores(episodes, 'whole')[n] for n in SCORES], axis=1),
        scores_early=np.stack([_scores(episodes, 'early')[n] for n in SCORES], axis=1),
        first_alarm_step=np.array([_first_alarm(ep) for ep in episodes], dtype=np.int64),
        episode=np.concatenate(steps) if steps else np.zeros(0, dtype=np.int64),
        raw_action=stacked('raw', dim),
        executed_action=stacked('executed', dim),
        world_state=stacked('states', state_dim))


def write_outputs(directory: str, report: dict, episodes: list[Episode], dim: int,
                  state_dim: int) -> None:
    """drill.json and episodes.npz in `directory` (created if needed)."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, 'drill.json'), 'w') as fh:
        json.dump(report, fh, indent=2)
    save_episodes(os.path.join(directory, 'episodes.npz'), episodes, dim, state_dim)
