"""The droid split across hosts, on real ROS 2, across network namespaces made here.

Each "host" is a network namespace on a private bridge (droid_bringup.netns); DDS runs
as on a real network (ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET, no loopback pinning) and its
traffic never leaves the lab. The body (role:=body) runs in one host, the mind
(role:=mind) in another:

* with multicast discovery: a spoken (injected) request on the body is transcribed and
  answered by the mind, and spoken with eye changes on the body; then the link is cut
  for 10 s: the body warns on /diagnostics, shows the "no brain" look, says its persona's
  fallback line when spoken to, and answers again once the link is back, with no restart;
* without multicast (the interfaces have none): ROS_STATIC_PEERS alone joins the hosts;
* a fleet: one mind host serves two bodies (namespaces r3x and tars); nothing of one
  droid's turn (reply, tool call, eye command, speech, persona) reaches the other.

Skipped, with the reason, only where network namespaces cannot be created (not root).
"""

import os
import random
import time

import pytest
import yaml

pytest.importorskip('rclpy')

from droid_bringup import netns  # noqa: E402
from droid_bringup.probing import ProbeClient, ros_host_env  # noqa: E402
from droid_common.testing import Process  # noqa: E402

OK, WHY = netns.available()
pytestmark = pytest.mark.skipif(not OK, reason=f'network namespaces unavailable: {WHY}')

BRINGUP = 90.0          # generous: a 2-core CI machine shared with other test runs
TURN = 60.0


def settle():
    """Let the listener's follow-up window after the last reply close: an injected
    utterance inside it would be taken as a follow-up of the old conversation."""
    from ament_index_python.packages import get_package_share_directory
    path = os.path.join(get_package_share_directory('droid_bringup'), 'config', 'mock.yaml')
    follow_up = yaml.safe_load(open(path))['listener']['ros__parameters']['follow_up_s']
    time.sleep(follow_up + 1.0)


def rex_fallback_line() -> str:
    from ament_index_python.packages import get_package_share_directory
    path = os.path.join(get_package_share_directory('droid_brain'), 'personas', 'rex.yaml')
    return yaml.safe_load(open(path))['fallback_line']


def launch(lab, host, env, *args):
    return Process(lab.exec_args(host, ['ros2', 'launch', 'droid_bringup', 'droid.launch.py',
                                        'profile:=mock', *args]), env=env)


def probe(lab, host, env, *args):
    return ProbeClient(lab.exec_args(host, ['ros2', 'run', 'droid_bringup', 'probe', *args]),
                       env=env)


def diag(name_part, level=None, text=None):
    def pred(e):
        return (e.get('topic') == '/diagnostics' and name_part in e['name']
                and (level is None or e['level'] == level)
                and (text is None or text in e['message']))
    return pred


def listening(ns=''):
    """The body's listener is ready for speech (its worker reports 'listening')."""
    return diag(f"{ns.strip('/') + '/' if ns.strip('/') else ''}listener: worker", 0,
                'listening')


def topic(ns, name, **fields):
    def pred(e):
        return (e.get('ns') == ns and e.get('topic') == name
                and all(e.get(k) == v for k, v in fields.items()))
    return pred


def context(*procs) -> str:
    out = []
    for p in procs:
        if isinstance(p, ProbeClient):
            out.append('--- probe stderr\n' + p.stderr()[-3000:])
        else:
            out.append(f'--- {p.args[4:]}\n' + p.output()[-5000:])
    return '\n'.join(out)


def domain() -> int:
    return random.randint(1, 200)


# ---- body and mind on two hosts, multicast discovery; then the link goes down ---------------

@pytest.fixture(scope='module')
def split(tmp_path_factory):
    with netns.Lab('split') as lab:
        body, mind = lab.add_host('body'), lab.add_host('mind')
        lab.start()
        dom = domain()
        benv = ros_host_env(dom, config_home=tmp_path_factory.mktemp('body'))
        menv = ros_host_env(dom, config_home=tmp_path_factory.mktemp('mind'))
        with launch(lab, mind, menv, 'role:=mind') as mind_launch, \
                launch(lab, body, benv, 'role:=body') as body_launch, \
                probe(lab, body, benv, '--diagnostics') as watch:
            up = watch.wait_for(diag('mind_monitor', 0, 'mind reachable'), BRINGUP)
            assert up, 'the body never reached its mind\n' + context(body_launch, mind_launch,
                                                                      watch)
            assert watch.wait_for(listening(), BRINGUP), context(body_launch, mind_launch, watch)
            yield lab, body, mind, body_launch, mind_launch, watch


