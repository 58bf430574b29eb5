"""The brain's turn engine and its worker (plain Python, no rclpy).

:class:`Engine.run_turn` runs one conversation turn on the calling (worker) thread:

1. request the LLM with the session memory + the user's text (and the tool schemas);
2. stream: content goes through the :class:`~droid_brain.chunker.SentenceChunker`, each
   complete sentence is handed to the sink at once; tool-call pieces are accumulated;
3. if the model asked for tools: run them (the node sends ``ToolCall`` goals), append the
   calls and results, and request again -- at most ``max_tool_rounds`` rounds with tools
   offered; the last request offers none, so the model has to answer;
4. the end-of-reply marker, then the exchange is stored in memory and trimmed.

Faults: transient errors are retried per :class:`~droid_brain.retry.RetryPolicy` while
nothing of that request has been published; when retries run out (or the error is not
transient) the persona's fallback line is spoken if nothing was said yet, and the sink
gets a warning. A stream cut mid-answer is such a fault (the backend raises ``truncated``):
its unfinished sentence is never spoken, and memory keeps only the sentences said, marked
``[interrupted]`` (:func:`~droid_brain.memory.interrupted_reply`), as after a barge-in. Any unexpected exception is caught: the turn ends, the worker lives on.

:class:`TurnWorker` owns the worker thread with a one-slot, latest-wins queue: a new turn
replaces a queued one and cancels the running one (a newer conversation or a newer
utterance supersedes older work); :meth:`TurnWorker.cancel` is the barge-in path.

A *tentative* turn (preemptive generation, :mod:`droid_brain.preemptive`) carries a
:class:`~droid_brain.preemptive.ReplyGate`: it requests the LLM at once, but its sentences,
the end of its reply, its tools and its memory wait for :meth:`TurnWorker.confirm` (the
final transcription matched); cancelled before that, nothing of it ever goes out.
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from dataclasses import dataclass, field

from droid_common.activity import REALTIME

from droid_brain.chunker import SentenceChunker
from droid_brain.clock import MonotonicClock
from droid_brain.memory import interrupted_reply
from droid_brain.preemptive import ReplyGate
from droid_brain.retry import LLMError, RetryPolicy
from droid_brain.stream import ToolCallAccumulator, ToolResult

_log = logging.getLogger('droid_brain.engine')


@dataclass
class Turn:
    conversation_id: str
    utterance_id: int
    text: str
    input_stamp: float = 0.0                  # stamp of the triggering message [s]
    input_stamp_ns: int | None = None         # the same, exact (ROS stamps), if known
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ''
    gate: ReplyGate | None = None             # set: tentative until confirmed

    @property
    def key(self) -> tuple:
        return (self.conversation_id, self.utterance_id)

    @property
    def tentative(self) -> bool:
        return self.gate is not None and self.gate.pending

    def request_cancel(self, reason: str) -> None:
        if self.gate is not None:
            self.gate.discard()               # a tentative reply never goes out
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel.set()


@dataclass
class TurnOutcome:
    sentences: list
    reply_text: str
    interrupted: bool
    fallback: bool = False
    error: str = ''
    tool_calls: list = field(default_factory=list)   # (ToolCallRequest, ToolResult)
    rounds: int = 0


class Sink:
    """Where a turn's output goes. The node publishes; tests record."""

    def sentence(self, turn: Turn, index: int, text: str, persona: str) -> None: ...

    def end(self, turn: Turn, index: int, interrupted: bool, reply_text: str,
            persona: str) -> None: ...

    def trace(self, turn: Turn, stage: str, detail: str = '', at: float | None = None) -> None:
        """A trace point; ``at``: when it was reached (clock seconds), if not now."""

    def status(self, level: str, message: str) -> None: ...   # 'ok' | 'warn' | 'error'


