"""OpenAI-compatible chat-completions backend (openai SDK, ``stream=True``).

Works with api.openai.com and with local OpenAI-compatible servers (Ollama, vLLM,
llama.cpp server) through ``base_url``. The SDK's own retries are off (``max_retries=0``):
the brain's :class:`droid_brain.retry.RetryPolicy` retries, so retries are bounded,
visible in traces and cancellable. Errors never carry the key (:func:`redact`).

A stream is trusted only when it ends the way a complete answer ends:

* a stream that stops without any ``finish_reason`` (the connection was cut mid-answer)
  raises :class:`LLMError` of kind ``truncated`` -- never a short reply;
* a server that cannot stream tool calls (llama-cpp-python's server answers ``stream=true``
  + ``tools`` + ``tool_choice=auto`` with an empty stream) is detected by an empty stream
  while tools were offered: that round is asked again without streaming, and later rounds
  with tools go straight to the non-streaming request (:attr:`OpenAIBackend.tools_stream`).
"""

from __future__ import annotations

import threading

from droid_common.secrets import redact

from droid_brain.retry import LLMError, status_retryable
from droid_brain.stream import Delta, ToolDelta

OFFICIAL_HOSTS = ('api.openai.com',)
NO_KEY_PLACEHOLDER = 'no-key'   # local servers ignore the key, the SDK insists on one


def is_official_openai(base_url: str) -> bool:
    from urllib.parse import urlparse
    host = (urlparse(base_url or 'https://api.openai.com/v1').hostname or '').lower()
    return host in OFFICIAL_HOSTS or host.endswith('.openai.com')


class OpenAIBackend:
    """Streams chat completions; :meth:`abort` closes the stream from another thread."""

    name = 'openai'

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 temperature: float = 0.7, max_tokens: int = 300,
                 request_timeout_s: float = 15.0):
        import openai
        self._openai = openai
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.base_url = base_url
        self._client = openai.OpenAI(api_key=api_key or NO_KEY_PLACEHOLDER,
                                     base_url=base_url or None,
                                     timeout=request_timeout_s, max_retries=0)
        self._lock = threading.Lock()
        self._current = None
        self.tools_stream = True          # False once the server sent an empty tool stream
        self.notes: list = []             # one-off findings about the server (diagnostics)

    def close(self) -> None:
        self.abort()
        try:
            self._client.close()
        except Exception:  # noqa: BLE001
            pass

    def abort(self) -> None:
        """Close the in-flight stream (unblocks a read waiting for the server)."""
        with self._lock:
            stream = self._current
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing a half-read stream may complain
                pass

    def _error(self, exc: Exception) -> LLMError:
        o = self._openai
        if isinstance(exc, o.APIStatusError):
            status = int(getattr(exc, 'status_code', 0) or 0)
            retry_after = None
            try:
                raw = exc.response.headers.get('retry-after')
                retry_after = float(raw) if raw is not None else None
            except (TypeError, ValueError, AttributeError):
                retry_after = None
            return LLMError(redact(f'HTTP {status}: {exc}'), status_retryable(status), status,
                            retry_after)
        if isinstance(exc, o.APITimeoutError):
            return LLMError('request timed out', True, kind='timeout')
        if isinstance(exc, o.APIConnectionError):
            return LLMError(redact(f'connection failed: {exc}'), True, kind='connection')
        return LLMError(redact(f'malformed stream: {type(exc).__name__}: {exc}'), True,
                        kind='malformed')

    def _create(self, **kwargs):
        try:
            return self._client.chat.completions.create(**kwargs)
        except Exception as exc:  # noqa: BLE001 - classified below
            raise self._error(exc) from None

    def stream(self, messages: list, tools: list, cancel: threading.Event):
        """Yield :class:`Delta` s; raise :class:`LLMError` on failure."""
        kwargs = dict(model=self.model, messages=messages,
                      temperature=self.temperature, max_tokens=self.max_tokens)
        if tools:
            kwargs['tools'] = tools
            if not self.tools_stream:
                yield from self._complete(kwargs, cancel)
                return
        stream = self._create(stream=True, **kwargs)
        with self._lock:
            self._current = stream
        seen = StreamCheck()
        try:
            if cancel.is_set():
                return
            iterator = iter(stream)
            while True:
                try:
                    chunk = next(iterator)
                except StopIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - bad JSON, dropped connection ...
                    if cancel.is_set():
                        return
                    raise self._error(exc) from None
                if cancel.is_set():
                    return
                delta = to_delta(chunk)
                if delta is not None:
                    seen.add(delta)
                    yield delta
        finally:
            with self._lock:
                self._current = None
            try:
                stream.close()
            except Exception:  # noqa: BLE001
                pass
        if cancel.is_set():
            return
        if tools and seen.empty:
            # llama.cpp-style server: tools cannot be streamed. Ask this round again
            # without streaming, and do so directly from now on.
            self.tools_stream = False
            self.notes.append('server sent an empty stream for a request with tools: '
                              'tool rounds now use non-streaming requests')
            yield from self._complete(kwargs, cancel)
            return
        if not seen.finished:
            raise LLMError('stream ended without a finish reason (connection cut '
                           'mid-answer?)', True, kind='truncated')

    def _complete(self, kwargs: dict, cancel: threading.Event):
        """One non-streaming request, replayed as deltas."""
        completion = self._create(stream=False, **kwargs)
        if cancel.is_set():
            return
        for delta in completion_deltas(completion):
            yield delta


class StreamCheck:
    """What a stream carried: anything at all, and a finish reason."""

    def __init__(self):
        self.empty = True
        self.finished = False

    def add(self, delta: Delta) -> None:
        if delta.content or delta.tool_calls:
            self.empty = False
        if delta.finish_reason:
            self.finished = True


def completion_deltas(completion) -> list:
    """A non-streamed ChatCompletion -> the deltas a stream would have carried."""
    choices = getattr(completion, 'choices', None) or []
    if not choices:
        raise LLMError('malformed completion: no choices', True, kind='malformed')
    choice = choices[0]
    msg = getattr(choice, 'message', None)
    out = Delta(finish_reason=getattr(choice, 'finish_reason', None) or 'stop')
    if msg is not None:
        content = getattr(msg, 'content', None)
        out.content = content if isinstance(content, str) else None
        for n, tc in enumerate(getattr(msg, 'tool_calls', None) or []):
            fn = getattr(tc, 'function', None)
            out.tool_calls.append(ToolDelta(
                index=n, id=getattr(tc, 'id', None),
                name=getattr(fn, 'name', None) if fn is not None else None,
                arguments=getattr(fn, 'arguments', None) if fn is not None else None))
    return [out]


def to_delta(chunk) -> Delta | None:
    """ChatCompletionChunk -> Delta (None for chunks without a choice, e.g. usage)."""
    choices = getattr(chunk, 'choices', None) or []
    if not choices:
        return None
    choice = choices[0]
    d = getattr(choice, 'delta', None)
    out = Delta(finish_reason=getattr(choice, 'finish_reason', None))
    if d is not None:
        content = getattr(d, 'content', None)
        out.content = content if isinstance(content, str) else None
        for tc in getattr(d, 'tool_calls', None) or []:
            fn = getattr(tc, 'function', None)
            out.tool_calls.append(ToolDelta(
                index=getattr(tc, 'index', None), id=getattr(tc, 'id', None),
                name=getattr(fn, 'name', None) if fn is not None else None,
                arguments=getattr(fn, 'arguments', None) if fn is not None else None))
    return out