def test_the_launches_start_only_their_side(split):
    _, _, _, body_launch, mind_launch, _ = split
    assert body_launch.wait_for("role 'body'", 10) and mind_launch.wait_for("role 'mind'", 10)
    body_line = next(line for line in body_launch.output().splitlines() if "role 'body'" in line)
    mind_line = next(line for line in mind_launch.output().splitlines() if "role 'mind'" in line)
    for name in ('microphone=', 'listener=', 'tts=', 'music=', 'eyes=', 'mode_manager=',
                 'mind_monitor='):
        assert name in body_line and name not in mind_line, name
    for name in ('stt=', 'brain=', 'tool_executor='):
        assert name in mind_line and name not in body_line, name


def test_a_spoken_request_on_the_body_is_answered_by_the_mind(split):
    _, _, _, body_launch, mind_launch, watch = split
    t0 = watch.send('inject - hey jarvis, play the cantina song and make your eyes red')
    ctx = lambda: context(body_launch, mind_launch, watch)  # noqa: E731
    heard = watch.wait_for(lambda e: topic('', 'speech/transcription', is_final=True)(e)
                           and 'cantina' in e['text'], TURN, since=t0)
    assert heard, 'the mind never transcribed the body\'s utterance\n' + ctx()
    cid = heard['conversation_id']
    spoken = watch.wait_for(lambda e: topic('', 'voice/speech_event', conversation_id=cid)(e)
                            and 'cantina' in e.get('text', '').lower(), TURN, since=t0)
    assert spoken, 'the reply was not spoken on the body\n' + ctx()
    red = watch.wait_for(lambda e: topic('', 'eyes/state')(e) and e['color']['r'] > 0.9
                         and e['color']['g'] < 0.2, TURN, since=t0)
    assert red, 'the eyes did not turn red (set_eyes from the mind\'s tool executor)\n' + ctx()
    assert watch.wait_for(topic('', 'trace', conversation_id=cid), 5, since=t0)
    # the whole reply is spoken (the next test starts from a quiet droid)
    assert watch.wait_for(lambda e: topic('', 'voice/speech_event', conversation_id=cid)(e)
                          and e['last_in_reply'] and e['event'] in (1, 2), TURN, since=t0), ctx()


def test_link_down_for_10_s_the_body_stays_expressive_and_answers_again(split):
    lab, body, _, body_launch, mind_launch, watch = split
    ctx = lambda: context(body_launch, mind_launch, watch)  # noqa: E731
    settle()
    # A turn that works before the cut.
    t = watch.send('inject - hey jarvis, hello')
    assert watch.wait_for(topic('', 'brain/reply'), TURN, since=t), ctx()
    assert watch.wait_for(lambda e: topic('', 'voice/speech_event')(e) and e['event'] == 1
                          and e['last_in_reply'], TURN, since=t), ctx()   # the droid is quiet
    settle()

    t_down = time.monotonic()
    lab.set_link(body, up=False)
    try:
        warned = watch.wait_for(diag('mind_monitor', 1, 'unreachable'), 15, since=t_down)
        assert warned, 'no /diagnostics warning while the mind was unreachable\n' + ctx()
        warn_s = warned['t'] - t_down
        look = watch.wait_for(lambda e: topic('', 'eyes/state')(e) and e['source'] == 4,
                              5, since=t_down)
        assert look and look['pattern'] == 4, 'the eyes did not show the no-brain look'
        # The user talks meanwhile: the body says the persona's fallback line itself.
        t_talk = watch.send('inject - hey jarvis, are you there')
        line = watch.wait_for(lambda e: topic('', 'voice/speech_event')(e)
                              and e.get('text') and e['text'] in rex_fallback_line(), TURN,
                              since=t_talk)
        assert line, 'no local fallback line while the mind was away\n' + ctx()
        time.sleep(max(0.0, 10.0 - (time.monotonic() - t_down)))
    finally:
        t_up = time.monotonic()
        lab.set_link(body, up=True)
    back = watch.wait_for(diag('mind_monitor', 0, 'mind reachable'), 60, since=t_up)
    assert back, 'the body never saw its mind again\n' + ctx()
    recover_s = back['t'] - t_up
    cleared = watch.wait_for(lambda e: topic('', 'eyes/state')(e) and e['source'] != 4,
                             10, since=t_up)
    assert cleared, 'the no-brain look stayed after the mind came back'

    settle()
    t_next = watch.send('inject - hey jarvis, tell me about yourself')
    heard = watch.wait_for(lambda e: topic('', 'speech/transcription', is_final=True)(e)
                           and 'yourself' in e['text'], TURN, since=t_next)
    assert heard, 'the next utterance after the link came back was not heard\n' + ctx()
    answered = watch.wait_for(lambda e: topic('', 'voice/speech_event',
                                              conversation_id=heard['conversation_id'])(e)
                              and 'endor' in e.get('text', '').lower(), TURN, since=t_next)
    assert answered, 'the next utterance after the link came back was not answered\n' + ctx()
    # No node restarted or died.
    for proc in (body_launch, mind_launch):
        assert proc.proc.poll() is None
        assert 'process has died' not in proc.output(), proc.output()[-3000:]
    print(f'\nlink down 10 s: /diagnostics WARN after {warn_s:.2f} s; mind reachable again '
          f'{recover_s:.2f} s after the link returned')


