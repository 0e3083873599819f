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
Episode-level split-conformal calibration of the action contract (doc/calibration.md).

Episodes (never frames) are split into a calibration part and a held-out part; the calibration
episodes are split again into a fit half (mu, sigma) and a score half, so the conformal scores are
out-of-sample like a new action's score. Only whole episodes are exchangeable, so every quantile
is taken over episodes: with `coverage='episode'` (the default) each score episode contributes its
largest score, and a new demonstration stays *entirely* inside the contract with probability
>= 1 - alpha; with `coverage='frame'` each of the K episodes' frames weigh 1/(K n_k) and the level
is ceil((1 - alpha)(K + 1))/K, so a new episode's expected share of covered frames is >= 1 - alpha.
Position bounds are `mu ± q sigma` with q that quantile of `max_j |a_j - mu_j| / sigma_j`;
per-joint velocity limits are the same quantile at 1 - alpha/D of |velocity| over the calibration
episodes (a union bound over joints). With fewer episodes than the level needs, no coverage is
claimed. The held-out episodes measure the coverage actually reached.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import math
from typing import Callable, Iterable, Iterator

import numpy as np
from scipy import stats

from .contract import Contract
from .errors import InputError
from .limits import contract_limits, HardwareLimits
from .params import CalibrationData
from .profiles import DEFAULT_PROFILE, PROFILES
from .sequential import MIN_RUN_LENGTH_EPISODES, MotionCalibration, position_run_length

SCORE_CHUNK_ROWS = 1 << 16
HEURISTIC_MARGIN = 0.10  # the heuristic contract: data min/max widened by 10 % of the range
RANK_TOLERANCE = 1e-9     # keeps ceil((n+1)(1-alpha)) from jumping on float round-off
WIDE_BOUNDS_RATIO = 2.0   # bounds this many times wider than the heuristic are reported as loose
COVERAGE_MODES = ('episode', 'frame')
SINGLE_FRAME_TOLERANCE = 0.5  # a timestamp step within dt * (1 ± this) is one frame, else a gap
HOLDOUT_WARN_P = 0.01         # held-out whole-episode coverage this unlikely under 1 - alpha warns
MOTION_MAX_FRAMES = 250_000   # motion scores use a seeded subset of whole episodes beyond this
#: `progress(stage, done, total)`: `done` of `total` items of a stage of calibrate() finished.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class CalibrationResult:
    """The calibrated contract, the monitor's calibration data and a JSON-serializable report."""

    contract: Contract
    data: CalibrationData
    report: dict


@dataclass(frozen=True)
class Quantile:
    """An episode-level conformal quantile: value, rank numerator, K, and whether it is valid."""

    value: float
    rank: int
    n_episodes: int
    claimed: bool


def stepped(items: Iterable, stage: str, progress: Progress | None) -> Iterator:
    """
    Yield `items`, reporting `progress(stage, done, total)` before the first and after each.

    A long loop of calibrate() wraps its items in this, so a caller can show how far it got.
    """
    items = list(items)
    if progress is not None:
        progress(stage, 0, len(items))
    for done, item in enumerate(items, 1):
        yield item
        if progress is not None:
            progress(stage, done, len(items))


def one_step(stage: str, progress: Progress | None, work: Callable):
    """Return `work()`, reported as a stage of one item (0 of 1 before, 1 of 1 after)."""
    if progress is not None:
        progress(stage, 0, 1)
    result = work()
    if progress is not None:
        progress(stage, 1, 1)
    return result


def conformal_rank(n: int, alpha: float) -> int:
    """ceil((n+1)(1-alpha)): the rank (1-based) of the split-conformal quantile among n scores."""
    return math.ceil((n + 1) * (1.0 - alpha) - RANK_TOLERANCE)


def min_episodes(alpha: float) -> int:
    """Smallest K with ceil((K+1)(1-alpha)) <= K, i.e. K >= (1-alpha)/alpha (else no guarantee)."""
    return math.ceil((1.0 - alpha) / alpha - RANK_TOLERANCE)


