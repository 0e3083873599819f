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

"""`vla-safety drill`: a policy acting in a physics world under paired conditions, measured."""
from __future__ import annotations

from dataclasses import replace
import math
import sys

from ..core.errors import InputError

DEFAULT_CONDITIONS = 'none,filter'


def register(subparsers) -> None:
    """Add `vla-safety drill` and its options to the command line."""
    from ..core.drill.conditions import NORM_MODES
    from ..core.drill.policies import DEFAULT_HORIZON
    from ..core.profiles import DEFAULT_PROFILE, profile_names

    p = subparsers.add_parser(
        'drill', help='closed-loop drill: a policy in a physics world with and without the filter '
                      '(paired seeds, success, cost, monitor AUROC)',
        description='Run a policy in a gymnasium world under each condition on the same seeds '
                    '(episode k uses world seed S + k in every condition) and report success '
                    'with Wilson intervals, the exact McNemar test against `none`, safety costs '
                    "and the monitor's AUROC for failure. See doc/drills.md.")
    p.add_argument('--world', default='pusht',
                   help='world: pusht (default; gym-pusht), aloha (gym-aloha transfer cube) or '
                        'aloha-insertion (needs the aloha extra)')
    p.add_argument('--policy', required=True, metavar='POLICY',
                   help='nn:DEMOS (nearest neighbour), replay:DEMOS, ws://HOST:PORT (openpi) or '
                        'http://HOST:PORT/act (OpenVLA REST); DEMOS is an .npz or a LeRobot '
                        'dataset folder (v2.x, v3.0) with observation.state and action')
    p.add_argument('--params', metavar='CONTRACT.yaml', help='parameter YAML from `vla-safety '
                   'calibrate` (default: calibrate on the demonstrations)')
    p.add_argument('--demos', metavar='DEMOS', help='demonstrations to calibrate on when '
                   "--params is not given (default: the nn:/replay: policy's data)")
    p.add_argument('--episodes', type=int, default=20, help='episodes per condition (default 20)')
    p.add_argument('--seed', type=int, default=0, help='world seed of episode 0 (default 0)')
    p.add_argument('--conditions', default=DEFAULT_CONDITIONS,
                   help='comma-separated: none, filter, filter+stop, FAULT, FAULT+filter, '
                        f'FAULT+filter+stop (default {DEFAULT_CONDITIONS})')
    p.add_argument('--replan-every', type=int, metavar='K',
                   help='ask the policy again after K steps (default: execute each chunk whole)')
    p.add_argument('--horizon', type=int, default=DEFAULT_HORIZON,
                   help=f'chunk length of nn:/replay: policies (default {DEFAULT_HORIZON})')
    p.add_argument('--fault-at', type=float, default=2.0, metavar='SECONDS',
                   help='fault onset in every FAULT condition (default 2 s)')
    p.add_argument('--sibling', metavar='DEMOS',
                   help='a sibling dataset whose action statistics the wrong-unnormalizer fault '
                        'uses (e.g. another PushT variant)')
    p.add_argument('--norm-mode', choices=NORM_MODES, default='mean_std',
                   help='how the policy normalizes its outputs, for the unnormalized and '
                        'wrong-unnormalizer faults: mean_std (standard scores from the '
                        "calibration) or min_max ([-1, 1] over the demonstrations' min..max, "
                        'as the PushT diffusion policy; needs --demos or an nn:/replay: policy)')
    p.add_argument('--early-steps', type=int, default=50, metavar='N',
                   help="AUROC also on the monitor's scores after the first N steps "
                        '(default 50)')
    p.add_argument('--max-steps', type=int, help='episode time limit in steps (default: the '
                   "world's, 300 for pusht)")
    p.add_argument('--profile', default=DEFAULT_PROFILE,
                   help=f'monitor preset: {", ".join(profile_names())} '
                        f'(default {DEFAULT_PROFILE})')
    p.add_argument('--timeout', type=float, default=10.0,
                   help='remote policy reply timeout in seconds (default 10)')
    p.add_argument('--render', action='store_true',
                   help='send camera images to the policy (observation.images.top)')
    p.add_argument('--workers', type=int, default=1, metavar='N',
                   help='run episodes in N processes (same results as 1; nn:/replay: policies '
                        'only; default 1)')
    p.add_argument('--no-plots', action='store_true',
                   help='skip the figures and index.html (drill.json and episodes.npz only)')
    p.add_argument('--output', required=True, metavar='DIR',
                   help='write drill.json, episodes.npz, figures and index.html here')
    p.set_defaults(func=run)


def _settings(args):
    """Return the drill settings of the command line, validated."""
    from ..core.drill.conditions import parse_conditions
    from ..core.drill.runner import DrillSettings

    conditions = tuple(parse_conditions(args.conditions))
    checks = [(args.episodes >= 1, '--episodes must be >= 1'),
              (args.replan_every is None or args.replan_every >= 1, '--replan-every must be >= 1'),
              (args.early_steps >= 1, '--early-steps must be >= 1'),
              (args.max_steps is None or args.max_steps >= 1, '--max-steps must be >= 1'),
              (math.isfinite(args.fault_at) and args.fault_at >= 0, '--fault-at must be >= 0 s'),
              (args.timeout > 0, '--timeout must be > 0'),
              (args.workers >= 1, '--workers must be >= 1'),
              (args.workers == 1 or _demos_of_policy(args.policy) is not None,
               '--workers > 1 needs an nn: or replay: policy (a remote server is one process)')]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    return DrillSettings(episodes=args.episodes, seed=args.seed, conditions=conditions,
                         replan_every=args.replan_every, fault_at_s=args.fault_at,
                         early_steps=args.early_steps, max_steps=args.max_steps,
                         profile=args.profile)


