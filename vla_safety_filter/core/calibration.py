"""Split-conformal calibration of the action contract from demonstration episodes (DESIGN §4).

Episodes (never frames) are split into a calibration part and a held-out part; the calibration
episodes are split again into a fit half (mu, sigma) and a score half, so the conformal scores are
out-of-sample like a new action's score. Position bounds are `mu ± q sigma` with q the
finite-sample conformal quantile of the score `max_j |a_j - mu_j| / sigma_j`;
per-joint velocity limits are the conformal (1 - alpha/D) quantiles of within-episode |velocity|
(a union bound, so all joints hold together with probability >= 1 - alpha). The held-out episodes
measure the coverage actually reached.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .contract import Contract
from .errors import InputError
from .limits import HardwareLimits
from .params import CalibrationData

SCORE_CHUNK_ROWS = 1 << 16
HEURISTIC_MARGIN = 0.10  # the heuristic contract: data min/max widened by 10 % of the range
RANK_TOLERANCE = 1e-9     # keeps ceil((n+1)(1-alpha)) from jumping on float round-off
WIDE_BOUNDS_RATIO = 2.0   # bounds this many times wider than the heuristic are reported as loose


@dataclass(frozen=True)
class CalibrationResult:
    """The calibrated contract, the monitor's calibration data and a JSON-serializable report."""

    contract: Contract
    data: CalibrationData
    report: dict


def conformal_rank(n: int, alpha: float) -> int:
    """ceil((n+1)(1-alpha)): the rank (1-based) of the split-conformal quantile among n scores."""
    return math.ceil((n + 1) * (1.0 - alpha) - RANK_TOLERANCE)


def _floor(scale: np.ndarray) -> np.ndarray:
    """Smallest usable spread for a joint: 1e-6 * max(1, |scale|) (avoids a divide by zero)."""
    return 1e-6 * np.maximum(1.0, np.abs(scale))


