"""Expression logic and the stale-event rules, with a fake clock (no ROS)."""

import pytest
from droid_eyes.expression import (
    LABELS,
    MODES,
    PATTERNS,
    SOURCES,
    SPEECH,
    Expression,
    ExpressionConfig,
    parse_pattern,
)

POS, NEU, NEG = LABELS['positive'], LABELS['neutral'], LABELS['negative']
STARTED, ENDED, INTERRUPTED = SPEECH['STARTED'], SPEECH['ENDED'], SPEECH['INTERRUPTED']


class Clock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self, dt=0.0):
        self.t += dt
        return self.t


@pytest.fixture
def clk():
    return Clock()


@pytest.fixture
def ex(clk):
    e = Expression(ExpressionConfig.from_flat({'initial_mode': 'interactive'}), clk())
    return e


def theme(e, key):
    return e.config.themes['default'][key]


def test_initial_and_mode_looks(ex, clk):
    assert ex.look.pattern == PATTERNS['solid'] and ex.look.source == SOURCES['ambient']
    assert ex.look.brightness == pytest.approx(0.6)
    ch = ex.on_mode(MODES['ambient'], clk(), clk())
    assert ch.look.pattern == PATTERNS['pulse'] and ch.look.speed == pytest.approx(0.25)
    assert ch.look.color == theme(ex, 'ambient') and ch.trace is None
    assert ex.on_mode(MODES['sleep'], clk(0.1), clk()).look.pattern == PATTERNS['off']
    assert ex.on_mode(MODES['sleep'], clk(0.1), clk()) is None     # no change, no output


def test_a_whole_turn(ex, clk):
    t0 = clk()
    ch = ex.on_wake('c1', t0, clk(0.01))
    assert ch.look.pattern == PATTERNS['listening'] and ch.look.source == SOURCES['listening']
    assert ch.look.conversation_id == 'c1'
    assert ch.trace is None                               # the user's side is not traced
    ch = ex.on_transcription('c1', 1, False, clk(0.5), clk())
    assert ch is None                                     # still listening: no new frame
    ch = ex.on_transcription('c1', 1, True, clk(1.0), clk())
    assert ch.look.pattern == PATTERNS['thinking'] and ch.trace is None
    t_sent = clk(0.5)
    ch = ex.on_sentiment('c1', 1, POS, 0.8, t_sent, clk())
    assert ch.look.pattern == PATTERNS['happy'] and ch.look.color == theme(ex, 'positive')
    assert ch.trace == ('c1', 1, t_sent)                  # eyes reacted to turn 1's reply
    assert ch.look.source == SOURCES['sentiment']
    ch = ex.on_speech('c1', 1, 0, STARTED, False, clk(0.2), clk())
    assert ch.look.pattern == PATTERNS['speaking'] and ch.look.source == SOURCES['speech']
    assert ch.trace is None                               # only the first change is traced
    assert ch.look.color == theme(ex, 'positive')         # speaking in the reply's mood
    assert ex.on_amplitude('c1', 0.7, clk(0.03)) == pytest.approx(0.7)
    # End of sentence 0, sentence 1 follows shortly: the speaking look is held.
    assert ex.on_speech('c1', 1, 0, ENDED, False, clk(1.0), clk()) is None
    assert ex.tick(clk(0.3)) is None
    assert ex.on_speech('c1', 1, 1, STARTED, False, clk(0.1), clk()) is None
    ch = ex.on_speech('c1', 1, 1, ENDED, True, clk(1.0), clk())
    assert ch.look.pattern == PATTERNS['happy']           # mood afterglow
    assert ex.tick(clk(2.9)) is None
    ch = ex.tick(clk(0.2))                                 # sentiment.hold = 3 s elapsed
    assert ch.look.source == SOURCES['ambient'] and ch.look.conversation_id == ''


def test_gap_hold_expires_without_a_next_sentence(ex, clk):
    ex.on_speech('c1', 1, 0, STARTED, False, clk(), clk())
    ex.on_speech('c1', 1, 0, ENDED, False, clk(1), clk())
    assert ex.look.pattern == PATTERNS['speaking']
    assert ex.tick(clk(0.7)).look.source == SOURCES['ambient']


def test_listening_and_thinking_time_out(ex, clk):
    ex.on_wake('c1', clk(), clk())
    assert ex.tick(clk(7.9)) is None
    assert ex.tick(clk(0.2)).look.source == SOURCES['ambient']
    ex.on_transcription('c1', 1, True, clk(), clk())
    assert ex.look.pattern == PATTERNS['thinking']
    assert ex.tick(clk(20.1)).look.source == SOURCES['ambient']


