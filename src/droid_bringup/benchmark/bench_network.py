"""What the droid needs from the network between its body and its mind (prints JSON).

    sudo python3 src/droid_bringup/benchmark/bench_network.py [--turns 5] [--delay-ms 5]
                                                              [--loss-pct 1] [--skip-link-down]

Real ROS 2, the mock droid, injected speech (espeak-ng through the mock microphone, so the
audio really travels). Three parts:

1. ``topics``: the whole droid on one host (role:=all, loopback): payload bytes per topic
   (serialized CDR, from raw subscriptions) while idle and during conversation turns, and
   the rate while a topic is active. This is the bandwidth each topic would need if its
   publisher and subscriber were on different hosts.
2. ``split``: body (role:=body) and mind (role:=mind) on two hosts of a network-namespace
   lab whose link delays every frame by ``--delay-ms`` and loses ``--loss-pct`` % (tc
   netem when the kernel has it, else the lab's userspace hub). Measured: the one-way
   latency of a reliable message across the link vs. inside one host (ping/echo probes,
   100 B and 3 kB), the same turns on the split droid vs. the droid on one host (the
   stages of latency_report), and the bytes on the body's interface (DDS headers,
   acknowledgements and discovery included) idle and per turn.
3. ``link_down``: the link is cut for 10 s: how soon the body warns on /diagnostics, how
   soon after the link returns the mind is reachable again, and how long until the next
   utterance is answered (first audio).

Needs root for the network namespaces (part 1 runs without).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

from droid_bringup import netns
from droid_bringup.latency import LatencyTracker, Trace, breakdown, percentile
from droid_bringup.probing import ProbeClient, ros_host_env
from droid_common.testing import Process, ros_test_env

TEXTS = ['hey jarvis, hello', 'hey jarvis, make your eyes blue',
         'hey jarvis, tell me about yourself', 'hey jarvis, what time is it',
         'hey jarvis, play the cantina song and make your eyes red']
# The turn timed on one host and on two: a tool call whose eye command crosses the link.
LATENCY_TEXT = 'hey jarvis, make your eyes blue'
LAUNCH = ['ros2', 'launch', 'droid_bringup', 'droid.launch.py', 'profile:=mock',
          'log_level:=warn']
PROBE = ['ros2', 'run', 'droid_bringup', 'probe']


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sec(stamp: dict) -> float:
    return stamp['sec'] + stamp['nanosec'] * 1e-9


def wait_reachable(watch, timeout=120.0, since=0.0):
    return watch.wait_for(lambda e: e.get('topic') == '/diagnostics'
                          and 'mind_monitor' in e['name'] and e['level'] == 0
                          and 'reachable' in e['message'], timeout, since=since)


def run_turn(watch, text: str, ns: str = '-', timeout: float = 60.0, settle: float = 7.0):
    """Inject ``text``; wait until its reply has been spoken, then ``settle`` s (the mock
    profile's follow-up window: a new wake inside it would be a follow-up). Returns
    (t0, t_end, cid)."""
    t0 = watch.send(f'inject {ns} {text}')
    heard = watch.wait_for(lambda e: e.get('topic') == 'speech/transcription'
                           and e.get('is_final'), timeout, since=t0)
    if heard is None:
        return t0, None, None
    cid = heard['conversation_id']
    done = watch.wait_for(lambda e: e.get('topic') == 'voice/speech_event'
                          and e.get('conversation_id') == cid and e.get('last_in_reply')
                          and e.get('event') in (1, 2), timeout, since=t0)
    time.sleep(settle)
    return t0, (done['t'] if done else None), cid


def turn_breakdowns(watch, cids) -> list:
    tracker = LatencyTracker()
    for e in watch.select(lambda e: e.get('topic') == 'trace'):
        tracker.add(Trace(e['stage'], sec(e['header']['stamp']), e['conversation_id'],
                          e['utterance_id'], sec(e['input_stamp']), e['node'], e['detail']))
    out = []
    for t in tracker.turns.values():
        if t.conversation_id not in cids:
            continue
        out.append(breakdown(t))
    return out


# Topics the mind publishes (stamped when published) and the body's probe receives.
MIND_TO_BODY = ('brain/reply', 'brain/sentiment', 'speech/transcription', 'eyes/command')


def transport_ms(watch, since: float) -> dict:
    """Arrival (ROS time) minus header stamp per topic: p50/p95 [ms] (the lab's hosts
    share one clock)."""
    out = {}
    for name in MIND_TO_BODY:
        xs = [(e['rx'] - sec(e['header']['stamp'])) * 1000.0
              for e in watch.select(lambda e: e.get('topic') == name and 'rx' in e, since=since)]
        if xs:
            out[name] = {'n': len(xs), 'p50': round(percentile(xs, 50), 2),
                         'p95': round(percentile(xs, 95), 2)}
    return out


def stage_p50(breakdowns) -> dict:
    stages = {}
    for b in breakdowns:
        for label, ms in b['ms'].items():
            stages.setdefault(label, []).append(ms)
    return {k: round(statistics.median(v), 1) for k, v in sorted(stages.items())}


# ---- 1. bandwidth per topic -----------------------------------------------------------------

def bench_topics(turns: int, idle_s: float) -> dict:
    env = ros_test_env(ROS_DOMAIN_ID=random.randint(100, 200))
    with Process(LAUNCH, env=env) as launch, \
            ProbeClient(PROBE + ['--bytes'], env=env) as probe:
        if not probe.wait_for(lambda e: e.get('topic') == 'mode', 120):
            raise RuntimeError('the droid did not start:\n' + launch.output()[-3000:])
        time.sleep(5.0)                      # let startup traffic settle
        t = probe.send('stats')
        s0 = probe.wait_for(lambda e: e.get('event') == 'stats', 10, since=t)
        time.sleep(idle_s)
        t = probe.send('stats')
        s1 = probe.wait_for(lambda e: e.get('event') == 'stats', 10, since=t)
        idle_window = s1['t'] - s0['t']
        failed = 0
        t_start = probe.send('stats')
        s2 = probe.wait_for(lambda e: e.get('event') == 'stats', 10, since=t_start)
        for i in range(turns):
            t0, t_end, cid = run_turn(probe, TEXTS[i % len(TEXTS)])
            if t_end is None:
                failed += 1
        t = probe.send('stats')
        s3 = probe.wait_for(lambda e: e.get('event') == 'stats', 10, since=t)
        window = s3['t'] - s2['t']
    out = {'idle_window_s': round(idle_window, 1), 'turns': turns, 'failed_turns': failed,
           'turns_window_s': round(window, 1),
           'note': 'payload (serialized CDR) bytes; peak_bytes_per_s = busiest 1 s window '
                   'during the turns', 'topics': {}}
    names = sorted(set(s1['stats']) | set(s3['stats']))
    for name in names:
        zero = {'msgs': 0, 'bytes': 0}
        a = s0['stats'].get(name, zero)
        b = s1['stats'].get(name, a)
        c = s2['stats'].get(name, b)
        d = s3['stats'].get(name, c)
        idle_bps = (b['bytes'] - a['bytes']) / idle_window
        turn_bytes = d['bytes'] - c['bytes']
        turn_msgs = d['msgs'] - c['msgs']
        out['topics'][name] = {
            'idle_bytes_per_s': round(idle_bps),
            'bytes_per_turn': round(turn_bytes / max(1, turns - failed)),
            'msgs_per_turn': round(turn_msgs / max(1, turns - failed), 1),
            'bytes_per_msg': round(turn_bytes / turn_msgs) if turn_msgs else None,
            'peak_bytes_per_s': d.get('peak_bytes_per_s', 0),
        }
    return out


# ---- 2. body and mind on two hosts ------------------------------------------------------------

def ping(watch, count=200, size=100, period=0.02):
    t = watch.send(f'ping - {count} {size} {period} 30')
    e = watch.wait_for(lambda e: e.get('event') == 'ping', count * period + 60, since=t)
    if not e or not e['rtt_s']:
        return {'error': 'no answer', 'raw': e}
    one_way = [r / 2 * 1000.0 for r in e['rtt_s']]
    return {'bytes': size, 'n': len(one_way), 'lost_after_retries': e['lost'],
            'one_way_ms_p50': round(percentile(one_way, 50), 2),
            'one_way_ms_p95': round(percentile(one_way, 95), 2),
            'one_way_ms_p99': round(percentile(one_way, 99), 2)}


def run_turns(watch, turns, text=LATENCY_TEXT):
    cids, failed = [], 0
    for _ in range(turns):
        t0, t_end, cid = run_turn(watch, text)
        if t_end is None:
            failed += 1
        else:
            cids.append(cid)
    return cids, failed


def bench_split(turns: int, delay_ms: float, loss_pct: float, link_down: bool,
                idle_s: float) -> dict:
    backend = 'bridge' if netem_ok else 'hub'
    result = {'impairment': {'delay_ms_per_hop': delay_ms, 'loss_pct': loss_pct,
                             'how': 'tc netem' if netem_ok else 'userspace hub (no netem '
                             'in this kernel)'}}
    dom = random.randint(1, 99)
    home = tempfile.mkdtemp(prefix='droid-bench-')
    with netns.Lab('bench', backend=backend) as lab:
        body, mind, solo = lab.add_host('body'), lab.add_host('mind'), lab.add_host('solo')
        lab.start()
        lab.impair(delay_ms=delay_ms, loss_pct=loss_pct)
        benv = ros_host_env(dom, config_home=os.path.join(home, 'b'))
        menv = ros_host_env(dom, config_home=os.path.join(home, 'm'))
        senv = ros_host_env(dom + 100, config_home=os.path.join(home, 's'))

        # per-hop latency of a reliable message: across the link vs. inside one host
        hops = {}
        with ProbeClient(lab.exec_args(mind, PROBE + ['--echo']), env=menv), \
                ProbeClient(lab.exec_args(body, PROBE), env=benv) as pinger:
            hops['across_100B'] = ping(pinger, size=100)
            hops['across_3kB'] = ping(pinger, size=3000)
        with ProbeClient(lab.exec_args(body, PROBE + ['--echo']), env=benv), \
                ProbeClient(lab.exec_args(body, PROBE), env=benv) as pinger:
            hops['same_host_100B'] = ping(pinger, size=100)
            hops['same_host_3kB'] = ping(pinger, size=3000)
        for size in ('100B', '3kB'):
            a, s = hops.get(f'across_{size}', {}), hops.get(f'same_host_{size}', {})
            if 'one_way_ms_p50' in a and 'one_way_ms_p50' in s:
                hops[f'added_one_way_ms_p50_{size}'] = round(a['one_way_ms_p50']
                                                            - s['one_way_ms_p50'], 2)
        result['hop'] = hops

        # the same turns on the droid on one host (in the lab, no impairment inside a host)
        with Process(lab.exec_args(solo, LAUNCH), env=senv) as launch, \
                ProbeClient(lab.exec_args(solo, PROBE), env=senv) as watch:
            if not watch.wait_for(lambda e: e.get('topic') == 'mode', 120):
                raise RuntimeError('solo droid did not start:\n' + launch.output()[-3000:])
            time.sleep(3.0)
            run_turn(watch, TEXTS[0])          # warm-up
            t_turns = time.monotonic()
            cids, failed = run_turns(watch, turns)
            solo_stats = stage_p50(turn_breakdowns(watch, cids))
            solo_transport = transport_ms(watch, t_turns)
            result['one_host'] = {'turns': turns, 'failed_turns': failed,
                                  'stage_p50_ms': solo_stats,
                                  'transport_ms': solo_transport}

        with Process(lab.exec_args(mind, LAUNCH + ['role:=mind']), env=menv) as ml, \
                Process(lab.exec_args(body, LAUNCH + ['role:=body']), env=benv) as bl:
            # idle traffic first, with no probe subscribed to anything across the link
            with ProbeClient(lab.exec_args(body, PROBE + ['--diagnostics']), env=benv) as w:
                if not wait_reachable(w):
                    raise RuntimeError('split droid did not start:\n' + bl.output()[-2000:]
                                       + ml.output()[-2000:])
            time.sleep(5.0)
            c0 = lab.counters(body)
            time.sleep(idle_s)
            c1 = lab.counters(body)
            with ProbeClient(lab.exec_args(body, PROBE + ['--diagnostics']), env=benv) as watch:
                if not wait_reachable(watch):
                    raise RuntimeError('the probe did not see the droid again')
                time.sleep(3.0)
                run_turn(watch, TEXTS[0])          # warm-up
                c2 = lab.counters(body)
                t_turns = time.monotonic()
                cids, failed = run_turns(watch, turns)
                c3 = lab.counters(body)
                split_stats = stage_p50(turn_breakdowns(watch, cids))
                split_transport = transport_ms(watch, t_turns)
                wire = lambda a, b: (b['rx_bytes'] - a['rx_bytes']) + (b['tx_bytes'] - a['tx_bytes'])  # noqa: E731
                ok = max(1, turns - failed)
                result['two_hosts'] = {
                    'turns': turns, 'failed_turns': failed, 'stage_p50_ms': split_stats,
                    'transport_ms': split_transport,
                    'body_link_idle_bytes_per_s': round(wire(c0, c1) / idle_s),
                    'body_link_idle_packets_per_s': round(
                        (c1['rx_packets'] - c0['rx_packets'] + c1['tx_packets']
                         - c0['tx_packets']) / idle_s),
                    'body_link_bytes_per_turn': round(wire(c2, c3) / ok),
                    'body_link_tx_bytes_per_turn': round((c3['tx_bytes'] - c2['tx_bytes']) / ok),
                    'body_link_rx_bytes_per_turn': round((c3['rx_bytes'] - c2['rx_bytes']) / ok),
                    'note': 'wire bytes on the body interface (IP + UDP + RTPS, both ways); '
                            'per turn includes the probe watching the conversation topics',
                }
                result['added_by_the_split_ms_p50'] = {
                    k: round(split_stats[k] - solo_stats[k], 1)
                    for k in split_stats if k in solo_stats}
                result['added_per_hop_ms_p50'] = {
                    k: round(v['p50'] - solo_transport[k]['p50'], 2)
                    for k, v in split_transport.items() if k in solo_transport}
                if link_down:
                    result['link_down'] = bench_link_down(lab, body, watch)
    return result


def bench_link_down(lab, body, watch, down_s: float = 10.0) -> dict:
    t_down = time.monotonic()
    lab.set_link(body, up=False)
    warned = watch.wait_for(lambda e: e.get('topic') == '/diagnostics'
                            and 'mind_monitor' in e['name'] and e['level'] == 1, 30,
                            since=t_down)
    time.sleep(max(0.0, down_s - (time.monotonic() - t_down)))
    t_up = time.monotonic()
    lab.set_link(body, up=True)
    back = wait_reachable(watch, 120, since=t_up)
    t0, t_end, cid = run_turn(watch, 'hey jarvis, hello')
    first_audio = watch.wait_for(lambda e: e.get('topic') == 'trace' and e['stage'] == 11
                                 and e['conversation_id'] == cid, 5, since=t0) if cid else None
    return {
        'down_s': down_s,
        'warn_after_s': round(warned['t'] - t_down, 2) if warned else None,
        'reachable_after_link_up_s': round(back['t'] - t_up, 2) if back else None,
        'next_turn_answered': t_end is not None,
        'next_utterance_to_first_audio_s': round(first_audio['t'] - t0, 2) if first_audio
        else None,
    }


def main() -> int:
    global netem_ok
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--turns', type=int, default=5)
    ap.add_argument('--idle-s', type=float, default=10.0)
    ap.add_argument('--delay-ms', type=float, default=5.0)
    ap.add_argument('--loss-pct', type=float, default=1.0)
    ap.add_argument('--skip-link-down', action='store_true')
    ap.add_argument('--only', choices=('topics', 'split'))
    args = ap.parse_args()
    out = {'benchmark': 'droid_bringup network: bandwidth per topic, body/mind split, '
                        'link down', 'rmw': os.environ.get('RMW_IMPLEMENTATION', '(default)')}
    if args.only in (None, 'topics'):
        log('== bandwidth per topic (one host)')
        out['topics'] = bench_topics(args.turns, args.idle_s)
    if args.only in (None, 'split'):
        ok, why = netns.available()
        if not ok:
            out['split'] = {'skipped': why}
        else:
            netem_ok = netns.netem_available()
            log('== body and mind on two hosts')
            out['split'] = bench_split(args.turns, args.delay_ms, args.loss_pct,
                                       not args.skip_link_down, args.idle_s)
    print(json.dumps(out, indent=2))
    return 0


netem_ok = False

if __name__ == '__main__':
    sys.exit(main())