def _split(count: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded permutation of episode positions -> (fit, score, held-out), each sorted.

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


def _validate(episodes, dim: int, dt: float, alpha: float, holdout: float) -> list[np.ndarray]:
    if not (0.0 < alpha < 1.0):
        raise InputError(f'alpha must be in (0, 1), got {alpha!r}')
    if not (0.0 <= holdout < 1.0):
        raise InputError(f'holdout must be in [0, 1), got {holdout!r}')
    if not (np.isfinite(dt) and dt > 0):
        raise InputError(f'dt must be a positive number, got {dt!r}')
    arrays = []
    for i, ep in enumerate(episodes):
        a = np.asarray(ep, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != dim:
            raise InputError(f'episode {i} has shape {a.shape}, expected [T, {dim}]')
        if a.shape[0] < 2:
            raise InputError(f'episode {i} has {a.shape[0]} steps (need at least 2 for velocities)')
        if not np.all(np.isfinite(a)):
            raise InputError(f'episode {i} contains a non-finite action')
        arrays.append(a)
    return arrays


def _position_scores(frames: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """max_j |a_j - mu_j| / sigma_j per frame, in cache-sized chunks."""
    inv = 1.0 / sigma
    scores = np.empty(frames.shape[0])
    for start in range(0, frames.shape[0], SCORE_CHUNK_ROWS):
        block = frames[start:start + SCORE_CHUNK_ROWS] - mu
        np.abs(block, out=block)
        block *= inv
        block.max(axis=1, out=scores[start:start + SCORE_CHUNK_ROWS])
    return scores


def _velocities(episodes: list[np.ndarray], dt: float) -> np.ndarray:
    """Within-episode consecutive differences / dt, stacked [sum(T-1), D]."""
    return np.concatenate([np.diff(ep, axis=0) for ep in episodes]) / dt


def _per_joint_order_statistic(values: np.ndarray, rank: int) -> np.ndarray:
    """The rank-th smallest (1-based) value of each column."""
    cols = np.ascontiguousarray(values.T)
    return np.partition(cols, rank - 1, axis=1)[:, rank - 1]


def _share_inside(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Share of rows whose every joint lies in [lo, hi]."""
    return float(np.mean(np.all((values >= lo) & (values <= hi), axis=1)))


def _plain(value):
    """JSON-safe float (NaN/inf -> None)."""
    value = float(value)
    return value if math.isfinite(value) else None


def calibrate(episodes: list[np.ndarray], joint_names, dt: float, alpha: float = 0.05,
              holdout: float = 0.2, seed: int = 0,
              hardware: HardwareLimits | None = None) -> CalibrationResult:
    """Calibrate the contract from episodes [T, D] at control period dt (see the module docstring)."""
    names = tuple(str(n) for n in joint_names)
    dim = len(names)
    arrays = _validate(episodes, dim, dt, alpha, holdout)
    fit_idx, score_idx, hold_idx = _split(len(arrays), holdout, seed)
    cal_idx = np.sort(np.concatenate([fit_idx, score_idx]))
    cal_eps = [arrays[i] for i in cal_idx]
    hold_eps = [arrays[i] for i in hold_idx]
    fit_frames = np.concatenate([arrays[i] for i in fit_idx])
    score_frames = np.concatenate([arrays[i] for i in score_idx])
    repairs, notes = [], []

    # Position: centre/scale from the fit episodes, conformal quantile of the score episodes.
    mu = fit_frames.mean(axis=0)
    sigma = fit_frames.std(axis=0)
    floor = _floor(mu)
    for j in np.flatnonzero(sigma < floor):
        repairs.append(f'joint {names[j]!r}: position has zero variance in the fit episodes; '
                       f'sigma set to {floor[j]:.3g}')
    sigma = np.maximum(sigma, floor)
    scores = np.sort(_position_scores(score_frames, mu, sigma))
    n = scores.size
    rank = conformal_rank(n, alpha)
    if rank > n:
        notes.append(f'position: rank {rank} > n = {n} score frames; q set to the largest '
                     f'score (coverage guarantee needs more data)')
    q = float(scores[min(rank, n) - 1])
    lower, upper = mu - q * sigma, mu + q * sigma

    # Velocity: per-joint conformal (1 - alpha/D) quantile of |v|.
    velocity = _velocities(cal_eps, dt)
    m = velocity.shape[0]
    v_rank = conformal_rank(m, alpha / dim)
    if v_rank > m:
        notes.append(f'velocity: rank {v_rank} > m = {m} calibration steps; max_velocity set to '
                     f'the largest |v| (coverage guarantee needs more data)')
    max_velocity = _per_joint_order_statistic(np.abs(velocity), min(v_rank, m))
    velocity_scale = velocity.std(axis=0)

    hardware_report = None
    max_acceleration = None
    if hardware is not None:
        lower, upper, max_velocity, hardware_report = _intersect(
            names, lower, upper, max_velocity, hardware)
        if np.all(np.isfinite(hardware.max_acceleration)):
            max_acceleration = hardware.max_acceleration
        elif np.any(np.isfinite(hardware.max_acceleration)):
            notes.append('hardware max_acceleration not used: not given for every joint')

    v_floor = _floor(mu) / dt
    for j in np.flatnonzero(max_velocity < v_floor):
        repairs.append(f'joint {names[j]!r}: max_velocity {max_velocity[j]:.3g} raised to the '
                       f'floor {v_floor[j]:.3g} (the joint does not move in the calibration episodes)')
    max_velocity = np.maximum(max_velocity, v_floor)
    velocity_scale = np.maximum(velocity_scale, v_floor)

    contract = Contract(joint_names=names, lower=lower, upper=upper, max_velocity=max_velocity,
                        dt=dt, max_acceleration=max_acceleration)
    data = CalibrationData(joint_names=names, mu=mu, sigma=sigma, scores=scores,
                           velocity_scale=velocity_scale, q=q, alpha=float(alpha), dt=float(dt))
    tightness = _tightness(names, (fit_frames, score_frames), lower, upper)
    loose = [name for name, ratio in tightness['per_joint'].items()
             if ratio is not None and ratio > WIDE_BOUNDS_RATIO]
    report = {
        'joint_names': list(names),
        'alpha': float(alpha),
        'dt': float(dt),
        'q': q,
        'q_rank': rank,
        'velocity_quantile_level': 1.0 - alpha / dim,
        'velocity_rank': v_rank,
        'n_calibration_episodes': int(cal_idx.size),
        'n_fit_episodes': int(fit_idx.size),
        'n_holdout_episodes': int(hold_idx.size),
        'n_calibration_frames': int(fit_frames.shape[0] + n),
        'n_score_frames': int(n),
        'n_calibration_steps': int(m),
        'calibration_episodes': cal_idx.tolist(),
        'fit_episodes': fit_idx.tolist(),
        'holdout_episodes': hold_idx.tolist(),
        **_holdout_coverage(hold_eps, contract, alpha),
        'tightness_vs_heuristic': tightness,
        'lower': [float(v) for v in lower],
        'upper': [float(v) for v in upper],
        'max_velocity': [float(v) for v in max_velocity],
        'hardware': hardware_report,
        'repairs': repairs,
        'notes': notes,
    }
    if loose:
        report['warnings'].append(
            f'bounds of {", ".join(loose)} are more than {WIDE_BOUNDS_RATIO:g}x wider than the '
            f'calibration data min/max ± 10 %: the fit and score episodes differ a lot (different '
            f'tasks or setups?), so the contract is loose; add demonstrations of the same task or '
            f'--hardware-limits')
    return CalibrationResult(contract, data, report)


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
        for label, old, new in (('lower', lower[j], new_lower[j]), ('upper', upper[j], new_upper[j]),
                                ('max_velocity', max_velocity[j], new_vmax[j])):
            if new != old:
                clipped.append(f'joint {name!r}: {label} {old:.6g} -> {new:.6g} (hardware limit)')
    report = {'source': hw.source, 'missing_joints': list(hw.missing), 'clipped': clipped,
              'notes': list(hw.notes)}
    return new_lower, new_upper, new_vmax, report


def _holdout_coverage(hold_eps: list[np.ndarray], contract: Contract, alpha: float) -> dict:
    """Share of held-out frames (steps) with every joint inside the bounds (velocity limits).

    `*_coverage_slack` is the one-sided 99 % sampling margin of the per-episode coverage mean,
    t_{0.99, k-1} * sd / sqrt(k) over the k held-out episodes (0 when k < 2): coverage below
    1 - alpha - slack is more than episode-to-episode variation explains and is reported in
    `warnings` (the episodes are then probably not exchangeable: different tasks or operators).
    """
    if not hold_eps:
        return {'holdout_position_coverage': None, 'holdout_velocity_coverage': None,
                'n_holdout_frames': 0, 'warnings': []}
    lo, hi, vmax = contract.lower, contract.upper, contract.max_velocity
    frames = np.concatenate(hold_eps)
    velocity = _velocities(hold_eps, contract.dt)
    per_joint = np.mean((frames >= lo) & (frames <= hi), axis=0)
    result = {
        'holdout_position_coverage': _share_inside(frames, lo, hi),
        'holdout_velocity_coverage': _share_inside(velocity, -vmax, vmax),
        'holdout_position_coverage_per_joint': dict(zip(contract.joint_names, per_joint.tolist())),
        'n_holdout_frames': int(frames.shape[0]),
    }
    per_episode = {
        'position': np.array([_share_inside(ep, lo, hi) for ep in hold_eps]),
        'velocity': np.array([_share_inside(np.diff(ep, axis=0) / contract.dt, -vmax, vmax)
                              for ep in hold_eps]),
    }
    warnings = []
    for kind, values in per_episode.items():
        k = values.size
        slack = (float(stats.t.ppf(0.99, k - 1) * values.std(ddof=1) / math.sqrt(k))
                 if k >= 2 else 0.0)
        result[f'holdout_{kind}_coverage_per_episode'] = values.tolist()
        result[f'holdout_{kind}_coverage_slack'] = slack
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