def test_events_of_an_older_conversation_are_ignored(ex, clk):
    ex.on_wake('c1', clk(), clk())
    ex.on_transcription('c1', 1, True, clk(1), clk())
    ex.on_wake('c2', clk(1), clk())                       # a newer conversation
    assert ex.conversation_id == 'c2'
    look = ex.look
    assert ex.on_sentiment('c1', 1, NEG, -0.9, clk(0.1), clk()) is None
    assert 'older conversation' in ex.last_ignored
    assert ex.on_speech('c1', 1, 0, STARTED, False, clk(0.1), clk()) is None
    assert ex.on_amplitude('c1', 0.9, clk(0.1)) is None
    assert ex.look == look and ex.ignored == 3


def test_unknown_conversation_stamped_before_the_current_one_is_ignored(ex, clk):
    start = clk()
    ex.on_wake('c2', start, clk())
    assert ex.on_sentiment('c0', 3, POS, 0.9, start - 5.0, clk(0.1)) is None
    assert 'before the current conversation' in ex.last_ignored
    assert ex.conversation_id == 'c2'
    # ...but a new one stamped later becomes current.
    ch = ex.on_sentiment('c3', 1, POS, 0.9, clk(0.1), clk())
    assert ch is not None and ex.conversation_id == 'c3'


def test_superseded_events_within_a_conversation(ex, clk):
    ex.on_wake('c1', clk(), clk())
    ex.on_transcription('c1', 1, True, clk(1), clk())
    t_new = clk(1)
    ex.on_sentiment('c1', 1, NEG, -0.5, t_new, clk())
    assert ex.look.pattern == PATTERNS['sad']
    # An older sentiment delivered late does not override the newer one.
    assert ex.on_sentiment('c1', 1, POS, 0.5, t_new - 0.5, clk(0.1)) is None
    assert 'superseded' in ex.last_ignored and ex.look.pattern == PATTERNS['sad']
    # A sentiment of an older turn is ignored once a newer turn started.
    ex.on_transcription('c1', 2, False, clk(1), clk())
    assert ex.on_sentiment('c1', 1, POS, 0.9, clk(0.1), clk()) is None
    assert 'older than the current' in ex.last_ignored
    # Amplitude stamps: an older one is dropped.
    assert ex.on_amplitude('c1', 0.5, clk(0.1)) == 0.5
    assert ex.on_amplitude('c1', 0.6, clk() - 0.05) is None


def test_end_of_a_sentence_not_being_spoken_is_ignored(ex, clk):
    ex.on_speech('c1', 1, 0, STARTED, False, clk(), clk())
    ex.on_speech('c1', 1, 1, STARTED, False, clk(1), clk())    # sentence 1 started
    # A late ENDED of sentence 0 must not stop the speaking look of sentence 1.
    assert ex.on_speech('c1', 1, 0, ENDED, False, clk(0.1), clk()) is None
    assert ex.speaking and ex.look.pattern == PATTERNS['speaking']


def test_barge_in_shows_listening_after_the_interruption(ex, clk):
    ex.on_sentiment('c1', 1, POS, 0.9, clk(), clk())
    ex.on_speech('c1', 1, 0, STARTED, False, clk(0.1), clk())
    ch = ex.on_transcription('c1', 2, False, clk(0.5), clk())    # user talks over the droid
    assert ch is None and ex.look.pattern == PATTERNS['speaking']
    # The INTERRUPTED of utterance 1 still ends the sentence being spoken.
    ch = ex.on_speech('c1', 1, 0, INTERRUPTED, False, clk(0.1), clk())
    assert ch.look.pattern == PATTERNS['listening']
    # Traces name the turn of the message that caused the change (turn 1, already traced).
    assert ch.trace is None


def test_explicit_command_wins_for_its_duration(ex, clk):
    ex.on_wake('c1', clk(), clk())
    ch = ex.on_command('c1', PATTERNS['spin'], (1.0, 0.0, 0.0), 0.9, 2.0, 2.0, clk(), clk())
    assert ch.look.pattern == PATTERNS['spin'] and ch.look.source == SOURCES['command']
    assert ch.look.color == (1.0, 0.0, 0.0)
    # Other events change the hidden state but the command still shows.
    assert ex.on_sentiment('c1', 1, NEG, -0.9, clk(0.5), clk()) is None
    assert ex.look.pattern == PATTERNS['spin']
    ch = ex.tick(clk(1.6))
    assert ch.look.pattern == PATTERNS['sad']                     # the state underneath