# ---- no multicast: static peers only ---------------------------------------------------------

def _ping(lab, a, b, env_a, env_b, wait=8.0):
    with probe(lab, b, env_b, '--echo'), probe(lab, a, env_a) as pinger:
        t = pinger.send(f'ping - 5 100 0.05 {wait}')
        return pinger.wait_for(lambda e: e.get('event') == 'ping', wait + 30, since=t)


def test_without_multicast_static_peers_join_the_hosts(tmp_path):
    with netns.Lab('peers', multicast=False) as lab:
        body, mind = lab.add_host('body'), lab.add_host('mind')
        lab.start()
        dom = domain()
        env = lambda rng, peers: ros_host_env(dom, rng, peers)  # noqa: E731
        # Control: with no multicast and no peers, nothing is discovered.
        alone = _ping(lab, body, mind, env('SUBNET', []), env('SUBNET', []))
        assert alone and not alone['matched'] and alone['lost'] == 5, alone
        # Cyclone DDS ignores static peers when discovery is OFF (rmw_cyclonedds warns).
        off = _ping(lab, body, mind, env('OFF', [mind.address]), env('OFF', [body.address]))
        assert off and not off['matched'], off
        # SUBNET + the other host only: across the link yes, but two processes on the
        # same host no longer find each other (no multicast, and localhost is no peer).
        across = _ping(lab, body, mind, env('SUBNET', [mind.address]),
                       env('SUBNET', [body.address]), wait=30)
        assert across and across['matched'] and across['lost'] == 0, across
        same = _ping(lab, body, body, env('SUBNET', [mind.address]),
                     env('SUBNET', [mind.address]))
        assert same and not same['matched'], same
        # ... unless localhost is a peer too.
        same = _ping(lab, body, body, env('SUBNET', ['localhost', mind.address]),
                     env('SUBNET', ['localhost', mind.address]), wait=30)
        assert same and same['matched'] and same['lost'] == 0, same

        # The whole droid with the README's recipe for networks without multicast:
        # LOCALHOST (multicast off, this host's processes) + the other host as a peer.
        benv = ros_host_env(dom, 'LOCALHOST', [mind.address], config_home=tmp_path / 'b')
        menv = ros_host_env(dom, 'LOCALHOST', [body.address], config_home=tmp_path / 'm')
        with launch(lab, mind, menv, 'role:=mind') as mind_launch, \
                launch(lab, body, benv, 'role:=body') as body_launch, \
                probe(lab, body, benv, '--diagnostics') as watch:
            ctx = lambda: context(body_launch, mind_launch, watch)  # noqa: E731
            assert watch.wait_for(diag('mind_monitor', 0, 'mind reachable'), BRINGUP), ctx()
            assert watch.wait_for(listening(), BRINGUP), ctx()
            t = watch.send('inject - hey jarvis, make your eyes blue')
            heard = watch.wait_for(lambda e: topic('', 'speech/transcription', is_final=True)(e)
                                   and 'blue' in e['text'], TURN, since=t)
            assert heard, ctx()
            spoken = watch.wait_for(lambda e: topic('', 'voice/speech_event')(e)
                                    and 'blue' in e.get('text', ''), TURN, since=t)
            assert spoken, ctx()
            blue = watch.wait_for(lambda e: topic('', 'eyes/state')(e) and e['color']['b'] > 0.9
                                  and e['color']['r'] < 0.2, TURN, since=t)
            assert blue, ctx()


# ---- a fleet: one mind host, two bodies ------------------------------------------------------

CONVERSATION = ('audio/utterance', 'speech/transcription', 'brain/reply', 'brain/sentiment',
                'voice/speech_event', 'eyes/command', 'trace')


