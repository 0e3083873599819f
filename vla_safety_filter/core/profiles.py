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
Monitor presets per policy family, selected by one name (doc/monitoring.md).

Which action-health signals predict failure differs by policy family: flow-matching / diffusion
policies (SmolVLA, pi0, Diffusion Policy) fail with direction reversals and loss of momentum
coherence; tokenized autoregressive policies (OpenVLA, VQ-BeT) with reversals and jerky bin jumps;
chunked policies (ACT) with chunk-boundary jumps and high-frequency chatter. A profile says which
metrics may raise alarms ("primary"); every metric is still computed and reported.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .errors import InputError

METRIC_ALARMS = ('reversal', 'jerk', 'coherence', 'spectral', 'stall')


@dataclass(frozen=True)
class MonitorProfile:
    """
    Window, deadband, alarm thresholds and CUSUM settings of the action monitor.

    Thresholds are dimensionless so one preset serves every robot: deadband and jerk are in units
    of the calibrated typical per-step motion (velocity_scale * dt).
    """

    name: str
    primary: tuple[str, ...]          # metric alarms that are armed (subset of METRIC_ALARMS)
    window_s: float = 1.0             # metric window length (seconds)
    block_s: float = 0.1              # metrics advance in blocks of this length (alarm latency)
    deadband: float = 0.1             # |d_j| < deadband * velocity_scale_j * dt: "not moving"
    reversal_max: float = 0.5         # alarm when the window reversal rate exceeds this
    jerk_max: float = 6.0             # alarm: RMS(3rd difference / (velocity_scale * dt)) > this
    coherence_min: float = 0.0        # alarm when the mean cosine of consecutive steps < this
    spectral_cutoff_hz: float = 2.0   # low-frequency band of the velocity spectrum
    spectral_min: float = 0.2         # alarm when the low-frequency power share falls below this
    spectral_window_s: float = 3.0    # the FFT metric's window (resolution 1 / this, in Hz)
    spectral_period_s: float = 0.5    # how often the FFT metric is computed
    stall_s: float = 1.5              # alarm after this long with no joint above the deadband
    freeze_s: float = 1.5             # exact repeats (with too few episodes to calibrate holds)
    hold_margin: float = 1.2          # calibrated hold alarm: margin * longest run + one step
    freeze_min_s: float = 0.5         # floor of the calibrated freeze threshold
    stall_min_s: float = 1.5          # floor of the calibrated stall threshold
    cusum_rho: float = 3.0            # CUSUM out-of-control exceedance rate = rho * alpha
    cusum_arl0_hours: float = 10.0    # in-control average run length target of the CUSUM
    cusum_stride_s: float = 1.0       # CUSUM sees one p-value per stride (decorrelation)
    spike_margin: float = 1.5         # step_spike: step score > this * largest calibration score
    motion_stride_s: float = 0.5      # motion CUSUM (i.i.d. design only): one sample per stride
    window_margin: float = 3.0        # window_spike: NN window score > this * largest calibration

    def __post_init__(self):
        unknown = [m for m in self.primary if m not in METRIC_ALARMS]
        if unknown:
            raise InputError(f'profile {self.name!r}: unknown metric alarm(s) {unknown}; '
                             f'choose from {list(METRIC_ALARMS)}')
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and f.name not in ('coherence_min',) and not value > 0:
                raise InputError(f'profile {self.name!r}: {f.name} must be > 0, got {value}')
        if not -1.0 <= self.coherence_min <= 1.0:
            raise InputError(f'profile {self.name!r}: coherence_min must be in [-1, 1]')
        if not 0.0 < self.reversal_max <= 1.0 or not 0.0 < self.spectral_min <= 1.0:
            raise InputError(f'profile {self.name!r}: reversal_max and spectral_min must be in '
                             '(0, 1]')


PROFILES = {
    'generic': MonitorProfile('generic', primary=('reversal', 'jerk', 'stall')),
    'flow_matching': MonitorProfile('flow_matching', primary=('reversal', 'coherence', 'stall')),
    'autoregressive': MonitorProfile('autoregressive', primary=('reversal', 'jerk', 'stall'),
                                     jerk_max=8.0),
    'chunked': MonitorProfile('chunked', primary=('jerk', 'spectral', 'stall'), jerk_max=8.0),
}
ALIASES = {'smolvla': 'flow_matching', 'pi0': 'flow_matching', 'diffusion': 'flow_matching',
           'openvla': 'autoregressive', 'vqbet': 'autoregressive', 'act': 'chunked'}
DEFAULT_PROFILE = 'generic'


def profile_names() -> list[str]:
    """Preset names and their aliases, for help texts and error messages."""
    return sorted(PROFILES) + sorted(ALIASES)


def get_profile(name: str, **overrides) -> MonitorProfile:
    """Return the preset called `name` (or an alias such as 'smolvla'), with field overrides."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in PROFILES:
        raise InputError(f'unknown monitor profile {name!r}; choose from {profile_names()}')
    known = {f.name for f in fields(MonitorProfile)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise InputError(f'unknown monitor profile field(s) {bad}')
    return replace(PROFILES[key], **overrides) if overrides else PROFILES[key]