class RecordingSink(Sink):
    """A sink that records everything with clock stamps (tests, benchmarks)."""

    def __init__(self, clock=None):
        self.clock = clock or MonotonicClock()
        self.events: list = []
        self.cond = threading.Condition()

    def _add(self, *event):
        with self.cond:
            self.events.append((self.clock.now(),) + event)
            self.cond.notify_all()

    def sentence(self, turn, index, text, persona):
        self._add('sentence', turn.conversation_id, index, text, persona)

    def end(self, turn, index, interrupted, reply_text, persona):
        self._add('end', turn.conversation_id, index, interrupted, reply_text, persona)

    def trace(self, turn, stage, detail='', at=None):
        with self.cond:
            self.events.append((self.clock.now() if at is None else at, 'trace',
                                turn.conversation_id, stage, detail))
            self.cond.notify_all()

    def status(self, level, message):
        self._add('status', level, message)

    def of(self, kind: str) -> list:
        with self.cond:
            return [e for e in self.events if e[1] == kind]

    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)


class _GatedSink(Sink):
    """Routes the output of a tentative turn through its gate; others go straight on.
    Traces held by the gate keep the time they were reached (the request really went out
    then); the first sentence is stamped when it is released."""

    def __init__(self, sink: Sink, clock):
        self.inner = sink
        self.clock = clock

    def sentence(self, turn, index, text, persona):
        self._route(turn, lambda: self.inner.sentence(turn, index, text, persona))

    def end(self, turn, index, interrupted, reply_text, persona):
        self._route(turn, lambda: self.inner.end(turn, index, interrupted, reply_text,
                                                 persona))

    def trace(self, turn, stage, detail='', at=None):
        if turn.gate is not None and turn.gate.pending and at is None and \
                stage not in ('FIRST_SENTENCE', 'REPLY_DONE'):
            at = self.clock.now()
        self._route(turn, lambda: self.inner.trace(turn, stage, detail, at) if at is not None
                    else self.inner.trace(turn, stage, detail))

    def status(self, level, message):
        self.inner.status(level, message)

    @staticmethod
    def _route(turn, call) -> None:
        if turn.gate is None:
            call()
        else:
            turn.gate.run(call)


def no_tools(turn, calls):
    return [ToolResult(False, error='no tool executor') for _ in calls]


_END = object()


def pump(iterable, cancel: threading.Event, maxsize: int = 256, poll: float = 0.02,
         activity=REALTIME):
    """Iterate ``iterable`` in a reader thread; stop at once when ``cancel`` is set.

    A blocking read inside the SDK cannot be interrupted from outside; the reader thread
    is abandoned on cancel (it ends by itself when the stream is closed or times out), so
    a cancel never waits for the network. Exceptions of the iterable are re-raised here.
    ``activity`` (droid_common.activity) knows the reader thread and the waits.
    """
    q: queue.Queue = queue.Queue(maxsize=maxsize)

    def put(item) -> bool:
        while not cancel.is_set():
            try:
                q.put(item, timeout=poll)
                activity.notify()          # wake the consumer now
                return True
            except queue.Full:
                continue
        return False

    def reader():
        try:
            for item in iterable:
                if not put((True, item)):
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put((False, exc))
            return
        finally:
            close = getattr(iterable, 'close', None)
            if callable(close) and cancel.is_set():
                try:
                    close()
                except Exception:  # noqa: BLE001
                    pass
        put((True, _END))

    activity.spawn(reader, 'llm-stream')
    while not cancel.is_set():
        if not activity.wait(lambda: cancel.is_set() or not q.empty(), poll=poll,
                             wall_timeout=1.0, what='llm stream'):
            continue
        try:
            ok, item = q.get_nowait()
        except queue.Empty:
            continue
        if not ok:
            raise item
        if item is _END:
            return
        yield item