def _safety(args, world):
    """Return the contract and monitor calibration: --params, else calibrated on the demos."""
    from ..core.drill.runner import safety_from_demos, safety_from_params

    if args.params:
        return safety_from_params(args.params, world)
    demos = args.demos or _demos_of_policy(args.policy)
    if demos is None:
        raise InputError('give --params CONTRACT.yaml or --demos DEMOS to calibrate on')
    return safety_from_demos(demos, world)


def _demos_of_policy(spec: str) -> str | None:
    """Return the data of an nn:/replay: policy spec, None for a remote policy."""
    kind, sep, path = spec.partition(':')
    return path if sep and kind in ('nn', 'replay') else None


def _normalizers(args, settings, world):
    """Return settings with the policy's own and the sibling's unnormalizers (--norm-mode)."""
    from ..core.drill.runner import demo_normalizer

    own = None
    if args.norm_mode != 'mean_std':
        demos = args.demos or _demos_of_policy(args.policy)
        if demos is None:
            raise InputError(f'--norm-mode {args.norm_mode} needs --demos DEMOS (the data the '
                             f'policy was trained on)')
        own = demo_normalizer(demos, world, args.norm_mode)
    sibling = args.sibling and demo_normalizer(args.sibling, world, args.norm_mode)
    return replace(settings, own=own, sibling=sibling or None)


def _run_with_progress(args, world, policy, safety, settings):
    """Run the drill with a rich progress bar (on stderr), one line per condition's first fault."""
    from rich.console import Console
    from rich.progress import Progress

    from ..core.drill.runner import DrillSetup, run_drill, run_drill_parallel

    setup = DrillSetup(args.world, args.policy, args.horizon, args.timeout, args.render)

    reported = set()
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task('drill', total=settings.episodes * len(settings.conditions))

        def advance(ep):
            if ep.policy_fault and ep.condition not in reported:
                reported.add(ep.condition)
                progress.console.print(f'vla-safety drill: policy fault ({ep.condition}, seed '
                                       f'{ep.seed}): {ep.policy_fault}', markup=False,
                                       highlight=False, soft_wrap=True)
            progress.update(task, advance=1, description=f'{ep.condition} seed {ep.seed}')

        if args.workers > 1:
            return run_drill_parallel(setup, safety, settings, args.workers, progress=advance)
        return run_drill(world, policy, safety, settings, progress=advance)


def _print_table(report: dict) -> None:
    """Print one line per condition: success, interval, McNemar p, cost."""
    print(f'{"condition":<32} {"success":>9} {"ci95":>15} {"p vs none":>9} {"mean cost":>9} '
          f'{"max cost":>8}')
    for name, c in report['conditions'].items():
        p = '-' if c['mcnemar_p_vs_none'] is None else f'{c["mcnemar_p_vs_none"]:.3g}'
        lo, hi = c['ci95']
        print(f'{name:<32} {c["successes"]:>4}/{c["n"]:<4} {f"[{lo:.2f}, {hi:.2f}]":>15} '
              f'{p:>9} {c["cost"]["mean_cost"]:>9.3g} {c["cost"]["max_cost"]:>8.3g}')


def run(args) -> int:
    """Run the drill of the command line, write its outputs and print the summary table."""
    from ..core.drill.policies import make_policy
    from ..core.drill.runner import roc_curves, summarize, write_outputs
    from ..core.drill.worlds import make_world

    settings = _settings(args)
    world = make_world(args.world, render=args.render)
    try:
        settings = _normalizers(args, settings, world)
        policy = make_policy(args.policy, timeout=args.timeout, horizon=args.horizon)
        try:
            safety = _safety(args, world)
            episodes = _run_with_progress(args, world, policy, safety, settings)
        finally:
            policy.close()
    finally:
        world.close()
    report = {
        'world': args.world, 'policy': args.policy, 'contract': safety.source,
        'episodes': settings.episodes, 'seed': settings.seed,
        'replan_every': settings.replan_every, 'fault_at_s': settings.fault_at_s,
        'sibling': args.sibling, 'norm_mode': args.norm_mode, 'workers': args.workers,
        'early_steps': settings.early_steps, 'profile': settings.profile,
        'cost_weights': dict(safety.costs.costs), 'budget': safety.costs.budget,
        'conditions': summarize(episodes, settings, safety.costs.budget, world.dt),
        'roc_first_steps': roc_curves(episodes, settings),
    }
    write_outputs(args.output, report, episodes, len(world.action_names), world.state_dim)
    if not args.no_plots:
        from ..core.drill.figures import render

        costs = {name: [ep.cost for ep in episodes if ep.condition == name]
                 for name in report['conditions']}
        render(report, costs, report['roc_first_steps'], args.output)
    _print_table(report)
    print(f'wrote {args.output}: drill.json, episodes.npz'
          + ('' if args.no_plots else ', index.html and figures'), file=sys.stderr)
    return 0