def test_one_mind_host_serves_two_droids_and_nothing_crosses_over(tmp_path):
    with netns.Lab('fleet') as lab:
        mind, r3x, tars = lab.add_host('mind'), lab.add_host('r3x'), lab.add_host('tars')
        lab.start()
        dom = domain()
        home = tmp_path / 'mind_home'
        menv = ros_host_env(dom, config_home=home)
        renv = ros_host_env(dom, config_home=tmp_path / 'r3x_home')
        tenv = ros_host_env(dom, config_home=tmp_path / 'tars_home')
        with launch(lab, mind, menv, 'role:=mind', 'namespace:=r3x') as m1, \
                launch(lab, mind, menv, 'role:=mind', 'namespace:=tars') as m2, \
                launch(lab, r3x, renv, 'role:=body', 'namespace:=r3x') as b1, \
                launch(lab, tars, tenv, 'role:=body', 'namespace:=tars') as b2, \
                probe(lab, r3x, renv, '--ns', 'r3x', '--ns', 'tars', '--diagnostics') as watch:
            ctx = lambda: context(m1, m2, b1, b2, watch)  # noqa: E731
            for ns in ('r3x', 'tars'):
                assert watch.wait_for(diag(f'{ns}/mind_monitor', 0, 'mind reachable'),
                                      BRINGUP), ctx()
                assert watch.wait_for(listening(ns), BRINGUP), ctx()

            # 1. r3x is asked for green eyes (a tool call): only r3x reacts.
            t1 = watch.send('say r3x make your eyes green')
            said = watch.wait_for(lambda e: e.get('event') == 'say', 10, since=t1)
            cid = said['conversation_id']
            goal = watch.wait_for(lambda e: topic('/r3x', 'trace', conversation_id=cid)(e)
                                  and 'set_eyes' in e['detail'], TURN, since=t1)
            assert goal, 'no set_eyes tool call for r3x\n' + ctx()
            assert watch.wait_for(topic('/r3x', 'eyes/command', conversation_id=cid), TURN,
                                  since=t1), ctx()
            green = watch.wait_for(lambda e: topic('/r3x', 'eyes/state')(e)
                                   and e['color']['g'] > 0.9 and e['color']['r'] < 0.2,
                                   TURN, since=t1)
            assert green, ctx()
            done = watch.wait_for(lambda e: topic('/r3x', 'voice/speech_event', conversation_id=cid)(e)
                                  and e['last_in_reply'] and e['event'] == 1, TURN, since=t1)
            assert done, 'r3x did not finish speaking its reply\n' + ctx()
            time.sleep(3.0)       # anything that would leak has had time to arrive
            t_end = time.monotonic()
            leaked = watch.select(lambda e: e.get('ns') == '/tars'
                                  and (e['topic'] in CONVERSATION or e['topic'] == 'eyes/state'),
                                  since=t1, until=t_end)
            assert leaked == [], f'r3x\'s turn reached tars: {leaked[:5]}'

            # 2. tars becomes chopper (a persona switch): r3x keeps rex, state files apart.
            t2 = watch.send('say tars become chopper')
            persona = watch.wait_for(lambda e: topic('/tars', 'brain/persona')(e)
                                     and e['name'] == 'chopper', TURN, since=t2)
            assert persona, 'tars did not switch persona\n' + ctx()
            spoken = watch.wait_for(lambda e: topic('/tars', 'voice/speech_event')(e)
                                    and e['last_in_reply'] and e['event'] == 1, TURN, since=t2)
            assert spoken, ctx()
            time.sleep(3.0)
            crossed = watch.select(lambda e: e.get('ns') == '/r3x'
                                   and (e['topic'] in CONVERSATION
                                        or e['topic'] in ('eyes/state', 'brain/persona')),
                                   since=t2, until=time.monotonic())
            assert crossed == [], f'tars\'s turn reached r3x: {crossed[:5]}'
            state = yaml.safe_load((home / 'droid' / 'tars' / 'brain_state.yaml').read_text())
            assert state['active_persona'] == 'chopper'
            assert not (home / 'droid' / 'r3x' / 'brain_state.yaml').exists()
            assert not (home / 'droid' / 'brain_state.yaml').exists()

            # 3. A spoken request on r3x: heard, answered and spoken by r3x only, in rex's
            #    persona; tars (now chopper) hears nothing of it.
            settle()
            t3 = watch.send('inject r3x hey jarvis, hello')
            reply = watch.wait_for(lambda e: topic('/r3x', 'brain/reply')(e) and e['text'],
                                   TURN, since=t3)
            assert reply and reply['persona'] == 'rex', ctx()
            assert watch.wait_for(lambda e: topic('/r3x', 'voice/speech_event')(e)
                                  and e['last_in_reply'] and e['event'] == 1, TURN, since=t3)
            time.sleep(3.0)
            leaked = watch.select(lambda e: e.get('ns') == '/tars'
                                  and (e['topic'] in CONVERSATION or e['topic'] == 'eyes/state'),
                                  since=t3, until=time.monotonic())
            assert leaked == [], f'r3x\'s spoken turn reached tars: {leaked[:5]}'
            # and no conversation id of one droid ever showed up in the other
            r3x_ids = {e.get('conversation_id') for e in watch.select(
                lambda e: e.get('ns') == '/r3x')} - {'', None}
            tars_ids = {e.get('conversation_id') for e in watch.select(
                lambda e: e.get('ns') == '/tars')} - {'', None}
            assert r3x_ids and tars_ids and not r3x_ids & tars_ids