class Engine:
    def __init__(self, backend, memory, sink: Sink, tool_runner=no_tools, tools_schema=(),
                 clock=None, retry: RetryPolicy | None = None, max_tool_rounds: int = 3,
                 sentence_max_chars: int = 200, persona=None, logger=None,
                 filler_after_s: float = 1.5, first_clause_chars: int = 0,
                 tentative_timeout_s: float = 30.0, activity=None):
        self.backend = backend
        self.activity = activity or REALTIME   # droid_common.activity: threads and waits
        self.memory = memory
        self.clock = clock or MonotonicClock()
        self.sink = _GatedSink(sink, self.clock)
        self.tool_runner = tool_runner
        self.tools_schema = list(tools_schema)
        self.retry = retry or RetryPolicy()
        self.max_tool_rounds = max(0, int(max_tool_rounds))
        self.sentence_max_chars = sentence_max_chars
        self.persona = persona            # callable -> Persona (name, fallback_line)
        self.log = logger or _log
        self.filler_after_s = float(filler_after_s)   # <= 0: no filler lines
        # The reply's first sentence is cut at the first clause boundary (, ; : dash) after
        # this many characters, so speech starts sooner (0 = off).
        self.first_clause_chars = int(first_clause_chars)
        # A tentative turn neither confirmed nor discarded this long is discarded.
        self.tentative_timeout_s = float(tentative_timeout_s)

    def _persona(self):
        return self.persona() if callable(self.persona) else self.persona

    def run_turn(self, turn: Turn) -> TurnOutcome:
        persona = self._persona()
        pname = getattr(persona, 'name', '')
        sentences: list = []
        pending = [{'role': 'user', 'content': turn.text}]
        fillers: list = []          # indexes of filler lines in ``sentences``
        out = TurnOutcome(sentences, '', False)
        first_token = [False]
        round_start = 0

        def say(text: str) -> None:
            if turn.cancel.is_set():
                return
            if not sentences:
                self.sink.trace(turn, 'FIRST_SENTENCE')
            self.sink.sentence(turn, len(sentences), text, pname)
            sentences.append(text)

        try:
            for rnd in range(self.max_tool_rounds + 1):
                out.rounds = rnd + 1
                round_start = len(sentences)
                offer = self.tools_schema if rnd < self.max_tool_rounds else []
                content, calls, error = self._request(turn, pending, offer, rnd, say,
                                                      first_token, not sentences)
                if turn.cancel.is_set():
                    break
                if error is not None:
                    out.error = str(error)
                    self.sink.status('warn', f'LLM request failed ({error.kind}): {error}')
                    if len(sentences) == len(fillers):       # nothing of the model's said
                        out.fallback = True
                        say(getattr(persona, 'fallback_line', '') or
                            "Sorry, I can't think right now.")
                    else:
                        # A broken stream is not a reply: keep only what was said.
                        out.interrupted = True
                        pending.append({'role': 'assistant', 'content': interrupted_reply(
                            ' '.join(sentences[round_start:]))})
                    break
                if calls and not offer:
                    self.log.warning(f'model asked for tools after {self.max_tool_rounds} '
                                     'tool rounds; ignoring the calls')
                    calls = []
                if not calls:
                    pending.append({'role': 'assistant', 'content': content})
                    note = ('' if getattr(self.backend, 'tools_stream', True) else
                            '; tool rounds not streamed: the server cannot stream tool calls')
                    self.sink.status('ok', f'LLM ok ({self.backend.name}{note})')
                    break
                pending.append({'role': 'assistant', 'content': content or None,
                                'tool_calls': [c.as_message_entry() for c in calls]})
                if not self._confirmed(turn):
                    break                     # tools never run for a discarded reply
                for c in calls:
                    self.sink.trace(turn, 'TOOL_GOAL', c.name)
                results = self._run_tools(turn, calls, persona, say, fillers,
                                          lambda: sentences)
                for c, r in zip(calls, results):
                    self.sink.trace(turn, 'TOOL_RESULT',
                                    f'{c.name}: ' + ('ok' if r.success else r.error)[:120])
                    pending.append({'role': 'tool', 'tool_call_id': c.id,
                                    'content': r.as_content()})
                    out.tool_calls.append((c, r))
                if turn.cancel.is_set():
                    break
        except Exception as exc:  # noqa: BLE001 - a turn never kills the worker
            self.log.error(f'turn failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}')
            self.sink.status('warn', f'turn failed: {type(exc).__name__}: {exc}')
            out.error = f'{type(exc).__name__}: {exc}'
            out.interrupted = True
        if turn.cancel.is_set():
            out.interrupted = True
            # What was actually published is what the user heard (or began to hear).
            if pending[-1]['role'] == 'assistant' and not pending[-1].get('tool_calls'):
                pending.pop()
            if sentences[round_start:]:
                pending.append({'role': 'assistant',
                                'content': interrupted_reply(' '.join(sentences[round_start:]))})
        out.reply_text = ' '.join(sentences)
        if not self._confirmed(turn):
            # A tentative reply thrown away: nothing of it was said, nothing is stored.
            out.interrupted = True
            return out
        self.sink.end(turn, len(sentences), out.interrupted, out.reply_text, pname)
        self.sink.trace(turn, 'REPLY_DONE',
                        'interrupted: ' + turn.cancel_reason if turn.cancel.is_set()
                        else ('fallback' if out.fallback else
                              ('error' if out.interrupted else '')))
        if out.fallback and not any(m['role'] == 'assistant' for m in pending):
            pending.append({'role': 'assistant', 'content': out.reply_text})
        try:
            self.memory.add_exchange(pending, key=(turn.conversation_id, turn.utterance_id))
        except Exception as exc:  # noqa: BLE001
            self.log.error(f'memory: {exc}')
        return out

    def _confirmed(self, turn: Turn) -> bool:
        """A tentative turn waits here for its verdict: True once confirmed (or for a
        normal turn), False if discarded (or never decided within the timeout)."""
        if turn.gate is None:
            return True
        if turn.gate.wait_decided(self.tentative_timeout_s):
            return True
        turn.request_cancel('tentative reply never confirmed')
        return False

    def _run_tools(self, turn, calls, persona, say, fillers, sentences_said):
        """Run the tools; if they keep the user waiting past ``filler_after_s`` (clock
        time), say the persona's filler line once, so there is no dead air."""
        if self.filler_after_s <= 0:
            return self.tool_runner(turn, calls)
        done = threading.Event()
        lock = threading.Lock()

        def filler():
            if self.clock.sleep_until(self.clock.now() + self.filler_after_s, done):
                with lock:
                    if not done.is_set() and not turn.cancel.is_set():
                        line = getattr(persona, 'filler_line', '') or 'One moment.'
                        self.sink.trace(turn, 'FILLER', ', '.join(c.name for c in calls))
                        fillers.append(len(sentences_said()))
                        say(line)

        waiter = self.activity.spawn(filler, 'tool-filler')
        try:
            return self.tool_runner(turn, calls)
        finally:
            with lock:
                done.set()
            self.activity.notify()
            waiter.join(1.0)

    def _request(self, turn, pending, tools, rnd, say, first_token, first=True):
        """One LLM request (with retries). Returns ``(content, calls, error)``.
        ``first``: nothing said yet in this turn (its first sentence may be a clause)."""
        attempt = 0
        while True:
            messages = self.memory.messages(pending)
            chunker = SentenceChunker(max_chars=self.sentence_max_chars,
                                      first_clause_chars=self.first_clause_chars
                                      if first else 0)
            acc = ToolCallAccumulator()
            content = []
            published = [False]
            self.sink.trace(turn, 'LLM_REQUEST', f'{self.backend.name} round {rnd + 1}'
                            + (f' retry {attempt}' if attempt else '')
                            + (' preemptive' if turn.gate is not None else ''))
            try:
                for delta in pump(self.backend.stream(messages, tools, turn.cancel),
                                  turn.cancel, activity=self.activity):
                    if turn.cancel.is_set():
                        return ''.join(content), [], None
                    if (delta.content or delta.tool_calls) and not first_token[0]:
                        first_token[0] = True
                        self.sink.trace(turn, 'FIRST_TOKEN')
                    if delta.content:
                        content.append(delta.content)
                        for s in chunker.feed(delta.content):
                            say(s)
                            published[0] = True
                    for piece in delta.tool_calls:
                        acc.add(piece)
                if turn.cancel.is_set():
                    return ''.join(content), [], None
                for s in chunker.flush():
                    say(s)
                    published[0] = True
                return ''.join(content), acc.calls(), None
            except LLMError as exc:
                if turn.cancel.is_set():
                    return ''.join(content), [], None
                if published[0] or not self.retry.should_retry(exc, attempt):
                    return ''.join(content), [], exc
                attempt += 1
                delay = self.retry.delay(attempt, exc.retry_after)
                self.log.warning(f'LLM {exc.kind}: {exc}; retry {attempt}/'
                                 f'{self.retry.max_retries} in {delay:.2f} s')
                self.sink.status('warn', f'LLM {exc.kind}, retrying ({attempt}/'
                                 f'{self.retry.max_retries}): {exc}')
                if not self.clock.sleep_until(self.clock.now() + delay, turn.cancel):
                    return '', [], None