def episode_quantile(groups: list[np.ndarray], alpha: float, coverage: str) -> Quantile:
    """
    Conformal quantile of per-episode score arrays, each episode weighted 1/K.

    'episode': the rank-th smallest of the K episode maxima. 'frame': the smallest score whose
    weighted CDF (frame i of episode k weighs 1/(K n_k)) reaches rank/K. rank > K: the largest
    score, and `claimed` is False.
    """
    k = len(groups)
    rank = conformal_rank(k, alpha)
    claimed = rank <= k
    if coverage == 'episode':
        maxima = np.sort([g.max() for g in groups])
        return Quantile(float(maxima[min(rank, k) - 1]), rank, k, claimed)
    if not claimed:
        return Quantile(float(max(g.max() for g in groups)), rank, k, claimed)
    values = np.concatenate(groups)
    weights = np.concatenate([np.full(g.size, 1.0 / (k * g.size)) for g in groups])
    order = np.argsort(values, kind='stable')
    cdf = np.cumsum(weights[order])
    index = min(int(np.searchsorted(cdf, rank / k - RANK_TOLERANCE)), values.size - 1)
    return Quantile(float(values[order[index]]), rank, k, claimed)


def _floor(scale: np.ndarray) -> np.ndarray:
    """Smallest usable spread for a joint: 1e-6 * max(1, |scale|) (avoids a divide by zero)."""
    return 1e-6 * np.maximum(1.0, np.abs(scale))


