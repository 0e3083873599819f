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
`vla-safety check`: compare a checkpoint's unnormalizer with a deployment's before any rollout.

Exit 0 = identical, 1 = mismatch (the drift certificate is printed), 2 = cannot check.
"""
from __future__ import annotations

import json
import sys

from ..core.checkpoints import FORMATS, load_metadata, load_params_yaml, OFT_TYPES, OPENPI_TYPES
from ..core.errors import InputError
from ..core.execspec import check_metadata, CheckResult, DEFAULT_TOL, Metadata

EXIT_CODES = {'identical': 0, 'mismatch': 1, 'cannot_check': 2}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'check', help='verify the unnormalizer metadata against the checkpoint before a rollout',
        description='Compare the action unnormalizer stored with a checkpoint (OpenVLA, '
                    'OpenVLA-OFT, '
                    'LeRobot, or our YAML) with the one a deployment would run, and print the '
                    'drift '
                    'certificate: how far the executed actions move, in closed form, without '
                    'inference.',
        epilog='Exit codes: 0 identical, 1 mismatch (certificate printed), 2 cannot check (bad or '
               'missing input). Example: vla-safety check --checkpoint ckpt/ --unnorm-key '
               'bridge_orig '
               '--params config/policy_bridge.yaml')
    parser.add_argument('--checkpoint', required=True, metavar='PATH',
                        help='checkpoint directory or metadata file (config.json, '
                             'dataset_statistics.json, '
                             'policy_postprocessor.json, or a policy_bridge parameter YAML)')
    parser.add_argument('--format', choices=FORMATS, default='auto',
                        help='checkpoint format (default: detected from the files present)')
    parser.add_argument('--unnorm-key', metavar='K',
                        help='dataset key of the statistics the policy was trained for (needed '
                             'when the '
                             'checkpoint holds several; never guessed)')
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument('--params', metavar='PARAMS.yaml',
                        help='the policy_bridge parameter file whose `unnormalizer.*` the robot '
                             'would run with')
    target.add_argument('--against-key', metavar='K2',
                        help='what-if: certify the drift if the deployment used key K2 instead of '
                             'K')
    parser.add_argument('--normalization-type', choices=sorted({**OFT_TYPES, **OPENPI_TYPES}),
                        help='OpenVLA-OFT: BOUNDS (min/max, e.g. ALOHA) or BOUNDS_Q99 (q01/q99, '
                             'e.g. LIBERO, Bridge); openpi: MEAN_STD (pi0) or QUANTILE '
                             '(pi0-FAST, pi0.5)')
    parser.add_argument('--tol', type=float, default=DEFAULT_TOL, metavar='FRACTION',
                        help=f'allowed statistic difference as a fraction of the half-range '
                             f'(default {DEFAULT_TOL:g})')
    parser.add_argument('--report', metavar='REPORT.json', help='also write the verdict and '
                                                                'certificate as JSON')
    parser.set_defaults(func=run)


def _describe(meta: Metadata) -> str:
    normalized = [str(j) for j in range(meta.dim) if meta.mask[j]]
    return (f'{meta.source}  (mode {meta.mode}, key {meta.key or "-"}, {meta.dim} dims, '
            f'normalized dims {",".join(normalized) or "none"})')


def format_result(result: CheckResult) -> str:
    """Human-readable verdict, reasons and certificate table."""
    lines = []
    if result.reference is not None:
        lines.append(f'checkpoint: {_describe(result.reference)}')
    if result.deployed is not None:
        lines.append(f'deployed:   {_describe(result.deployed)}')
    lines.append(f'verdict:    {result.verdict.upper()}')
    if result.verdict != 'cannot_check':   # cannot_check reasons go to stderr as errors
        lines += [f'  - {reason}' for reason in result.reasons]
    lines += [f'  note: {note}' for note in result.notes]
    cert = result.certificate
    if cert is None:
        return '\n'.join(lines)
    names = result.reference.names or ('-',) * cert.mask.size
    x_range = f'u = x/{cert.radius:g}' if cert.radius != 1 else 'u = x'
    lines += ['', f'drift certificate: deployed(x) = checkpoint(x) + h * ((s - 1) u + t), '
                  f'{x_range} ~ U[-1, 1]',
              f'  {"dim":>4} {"name":<14} {"h":>11} {"s":>10} {"t":>10} {"drift":>10} '
              f'{"drift*h":>11}']
    for j, name in enumerate(names):
        flag = '' if cert.mask[j] else '  (passed through)'
        lines.append(f'  {j:>4} {name[:14]:<14} {cert.half_range[j]:>11.5g} '
                     f'{cert.scale[j]:>10.5g} '
                     f'{cert.shift[j]:>10.5g} {cert.per_dim_drift[j]:>10.5g} '
                     f'{cert.per_dim_drift_abs[j]:>11.5g}{flag}')
    lines.append(f'  mean drift {cert.mean_drift:.6g}, max drift {cert.max_drift:.6g} '
                 '(in half-ranges h, over normalized dims)')
    return '\n'.join(lines)


def run(args) -> int:
    try:
        reference = load_metadata(args.checkpoint, args.format, args.unnorm_key,
                                  args.normalization_type)
        if args.params:
            deployed = load_params_yaml(args.params)
        else:
            deployed = load_metadata(args.checkpoint, args.format, args.against_key,
                                     args.normalization_type)
        result = check_metadata(reference, deployed, args.tol)
    except InputError as exc:
        result = CheckResult('cannot_check', [str(exc)])
    print(format_result(result))
    if result.verdict == 'cannot_check':
        print(f'vla-safety check: error: {"; ".join(result.reasons)}', file=sys.stderr)
    if args.report:
        try:
            with open(args.report, 'w') as fh:
                json.dump(result.to_report(), fh, indent=2)
                fh.write('\n')
        except OSError as exc:
            raise InputError(f'{args.report}: cannot write report ({exc.strerror})') from None
    return EXIT_CODES[result.verdict]