class TurnWorker:
    """The worker thread: runs turns one at a time, latest wins, cancellable."""

    def __init__(self, engine: Engine, on_dropped=None, logger=None, activity=None):
        self.engine = engine
        self.activity = activity or engine.activity
        self.on_dropped = on_dropped        # called with a queued turn that was replaced
        self.log = logger or _log
        self._cond = threading.Condition()
        self._queued: Turn | None = None
        self._current: Turn | None = None
        self._closed = False
        self.outcomes: list = []            # (turn, outcome), last 20
        self._thread = self.activity.spawn(self._loop, 'brain-llm')

    @property
    def current(self) -> Turn | None:
        with self._cond:
            return self._current

    def submit(self, turn: Turn) -> None:
        """Queue a turn; cancels the running one and replaces a queued one."""
        with self._cond:
            dropped = self._queued
            self._queued = turn
            running = self._current
            self._cond.notify_all()
        self.activity.notify()
        if running is not None:
            same = running.conversation_id == turn.conversation_id
            self._cancel(running, 'newer utterance' if same else 'newer conversation')
        self._drop(dropped, 'replaced')

    def _drop(self, turn: Turn | None, reason: str) -> None:
        """A queued turn that will not run: closed with an interrupted marker, unless it
        was tentative (nothing of it went out)."""
        if turn is None:
            return
        tentative = turn.gate is not None and not turn.gate.state == 'open'
        turn.request_cancel(reason)
        if not tentative and self.on_dropped is not None:
            self.on_dropped(turn)

    def confirm(self, key: tuple) -> bool:
        """Confirm the tentative turn of ``key`` (running or queued): its held output goes
        out now. False if there is none (discarded, replaced or finished)."""
        with self._cond:
            turns = [t for t in (self._current, self._queued) if t is not None]
        for t in turns:
            if t.key == tuple(key) and t.gate is not None and not t.cancel.is_set():
                return t.gate.open()
        return False

    def cancel_tentative(self, reason: str) -> bool:
        """Cancel the running or queued turn if it is still tentative."""
        with self._cond:
            turns = [t for t in (self._current, self._queued) if t is not None]
            if self._queued is not None and self._queued.tentative:
                self._queued = None
        hit = False
        for t in turns:
            if t.tentative:
                self._cancel(t, reason)
                hit = True
        return hit

    def busy(self) -> bool:
        with self._cond:
            return self._current is not None or self._queued is not None

    def _cancel(self, turn: Turn, reason: str) -> None:
        if not turn.cancel.is_set():
            turn.request_cancel(reason)
            if turn is self.current:
                self.engine.backend.abort()
            self.activity.notify()

    def cancel(self, conversation_id: str, utterance_id: int | None = None,
               reason: str = 'barge-in') -> bool:
        """Cancel the running turn if it belongs to this conversation (and utterance)."""
        dropped = None
        with self._cond:
            running = self._current
            if (self._queued is not None and self._queued.conversation_id == conversation_id
                    and utterance_id in (None, 0, self._queued.utterance_id)):
                dropped, self._queued = self._queued, None
        self._drop(dropped, reason)
        if running is None or running.conversation_id != conversation_id:
            return False
        if utterance_id not in (None, 0) and utterance_id != running.utterance_id:
            return False
        self._cancel(running, reason)
        return True

    def wait_idle(self, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._current is None and self._queued is None,
                                       timeout)

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            running = self._current
            self._queued = None
            self._cond.notify_all()
        self.activity.notify()
        if running is not None:
            self._cancel(running, 'shutdown')
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            self.activity.wait(lambda: self._closed or self._queued is not None,
                               poll=0.05, what='turn')
            with self._cond:
                if self._closed:
                    return
                if self._queued is None:
                    continue
                turn, self._queued = self._queued, None
                self._current = turn
            try:
                outcome = self.engine.run_turn(turn)
                self.outcomes = (self.outcomes + [(turn, outcome)])[-20:]
            except Exception as exc:  # noqa: BLE001 - run_turn catches; belt and braces
                self.log.error(f'worker: {type(exc).__name__}: {exc}')
            finally:
                with self._cond:
                    self._current = None
                    self._cond.notify_all()
