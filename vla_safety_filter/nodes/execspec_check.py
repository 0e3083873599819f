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
execspec_check: the pipeline's gate; nothing moves until the bridge's unnormalizer is checked.

A LifecycleManager (nodes/lifecycle_manager.py: `node_names`, `autostart`,
`transition_timeout`) whose bringup checks before it activates. Bringup (at startup with
`autostart`, or on `~/bringup`, std_srvs/Trigger): configure every managed node that is
unconfigured; ask the bridge (`/<bridge>/loaded_unnormalizer`) what its last configure loaded,
reconfiguring an inactive bridge first if its parameters changed since; check that with
core.execspec.check_loaded against the checkpoint's metadata (statistics, mode, key, mask,
dimension, `normalized_input`, and dimension names/order where the checkpoint names them; the
report's notes say what was not checked); only if identical, activate in order (monitor ->
filter -> bridge). Any refusal, or any change of the bridge's `unnormalizer.*` /
`normalized_input` parameters during bringup, rolls back (deactivates in reverse order) and
reports ERROR on /diagnostics with the reason. The same change while the pipeline is active
deactivates it; `~/bringup` is the recovery after review. `~/teardown` deactivates on request.
Both services answer success only when GetState confirms every managed node in the expected
state (active, resp. not active), otherwise success=False with the reason.

Parameter `policy_outputs_normalized` (default true) states whether the source emits normalized
policy outputs, as a VLA checkpoint with statistics does: then the bridge must run with
`normalized_input: true`. Set it false for outputs already in action units: recordings, or a
policy server that unnormalizes itself (openpi; OpenVLA REST with its `unnorm_key`), which the
gate then states as delegated and unverified.

