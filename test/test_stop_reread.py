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
core.stop_reread: where publishers are not told apart, a `false` releases only after a re-read.

Each latched message is heard twice (latched and volatile subscription), a volatile one once; a
probe re-reads the last value of every latched publisher.
"""
import os

from hypothesis import given, settings, strategies as st
from vla_safety_filter.core.stop_reread import (LATCHED_PUBLISHERS, UnidentifiedStops,
                                                VOLATILE_PUBLISHERS)

EXAMPLES = int(os.environ.get('HYPOTHESIS_EXAMPLES', '400'))


def _latched(stops, value, message, volatile_copy_first=False):
    """Deliver a latched publisher's message on both subscriptions; return whether to probe."""
    order = (False, True) if volatile_copy_first else (True, False)
    return [stops.heard(value, message, latched) for latched in order]


def _probe(stops, values, writers=None, matched=None, volatile_live=True):
    """Run a probe that re-reads `values`; return its decision."""
    writers = len(values) if writers is None else writers
    stops.begin_probe(writers)
    for value in values:
        stops.sample(value)
    return stops.decide(writers if matched is None else matched, volatile_live)


def test_a_latched_false_does_not_release_a_volatile_true():
    """The operator's button (volatile) asserts; the monitor's latched false re-reads false."""
    for message in (('t1', 1), None):                    # with ids, and without (EventsExecutor)
        stops = UnidentifiedStops()
        assert stops.heard(True, message and ('t0', 1), latched=False) is False
        assert any(_latched(stops, False, message))      # asks for a probe
        decision = _probe(stops, [False])
        assert decision.asserted and stops.who == (VOLATILE_PUBLISHERS,)
        assert stops.heard(False, message and ('t2', 1), latched=False)   # the operator releases
        assert not _probe(stops, [False]).asserted and stops.who == ()


def test_a_volatile_copy_heard_before_its_latched_copy_is_no_volatile_release():
    stops = UnidentifiedStops()
    stops.heard(True, ('t0', 1), latched=False)
    _latched(stops, False, ('t1', 1), volatile_copy_first=True)
    assert _probe(stops, [False]).asserted


def test_one_latched_true_among_the_re_read_values_keeps_the_stop():
    stops = UnidentifiedStops()
    _latched(stops, True, ('a', 1))
    assert stops.who == (LATCHED_PUBLISHERS,)
    assert any(_latched(stops, False, ('b', 1)))
    decision = _probe(stops, [True, False])
    assert decision.asserted and stops.who == (LATCHED_PUBLISHERS,) and not decision.again


def test_a_missing_value_asserts_unless_the_probe_matched_every_latched_publisher():
    stops = UnidentifiedStops()
    _latched(stops, True, ('a', 1))
    _latched(stops, False, ('a', 2))
    decision = _probe(stops, [False], writers=2, matched=1)     # one not matched in time
    assert decision.asserted and decision.unknown and decision.missing == 1
    decision = _probe(stops, [False], writers=2, matched=2)     # matched: it published nothing
    assert not decision.asserted and not decision.unknown and decision.missing == 1


def test_a_true_heard_while_probing_keeps_the_stop_and_a_false_asks_again():
    stops = UnidentifiedStops()
    _latched(stops, True, ('a', 1))
    _latched(stops, False, ('a', 2))
    stops.begin_probe(1)
    assert _latched(stops, True, ('a', 3)) == [False, False]    # no second probe meanwhile
    assert _latched(stops, False, ('a', 4)) == [False, False]
    stops.sample(False)                                         # the reader's older value
    decision = stops.decide(1, volatile_live=False)
    assert decision.asserted and decision.again
    assert not _probe(stops, [False]).asserted


def test_a_false_while_nothing_asserts_needs_no_probe():
    stops = UnidentifiedStops()
    assert _latched(stops, False, ('a', 1)) == [False, False]
    assert stops.heard(False, None, latched=False) is False and not stops.asserted


def test_the_volatile_source_counts_only_while_a_volatile_publisher_lives():
    stops = UnidentifiedStops()
    stops.heard(True, ('v', 1), latched=False)
    assert _probe(stops, [], volatile_live=True).asserted
    assert not _probe(stops, [], volatile_live=False).asserted


# ---- any interleaving ------------------------------------------------------------------------
PUBLISHERS = ('L1', 'L2', 'V1', 'V2')                    # L: latched, V: volatile
MESSAGES = st.tuples(st.sampled_from(PUBLISHERS), st.booleans(), st.booleans())


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.one_of(MESSAGES, st.just('probe')), max_size=30), st.booleans())
def test_never_released_while_a_publisher_asserts_and_released_once_all_are_false(ops, ids):
    """
    Any messages of two latched and two volatile publishers, probes in between.

    Safety, always: a publisher whose last value is true keeps the stop asserted (the volatile
    ones: the last of their values). After a quiet probe: asserted iff one of them is true.
    """
    stops = UnidentifiedStops()
    last, volatile_last, stamp = {}, False, 0
    for op in ops + ['probe']:
        if op == 'probe':
            latched = [last[p] for p in ('L1', 'L2') if p in last]
            stops.begin_probe(len(latched))
            for value in latched:
                stops.sample(value)
            stops.decide(len(latched), volatile_live=True)
        else:
            publisher, value, volatile_copy_first = op
            stamp += 1
            message = (stamp, 1) if ids else None
            if publisher.startswith('L'):
                last[publisher] = value
                _latched(stops, value, message, volatile_copy_first)
            else:
                volatile_last = value
                stops.heard(value, message, latched=False)
        expected = any(last.values()) or volatile_last
        assert stops.asserted or not expected
    assert stops.asserted == expected