def test_open_ended_command_until_the_next_one_or_sleep(ex, clk):
    ex.on_command('', PATTERNS['blink'], (0, 1, 0), 1.0, 0.0, 0.0, clk(), clk())
    assert ex.tick(clk(3600)) is None and ex.look.pattern == PATTERNS['blink']
    ex.on_command('', PATTERNS['angry'], (1, 0, 0), 1.0, 0.0, 0.0, clk(), clk())
    assert ex.look.pattern == PATTERNS['angry']
    # An older command delivered late is ignored.
    assert ex.on_command('', PATTERNS['happy'], (1, 1, 0), 1.0, 0, 0, clk() - 1, clk()) is None
    assert ex.on_mode(MODES['sleep'], clk(1), clk()).look.pattern == PATTERNS['off']
    assert ex.on_command('', 99, (1, 1, 1), 1.0, 0, 0, clk(1), clk()) is None


def test_command_of_an_old_conversation_is_ignored(ex, clk):
    ex.on_wake('c1', clk(), clk())
    ex.on_wake('c2', clk(1), clk())
    assert ex.on_command('c1', PATTERNS['spin'], (1, 0, 0), 1, 0, 1, clk(0.1), clk()) is None


def test_mode_change_ends_listening_only_if_newer(ex, clk):
    wake = clk()
    ex.on_wake('c1', wake, clk())
    # A stale IDLE (stamped before the wake) must not end the new conversation.
    ex.on_mode(MODES['idle'], wake - 1.0, clk(0.1))
    assert ex.look.pattern == PATTERNS['listening']
    ch = ex.on_mode(MODES['idle'], clk(0.1), clk())
    assert ch.look.source == SOURCES['ambient'] and ch.look.brightness == pytest.approx(0.15)
    assert ex.on_mode(MODES['ambient'], wake - 2.0, clk()) is None   # superseded mode


def test_persona_themes(ex, clk):
    ch = ex.on_persona('rex', (0.0, 0.0, 0.0), clk(), clk())
    assert ch.look.color == ex.config.themes['rex']['ambient']
    ex.on_sentiment('c1', 1, NEU, 0.0, clk(0.1), clk())
    assert ex.look.color == ex.config.themes['rex']['neutral']
    ex.tick(clk(30))
    # Unknown theme: default theme with the persona's own colour as ambient.
    ch = ex.on_persona('nope', (0.5, 0.25, 1.0), clk(1), clk())
    assert ch.look.color == (0.5, 0.25, 1.0)
    assert ex.on_persona('rex', (0, 0, 0), clk() - 5, clk()) is None   # superseded


def test_trace_only_on_the_first_change_of_each_turn(ex, clk):
    traces = []
    for ch in (ex.on_wake('c1', clk(), clk()),
               ex.on_transcription('c1', 1, True, clk(1), clk()),
               ex.on_speech('c1', 1, 0, STARTED, False, clk(1), clk()),
               ex.on_sentiment('c1', 1, POS, 1, clk(1), clk()),
               ex.on_speech('c1', 1, 0, ENDED, True, clk(1), clk()),
               ex.on_transcription('c1', 2, True, clk(1), clk()),
               ex.on_sentiment('c1', 2, NEG, -1, clk(1), clk()),
               ex.on_speech('c1', 2, 0, STARTED, False, clk(1), clk())):
        assert ch is not None
        if ch.trace:
            traces.append(ch.trace[:2])
    assert traces == [('c1', 1), ('c1', 2)]


def test_config_from_flat():
    cfg = ExpressionConfig.from_flat({'sentiment.positive.pattern': 'PATTERN_SPIN',
                                      'mode.idle.pattern': 3, 'theme_names': ['mine'],
                                      'default_theme': 'mine',
                                      'themes.mine.ambient': [1, 0, 0, 1],
                                      'themes.mine.positive': [2.0, -1.0, 0.5]})
    assert cfg.looks['sentiment.positive'].pattern == PATTERNS['spin']
    assert cfg.looks['mode.idle'].pattern == PATTERNS['pulse']
    assert cfg.themes['mine']['ambient'] == (1.0, 0.0, 0.0)
    assert cfg.themes['mine']['positive'] == (1.0, 0.0, 0.5)        # clamped
    assert cfg.themes['mine']['neutral'] == (0.0, 0.6, 1.0)         # from the builtin default
    with pytest.raises(ValueError):
        ExpressionConfig.from_flat({'listening.pattern': 'sparkle'})
    with pytest.raises(ValueError):
        ExpressionConfig.from_flat({'themes.default.ambient': [1.0]})
    assert parse_pattern('Happy') == PATTERNS['happy']
    with pytest.raises(ValueError):
        parse_pattern(42)


def test_history_is_bounded_but_remembers_recent_conversations(clk):
    ex = Expression(ExpressionConfig.from_flat({'history': 2}), clk())
    for i in range(5):
        ex.on_wake(f'c{i}', clk(1), clk())
    assert ex.on_sentiment('c3', 1, POS, 1, clk(1), clk()) is None   # remembered
    # c0 was forgotten; stamped after c4 started it would count as a new conversation.
    assert ex.on_sentiment('c0', 1, POS, 1, clk(1), clk()) is not None