The services and the parameter watch are coroutines like the manager's own work, so the
executor keeps serving every other callback (also other nodes on a shared single-threaded
executor) meanwhile. (rclpy resumes a waiting coroutine on every executor iteration, so the
executor polls while a bringup or teardown is in flight: a second or so of extra CPU, never a
stall.)
"""
from __future__ import annotations

import json

from diagnostic_msgs.msg import DiagnosticStatus
from lifecycle_msgs.msg import State, Transition
from rcl_interfaces.msg import ParameterEvent
from std_srvs.srv import Trigger

from .common import declare, Diagnostics, ERROR, OK, require_valid_parameters, run, status, WARN
from .lifecycle_manager import LifecycleManager, ManagerError
from .policy_bridge import loaded_parameter_names
from .. import names
from ..core.checkpoints import load_metadata
from ..core.errors import InputError
from ..core.execspec import check_loaded


class ExecSpecCheck(LifecycleManager):
    """Gatekeeper of the pipeline: the lifecycle manager that checks before it activates."""

    def __init__(self, name: str = names.EXECSPEC_CHECK, **kwargs):
        super().__init__(name, **kwargs)
        self.checkpoint = declare(self, 'checkpoint', '', 'checkpoint directory or metadata file')
        self.format = declare(self, 'format', 'auto',
                              'auto, openvla, openvla-oft, lerobot or yaml')
        self.unnorm_key = declare(self, 'unnorm_key', '', 'checkpoint statistics key (OpenVLA)')
        self.normalization_type = declare(self, 'normalization_type', '',
                                          'OpenVLA-OFT: BOUNDS or BOUNDS_Q99')
        self.outputs_normalized = declare(
            self, 'policy_outputs_normalized', True,
            'the source emits normalized policy outputs, so the bridge must unnormalize '
            '(normalized_input true); false for action units: recordings, or a server that '
            'unnormalizes itself (openpi; OpenVLA REST with unnorm_key)')
        self.bridge = declare(self, 'bridge_node', names.POLICY_BRIDGE,
                              'node carrying unnormalizer.*').strip('/')
        group = self.callback_group
        self._bridge_client = self.lifecycle_client(self.bridge)
        self._loaded_client = self.create_client(
            Trigger, names.service_of(self.bridge, names.LOADED_UNNORMALIZER),
            callback_group=group)
        self._bringing_up = self._bridge_loaded = False
        self.pipeline_active = False
        self.last_report: dict = {}
        self._status = (names.EXECSPEC_STATUS, WARN, 'waiting for the first check', {})
        self.create_subscription(ParameterEvent, names.PARAMETER_EVENTS,
                                 self._on_parameter_event, 100, callback_group=group)
        self.create_service(Trigger, names.BRINGUP, self._on_bringup, callback_group=group)
        self.create_service(Trigger, names.TEARDOWN, self._on_teardown, callback_group=group)
        self._diagnostics = Diagnostics(self, 1.0, self.diagnostic_status)

    # ---- bringup ---------------------------------------------------------------------------
    async def startup(self) -> tuple[bool, str]:
        """Run the checked bringup (what autostart does)."""
        return await self.bringup()

    async def bringup(self) -> tuple[bool, str]:
        """Configure, check what the bridge loaded, activate; roll back on a refusal or change."""
        self.abort_reason, self._bringing_up, self.last_report = None, True, {}
        self._bridge_loaded = False
        try:
            ok = await self._bringup_steps()
        except ManagerError as exc:
            await self._rollback()
            self._report(ERROR, f'bringup aborted, rolled back: {exc}',
                         {**self._verdict_values(), 'pipeline_active': False})
            ok = False
        finally:
            self._bringing_up = False
        return ok, self._status[2]

    async def _bringup_steps(self) -> bool:
        try:
            require_valid_parameters(self)
            if not self.checkpoint:
                raise InputError('parameter checkpoint is not set')
            reference = load_metadata(self.checkpoint, self.format, self.unnorm_key or None,
                                      self.normalization_type or None)
        except InputError as exc:
            self.last_report = {'verdict': 'cannot_check', 'reasons': [str(exc)]}
            await self._rollback()
            self._report(ERROR, f'cannot check: {exc}', self._verdict_values())
            return False
        await self._configure_all()
        loaded = await self._loaded_unnormalizer()
        result = check_loaded(reference, loaded, self.outputs_normalized)
        self.last_report = {**result.to_report(), 'generation': loaded.get('generation')}
        if result.verdict != 'identical':
            await self._rollback()
            first = result.reasons[0] if result.reasons else ''
            self._report(ERROR, f'refusing to activate: {result.verdict}: {first}',
                         self._verdict_values())
            return False
        await self._activate_all(loaded.get('generation'))
        self.pipeline_active = True
        verdict = 'metadata identical; pipeline active'
        if self.last_report.get('unnormalization') == 'server':
            verdict = ('bridge passes actions through as declared; unnormalization delegated to '
                       'the policy server, NOT verified here; pipeline active')
        self._report(OK, verdict, self._verdict_values())
        return True

    async def _configure_all(self) -> None:
        """Configure unconfigured nodes; reload an inactive bridge whose parameters changed."""
        await self.configure_all()
        loaded = await self._loaded_unnormalizer()
        bridge = self._bridge_client
        if loaded.get('pending_changes') and \
                await bridge.get_state(self.waiter) == State.PRIMARY_STATE_INACTIVE:
            changed = ', '.join(loaded['pending_changes'])
            self.get_logger().info(f'reconfiguring /{bridge.target}: {changed} changed since '
                                   'configure')
            await bridge.transition(self.waiter, Transition.TRANSITION_CLEANUP,
                                    State.PRIMARY_STATE_UNCONFIGURED)
            await bridge.transition(self.waiter, Transition.TRANSITION_CONFIGURE,
                                    State.PRIMARY_STATE_INACTIVE)
        self.check_abort()

    async def _activate_all(self, generation) -> None:
        """Activate in order; confirm all active and the checked configuration still loaded."""
        await self.activate_all()
        loaded = await self._loaded_unnormalizer()
        if loaded.get('generation') != generation or loaded.get('pending_changes'):
            raise ManagerError(f'/{self._bridge_client.target} was reconfigured or its '
                               'unnormalizer parameters changed during bringup')
        self.check_abort()

    async def _loaded_unnormalizer(self) -> dict:
        """Return what the bridge says its last configure loaded (JSON in a Trigger reply)."""
        answer = await self.waiter.call(self._loaded_client, Trigger.Request(),
                                        self.transition_timeout)
        try:
            report = json.loads(answer.message)
        except ValueError:
            raise ManagerError(f'{self._loaded_client.srv_name} answered no JSON report') from None
        if not isinstance(report, dict):
            raise ManagerError(f'{self._loaded_client.srv_name} answered no JSON object')
        self._bridge_loaded = self._bridge_loaded or bool(report.get('configured'))
        return report

    # ---- teardown --------------------------------------------------------------------------
    async def _rollback(self) -> list[str]:
        """Deactivate every active managed node in reverse order; the problems, if any."""
        self.pipeline_active = False
        return await self.deactivate_all()

    async def teardown(self, why: str) -> tuple[bool, str]:
        """Deactivate the pipeline; success only if GetState shows no managed node active."""
        problems = await self._rollback()
        problems += await self.still_active()
        message = why if not problems else f'{why}; teardown incomplete: {"; ".join(problems)}'
        self._report(ERROR, message, {'verdict': 'deactivated'})
        return not problems, message

    # ---- callbacks -------------------------------------------------------------------------
    async def _on_parameter_event(self, event: ParameterEvent) -> None:
        """
        Abort a bringup, or tear down, on a change of what the bridge unnormalizes with.

        `new_parameters` (a parameter without a value set) count once this bringup has seen the
        bridge configured; before, they may be the declarations of a bridge that is starting.
        """
        if event.node.strip('/') != self.bridge:
            return
        watched = set(loaded_parameter_names())
        new = event.new_parameters if self._bridge_loaded or not self._bringing_up else ()
        changed = [p.name for p in (*new, *event.changed_parameters, *event.deleted_parameters)
                   if p.name in watched]
        if not changed:
            return
        what = f'parameter(s) {", ".join(changed)} of /{self.bridge} changed'
        if self._bringing_up:
            self.abort_reason = f'{what} during bringup'
        elif self.pipeline_active:
            self.pipeline_active = False

            async def deactivate():
                return await self.teardown(f'{what} while active: pipeline deactivated; '
                                           'call ~/bringup after review')
            await self.exclusive(deactivate)

    async def _on_bringup(self, request, response):
        response.success, response.message = await self.exclusive(self.bringup)
        return response

    async def _on_teardown(self, request, response):
        if self._bringing_up:
            self.abort_reason = 'teardown requested'

        async def deactivate():
            return await self.teardown('pipeline deactivated on request')
        response.success, response.message = await self.exclusive(deactivate)
        return response

    # ---- diagnostics -----------------------------------------------------------------------
    def _verdict_values(self) -> dict:
        report = self.last_report
        values = {k: report.get(k) for k in ('verdict', 'mean_drift', 'max_drift', 'mode',
                                             'generation', 'unnormalization')}
        values['reasons'] = '; '.join(report.get('reasons') or [])
        values['notes'] = '; '.join(report.get('notes') or [])
        return values

    def _report(self, level: bytes, message: str, values: dict) -> None:
        if level == OK:
            self.get_logger().info(message)
        else:
            self.get_logger().error(message)
        self._status = (names.EXECSPEC_STATUS, level, message, values)
        self._diagnostics.publish()

    def diagnostic_status(self) -> DiagnosticStatus:
        """Return the execspec status (the one function both /diagnostics paths publish)."""
        name, level, message, values = self._status
        return status(name, level, message, self.get_name(),
                      {'checkpoint': self.checkpoint, 'pipeline_active': self.pipeline_active,
                       **values})


def main() -> None:
    run(ExecSpecCheck)