def _split(count: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Seeded permutation of episode positions -> (fit, score, held-out), each sorted.

    The calibration episodes (all but the held-out share) are halved into fit and score parts.
    """
    n_hold = int(math.floor(holdout * count + 0.5))
    if holdout > 0 and count >= 3:
        n_hold = max(1, n_hold)
    n_cal = count - n_hold
    if n_cal < 2:
        raise InputError(f'need at least 2 calibration episodes, have {max(n_cal, 0)} of {count} '
                         f'(holdout {holdout})')
    perm = np.random.default_rng(seed).permutation(count)
    n_fit = n_cal // 2
    return (np.sort(perm[n_hold:n_hold + n_fit]), np.sort(perm[n_hold + n_fit:]),
            np.sort(perm[:n_hold]))


def _validate(episodes, dim: int, dt: float, alpha: float, holdout: float, coverage: str,
              progress: Progress | None = None) -> list[np.ndarray]:
    """Return the episodes as float arrays [T, D] after checking them and the settings."""
    if not (0.0 < alpha < 1.0):
        raise InputError(f'alpha must be in (0, 1), got {alpha!r}')
    if not (0.0 <= holdout < 1.0):
        raise InputError(f'holdout must be in [0, 1), got {holdout!r}')
    if not (np.isfinite(dt) and dt > 0):
        raise InputError(f'dt must be a positive number, got {dt!r}')
    if coverage not in COVERAGE_MODES:
        raise InputError(f'coverage must be one of {COVERAGE_MODES}, got {coverage!r}')
    arrays = []
    for i, ep in enumerate(stepped(episodes, 'checking episodes', progress)):
        a = np.asarray(ep, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != dim:
            raise InputError(f'episode {i} has shape {a.shape}, expected [T, {dim}]')
        if a.shape[0] < 2:
            raise InputError(f'episode {i} has {a.shape[0]} steps '
                             f'(need at least 2 for velocities)')
        if not np.all(np.isfinite(a)):
            raise InputError(f'episode {i} contains a non-finite action')
        arrays.append(a)
    return arrays


def _validate_stamps(timestamps, arrays: list[np.ndarray]) -> list[np.ndarray | None]:
    """Per-episode timestamps [T] (s), strictly increasing; None (for all or one) = every dt."""
    if timestamps is None:
        return [None] * len(arrays)
    if len(timestamps) != len(arrays):
        raise InputError(f'{len(timestamps)} timestamp arrays for {len(arrays)} episodes')
    stamps = []
    for i, (ts, a) in enumerate(zip(timestamps, arrays)):
        if ts is not None:
            ts = np.asarray(ts, dtype=np.float64)
            if ts.shape != (a.shape[0],) or not np.all(np.isfinite(ts)):
                raise InputError(f'episode {i}: timestamps must be {a.shape[0]} finite numbers')
            if np.any(np.diff(ts) <= 0):
                raise InputError(f'episode {i}: timestamps do not increase at step '
                                 f'{int(np.argmax(np.diff(ts) <= 0)) + 1}')
        stamps.append(ts)
    return stamps


def _position_scores(frames: np.ndarray, mu: np.ndarray, sigma: np.ndarray,
                     progress: Progress | None = None) -> np.ndarray:
    """Return max_j |a_j - mu_j| / sigma_j per frame, in cache-sized chunks."""
    inv = 1.0 / sigma
    scores = np.empty(frames.shape[0])
    chunks = range(0, frames.shape[0], SCORE_CHUNK_ROWS)
    for start in stepped(chunks, 'scoring positions', progress):
        block = frames[start:start + SCORE_CHUNK_ROWS] - mu
        np.abs(block, out=block)
        block *= inv
        block.max(axis=1, out=scores[start:start + SCORE_CHUNK_ROWS])
    return scores


def episode_velocity(actions: np.ndarray, dt: float, stamps: np.ndarray | None) -> np.ndarray:
    """
    Within-episode velocities [m, D]: differences over the actual time step.

    With timestamps, a step that is not a single frame (dropped frames, a pause) is skipped: its
    difference spans an unknown motion and must not widen or narrow max_velocity.
    """
    diffs = np.diff(actions, axis=0)
    if stamps is None:
        return diffs / dt
    steps = np.diff(stamps)
    single = np.abs(steps / dt - 1.0) < SINGLE_FRAME_TOLERANCE
    return diffs[single] / steps[single, None]


def _share_inside(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Share of rows whose every joint lies in [lo, hi] (1 for no rows: nothing left the box)."""
    if values.shape[0] == 0:
        return 1.0
    return float(np.mean(np.all((values >= lo) & (values <= hi), axis=1)))


def _plain(value):
    """JSON-safe float (NaN/inf -> None)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _velocity_limits(velocities: list[np.ndarray], alpha: float, coverage: str):
    """Per-joint conformal quantile of |v| at 1 - alpha/D over the episodes that have steps."""
    groups = [np.abs(v) for v in velocities if v.shape[0]]
    if not groups:
        raise InputError('no calibration episode has two consecutive frames one period apart: '
                         'no velocity can be measured (check the timestamps or --fps)')
    dim = groups[0].shape[1]
    quantiles = [episode_quantile([g[:, j] for g in groups], alpha / dim, coverage)
                 for j in range(dim)]
    return np.array([qt.value for qt in quantiles]), quantiles[0]


def _claim_warnings(name: str, quantile: Quantile, alpha: float) -> list[str]:
    """Return the warning for a quantile with too few episodes to carry the conformal guarantee."""
    if quantile.claimed:
        return []
    return [f'{name}: only {quantile.n_episodes} episodes; the conformal guarantee at level '
            f'{1 - alpha:.4g} needs at least {min_episodes(alpha)}, so the limit is the largest '
            f'score and NO coverage is claimed (add demonstrations)']


def calibrate(episodes: list[np.ndarray], joint_names, dt: float, alpha: float = 0.05,
              holdout: float = 0.2, seed: int = 0, hardware: HardwareLimits | None = None,
              coverage: str = 'episode', timestamps=None,
              progress: Progress | None = None) -> CalibrationResult:
    """
    Calibrate the contract from episodes [T, D] at control period dt (see the module docstring).

    `timestamps`: optional per-episode arrays [T] in seconds (None entries allowed); velocities
    are then taken over the actual time steps and gaps of more than one frame are skipped.
    `progress(stage, done, total)`, if given, follows each long stage (see `stepped`).
    """
    names = tuple(str(n) for n in joint_names)
    dim = len(names)
    arrays = _validate(episodes, dim, dt, alpha, holdout, coverage, progress)
    stamps = _validate_stamps(timestamps, arrays)
    fit_idx, score_idx, hold_idx = _split(len(arrays), holdout, seed)
    cal_idx = np.sort(np.concatenate([fit_idx, score_idx]))
    fit_frames = np.concatenate([arrays[i] for i in fit_idx])
    score_frames = np.concatenate([arrays[i] for i in score_idx])
    repairs, notes = [], []

    # Position: centre/scale from the fit episodes, episode-level quantile of the score episodes.
    mu = fit_frames.mean(axis=0)
    sigma = fit_frames.std(axis=0)
    floor = _floor(mu)
    for j in np.flatnonzero(sigma < floor):
        repairs.append(f'joint {names[j]!r}: position has zero variance in the fit episodes; '
                       f'sigma set to {floor[j]:.3g}')
    sigma = np.maximum(sigma, floor)
    frame_scores = _position_scores(score_frames, mu, sigma, progress)
    lengths = np.cumsum([arrays[i].shape[0] for i in score_idx])[:-1]
    position = episode_quantile(np.split(frame_scores, lengths), alpha, coverage)
    scores = np.sort(frame_scores)
    n = scores.size
    q = position.value
    lower, upper = mu - q * sigma, mu + q * sigma

    # Velocity: per-joint quantile of |v| at 1 - alpha/D over every calibration episode.
    velocities = [episode_velocity(arrays[i], dt, stamps[i])
                  for i in stepped(cal_idx, 'measuring velocities', progress)]
    max_velocity, velocity_q = _velocity_limits(velocities, alpha, coverage)
    velocity = np.concatenate(velocities)
    m = velocity.shape[0]
    velocity_scale = velocity.std(axis=0)
    skipped = sum(arrays[i].shape[0] - 1 for i in cal_idx) - m
    if skipped:
        notes.append(f'velocity: {skipped} steps across timestamp gaps of more than one frame '
                     f'skipped')

    hardware_report = None
    limits = {}
    if hardware is not None:
        lower, upper, max_velocity, hardware_report = _intersect(
            names, lower, upper, max_velocity, hardware)
        limits, hardware_notes = contract_limits(hardware)
        notes.extend(hardware_notes)

    v_floor = _floor(mu) / dt
    for j in np.flatnonzero(max_velocity < v_floor):
        repairs.append(f'joint {names[j]!r}: max_velocity {max_velocity[j]:.3g} raised to the '
                       f'floor {v_floor[j]:.3g} (the joint does not move in the calibration '
                       f'episodes)')
    max_velocity = np.maximum(max_velocity, v_floor)
    velocity_scale = np.maximum(velocity_scale, v_floor)

    contract = Contract(joint_names=names, lower=lower, upper=upper, max_velocity=max_velocity,
                        dt=dt, **limits)
    motion_idx = _motion_subset(arrays, cal_idx, seed)
    motion = one_step('calibrating motion scores', progress, lambda: _motion_calibration(
        [arrays[i] for i in motion_idx], sigma, dt, alpha, seed,
        np.split(frame_scores, lengths), velocity_scale))
    data = CalibrationData(joint_names=names, mu=mu, sigma=sigma, scores=scores,
                           velocity_scale=velocity_scale, q=q, alpha=float(alpha), dt=float(dt),
                           motion=motion)
    tightness = _tightness(names, (fit_frames, score_frames), lower, upper)
    loose = [name for name, ratio in tightness['per_joint'].items()
             if ratio is not None and ratio > WIDE_BOUNDS_RATIO]
    hold_velocities = [episode_velocity(arrays[i], dt, stamps[i])
                       for i in stepped(hold_idx, 'checking held-out episodes', progress)]
    report = {
        'joint_names': list(names),
        'alpha': float(alpha),
        'dt': float(dt),
        'coverage': coverage,
        'coverage_claimed': position.claimed and velocity_q.claimed,
        'position_coverage_claimed': position.claimed,
        'velocity_coverage_claimed': velocity_q.claimed,
        'min_score_episodes': min_episodes(alpha),
        'q': q,
        'q_rank': position.rank,
        'position_quantile_level': position.rank / position.n_episodes,
        'velocity_quantile_level': 1.0 - alpha / dim,
        'velocity_rank': velocity_q.rank,
        'n_calibration_episodes': int(cal_idx.size),
        'n_fit_episodes': int(fit_idx.size),
        'n_score_episodes': int(score_idx.size),
        'n_velocity_episodes': velocity_q.n_episodes,
        'n_holdout_episodes': int(hold_idx.size),
        'n_calibration_frames': int(fit_frames.shape[0] + n),
        'n_score_frames': int(n),
        'n_calibration_steps': int(m),
        'n_skipped_velocity_steps': int(skipped),
        'calibration_episodes': cal_idx.tolist(),
        'fit_episodes': fit_idx.tolist(),
        'holdout_episodes': hold_idx.tolist(),
        **_holdout_coverage([arrays[i] for i in hold_idx], hold_velocities, contract, alpha,
                            coverage == 'episode'),
        'tightness_vs_heuristic': tightness,
        'lower': [float(v) for v in lower],
        'upper': [float(v) for v in upper],
        'max_velocity': [float(v) for v in max_velocity],
        'hardware': hardware_report,
        'motion': motion_report(motion, motion_idx.size, alpha),
        'repairs': repairs,
        'notes': notes,
    }
    report['warnings'] = (_claim_warnings('position', position, alpha)
                          + _claim_warnings('velocity', velocity_q, alpha / dim)
                          + report['warnings'])
    report['warnings'] += (report['motion'] or {}).get('warnings', [])
    if loose:
        report['warnings'].append(
            f'bounds of {", ".join(loose)} are more than {WIDE_BOUNDS_RATIO:g}x wider than the '
            f'calibration data min/max ± 10 %: the fit and score episodes differ a lot (different '
            f'tasks or setups?), so the contract is loose; add demonstrations of the same task or '
            f'--hardware-limits')
    return CalibrationResult(contract, data, report)


def _motion_subset(arrays: list[np.ndarray], cal_idx: np.ndarray, seed: int) -> np.ndarray:
    """
    Return calibration episodes for the motion scores: all, or a seeded subset of whole ones.

    Whole episodes drawn at random stay exchangeable with new ones, so the conformal scores keep
    their meaning; MOTION_MAX_FRAMES frames are plenty and keep calibration time bounded.
    """
    order = np.random.default_rng(seed).permutation(cal_idx)
    frames = np.cumsum([arrays[i].shape[0] for i in order])
    keep = max(1, int(np.searchsorted(frames, MOTION_MAX_FRAMES, side='right')))
    return np.sort(order[:keep]) if frames[-1] > MOTION_MAX_FRAMES else cal_idx


def _motion_calibration(episodes: list[np.ndarray], sigma: np.ndarray, dt: float, alpha: float,
                        seed: int, position_scores: list[np.ndarray],
                        velocity_scale: np.ndarray) -> MotionCalibration | None:
    """
    Return step, seam and window scores, holds and both CUSUMs' thresholds (default profile).

    The position CUSUM is measured on the score episodes' position scores `position_scores`;
    the stall runs below the deadband of the calibrated `velocity_scale`.
    """
    if not any(e.shape[0] >= 3 for e in episodes):
        return None
    profile = PROFILES[DEFAULT_PROFILE]
    motion = MotionCalibration.from_episodes(episodes, sigma, dt=dt, alpha=alpha,
                                             rho=profile.cusum_rho,
                                             target_per_hour=1.0 / profile.cusum_arl0_hours,
                                             seed=seed, velocity_scale=velocity_scale)
    return replace(motion, position_cusum=position_run_length(
        position_scores, dt, alpha, profile.cusum_rho, 1.0 / profile.cusum_arl0_hours, seed))


def motion_report(motion: MotionCalibration | None, n_episodes: int, alpha: float) -> dict | None:
    """
    Summarize the motion calibration for the reports: counts, the CUSUM's measured threshold.

    `cusum` holds the threshold measured on held-out episodes beside the i.i.d. design (`h_iid`)
    and the false alarms per hour each gives on those episodes (`measured_per_hour`,
    `measured_iid_per_hour`) against the design value (`iid_design_per_hour`); `holds` the
    longest freeze and stall runs and the default profile's alarm thresholds from them.
    """
    if motion is None:
        return None
    report = {'n_episodes': int(n_episodes), 'n_step_scores': int(motion.scores.size),
              'max_step_score': float(motion.scores[-1]),
              'n_seam_scores': 0 if motion.seam_scores is None else int(motion.seam_scores.size),
              'n_window_points': (0 if motion.windows is None
                                  else int(motion.windows.points.shape[0])),
              'window_span_steps': None if motion.windows is None else motion.windows.span,
              'cusum': None if motion.cusum is None else motion.cusum.to_dict(),
              'position_cusum': (None if motion.position_cusum is None
                                 else motion.position_cusum.to_dict()),
              'holds': (None if motion.holds is None
                        else motion.holds.report(PROFILES[DEFAULT_PROFILE], alpha)),
              'warnings': []}
    needed = min_episodes(alpha)
    if n_episodes < needed:
        report['warnings'].append(
            f'motion scores rest on {n_episodes} episode(s), fewer than {needed}: expect '
            f'step_spike and window_spike false alarms on episodes unlike them')
    if motion.cusum is None:
        report['warnings'].append(
            f'motion CUSUM: fewer than {MIN_RUN_LENGTH_EPISODES} episodes, too few to measure '
            f'in-control run lengths; it keeps the i.i.d. design, thinned to one sample per '
            f'motion_stride_s')
    holds = report['holds']
    if holds is not None and not holds['calibrated']:
        report['warnings'].append(
            f'holds: {holds["n_episodes"]} calibration episode(s), fewer than {needed}: the '
            f'freeze and stall alarms keep the fixed freeze_s and stall_s of the profile')
    return report


def _intersect(names, lower, upper, max_velocity, hw: HardwareLimits):
    """Calibrated limits intersected with the hardware's (NaN = no hardware limit)."""
    new_lower = np.fmax(lower, hw.lower)
    new_upper = np.fmin(upper, hw.upper)
    new_vmax = np.fmin(max_velocity, hw.max_velocity)
    clipped = []
    for j, name in enumerate(names):
        if new_lower[j] > new_upper[j]:
            raise InputError(f'joint {name!r}: calibrated range [{lower[j]:.6g}, {upper[j]:.6g}] '
                             f'does not overlap the hardware limits [{hw.lower[j]:.6g}, '
                             f'{hw.upper[j]:.6g}] in {hw.source} (units or joint order wrong?)')
        for label, old, new in (('lower', lower[j], new_lower[j]),
                                ('upper', upper[j], new_upper[j]),
                                ('max_velocity', max_velocity[j], new_vmax[j])):
            if new != old:
                clipped.append(f'joint {name!r}: {label} {old:.6g} -> {new:.6g} (hardware limit)')
    report = {'source': hw.source, 'missing_joints': list(hw.missing), 'clipped': clipped,
              'notes': list(hw.notes)}
    return new_lower, new_upper, new_vmax, report


def _holdout_coverage(hold_eps: list[np.ndarray], hold_velocities: list[np.ndarray],
                      contract: Contract, alpha: float, whole_episode: bool) -> dict:
    """
    Held-out coverage: share of frames (steps) inside, and of episodes entirely inside.

    `*_coverage_slack` is the one-sided 99 % sampling margin of the per-episode coverage mean,
    t_{0.99, k-1} * sd / sqrt(k) over the k held-out episodes (0 when k < 2): coverage below
    1 - alpha - slack is more than episode-to-episode variation explains and is reported in
    `warnings` (the episodes are then probably not exchangeable: different tasks or operators).
    `*_episode_coverage` is the share of held-out episodes with every frame (step) inside; a
    count that a Binomial(k, 1 - alpha) reaches with probability < 1 % is a warning too when the
    whole-episode guarantee was asked for.
    """
    if not hold_eps:
        return {'holdout_position_coverage': None, 'holdout_velocity_coverage': None,
                'holdout_position_episode_coverage': None,
                'holdout_velocity_episode_coverage': None,
                'n_holdout_frames': 0, 'warnings': []}
    lo, hi, vmax = contract.lower, contract.upper, contract.max_velocity
    frames = np.concatenate(hold_eps)
    velocity = np.concatenate(hold_velocities)
    per_joint = np.mean((frames >= lo) & (frames <= hi), axis=0)
    result = {
        'holdout_position_coverage': _share_inside(frames, lo, hi),
        'holdout_velocity_coverage': _share_inside(velocity, -vmax, vmax),
        'holdout_position_coverage_per_joint': dict(zip(contract.joint_names, per_joint.tolist())),
        'n_holdout_frames': int(frames.shape[0]),
    }
    per_episode = {
        'position': np.array([_share_inside(ep, lo, hi) for ep in hold_eps]),
        'velocity': np.array([_share_inside(v, -vmax, vmax) for v in hold_velocities]),
    }
    warnings = []
    for kind, values in per_episode.items():
        k = values.size
        slack = (float(stats.t.ppf(0.99, k - 1) * values.std(ddof=1) / math.sqrt(k))
                 if k >= 2 else 0.0)
        result[f'holdout_{kind}_coverage_per_episode'] = values.tolist()
        result[f'holdout_{kind}_coverage_slack'] = slack
        inside = int(np.sum(values == 1.0))
        result[f'holdout_{kind}_episode_coverage'] = inside / k
        if values.mean() < 1.0 - alpha - slack:
            over = (f'mean over {k} episodes' if k >= 2
                    else 'one held-out episode, no sampling margin can be estimated')
            warning = (f'held-out {kind} coverage {values.mean():.3f} ({over}) is below '
                       f'1 - alpha - slack = {1.0 - alpha - slack:.3f}')
            if kind == 'position':
                worst = int(np.argmin(per_joint))
                warning += (f'; worst joint {contract.joint_names[worst]!r} inside on '
                            f'{per_joint[worst]:.1%} of held-out frames')
            warnings.append(warning + '. Are the demonstrations from the same task and setup?')
        if whole_episode and stats.binom.cdf(inside, k, 1.0 - alpha) < HOLDOUT_WARN_P:
            warnings.append(f'held-out {kind}: only {inside} of {k} episodes stay entirely '
                            f'inside; under a whole-episode coverage of {1 - alpha:.3g} that has '
                            f'probability < {HOLDOUT_WARN_P:g}')
    result['warnings'] = warnings
    return result


def _tightness(names, parts, lower: np.ndarray, upper: np.ndarray) -> dict:
    """Width of our bounds / width of the heuristic (calibration data min/max ± 10 % of range)."""
    lo = np.min([p.min(axis=0) for p in parts], axis=0)
    hi = np.max([p.max(axis=0) for p in parts], axis=0)
    heuristic = (hi - lo) * (1.0 + 2.0 * HEURISTIC_MARGIN)
    with np.errstate(divide='ignore', invalid='ignore'):
        ratio = (upper - lower) / heuristic
    ratio[heuristic <= 0] = np.nan
    finite = ratio[np.isfinite(ratio)]
    return {'per_joint': {name: _plain(r) for name, r in zip(names, ratio)},
            'mean': _plain(finite.mean()) if finite.size else None}
