// The droid dashboard: what the droid hears, says, shows and how healthy it is, and
// buttons to steer it, over the rosbridge websocket of web_bridge (or rosbridge_suite).
// Topic names, types and the contract's constants come from /config.json.
import { Rosbridge } from './rosbridge.js';

const $ = (id) => document.getElementById(id);
const invert = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [v, k.toLowerCase()]));
const cfg = await (await fetch('config.json', { cache: 'no-store' })).json();
const C = cfg.constants;
const T = cfg.topics;
const MODE_NAME = invert(C.SystemMode);
const PATTERN_NAME = invert(C.EyePattern);
const SOURCE_NAME = invert(C.EyeSource);
const STAGE_NAME = invert(C.TraceStage);
const MOOD = { [C.Sentiment.NEGATIVE]: 'negative', [C.Sentiment.NEUTRAL]: 'neutral',
               [C.Sentiment.POSITIVE]: 'positive' };

const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
const token = new URLSearchParams(location.search).get('token');
const url = cfg.rosbridge_port ? `${proto}//${location.hostname}:${cfg.rosbridge_port}/`
  : `${proto}//${location.host}/${token ? `?token=${encodeURIComponent(token)}` : ''}`;
const ros = new Rosbridge(url);
const sub = (key, cb, opts) => ros.subscribe(T[key].name, T[key].type, cb, opts);
const stampNow = () => { const ms = Date.now(); return { sec: Math.floor(ms / 1000), nanosec: (ms % 1000) * 1e6 }; };
const toSec = (t) => t.sec + t.nanosec * 1e-9;
const newId = () => [...crypto.getRandomValues(new Uint8Array(6))]
  .map((b) => b.toString(16).padStart(2, '0')).join('');
const note = (el, text, bad = false) => { el.textContent = text; el.classList.toggle('bad', bad); };
window.droid = { ros, cfg };       // for tests and the curious

// ---- connection ----------------------------------------------------------------------
const link = $('link');
ros.addEventListener('connection', (e) => {
  link.dataset.state = e.detail ? 'connected' : 'reconnecting';
  link.textContent = e.detail ? 'connected' : 'reconnecting…';
  link.classList.toggle('bad', !e.detail);
  if (e.detail) refreshMute();
});
ros.addEventListener('status', (e) => console.warn('bridge:', e.detail.msg));

// ---- conversation ----------------------------------------------------------------------
const turns = new Map();
function turn(cid, utt) {
  const key = `${cid}#${utt || 1}`;
  let t = turns.get(key);
  if (!t) {
    const li = document.createElement('li');
    li.className = 'turn';
    li.innerHTML = '<div class="you"></div><div class="droid"></div>';
    $('transcript').append(li);
    t = { li, you: li.firstChild, droid: li.lastChild, sentences: new Map() };
    turns.set(key, t);
    while (turns.size > 25) {
      const [oldest] = turns.keys();
      turns.get(oldest).li.remove();
      turns.delete(oldest);
    }
  }
  return t;
}
const scrollDown = () => { const el = $('transcript'); el.scrollTop = el.scrollHeight; };

sub('TRANSCRIPTION', (m) => {
  const t = turn(m.conversation_id, m.utterance_id);
  t.you.textContent = m.text;
  t.you.className = `you ${m.is_final ? 'final' : 'partial'}`;
  t.you.dataset.source = m.source;
  if (m.is_final) setActivity('thinking');
  scrollDown();
});
sub('REPLY', (m) => {
  const t = turn(m.conversation_id, m.utterance_id);
  if (m.is_final) {
    t.droid.classList.add('done');
    if (m.interrupted) t.droid.classList.add('interrupted');
    return;
  }
  const s = document.createElement('span');
  s.className = 'sentence';
  s.textContent = m.text;
  s.dataset.index = m.index;
  s.dataset.persona = m.persona;
  t.sentences.set(m.index, s);
  t.droid.append(s, ' ');
  scrollDown();
});
sub('SENTIMENT', (m) => {
  const mood = $('mood');
  mood.dataset.mood = m.label;
  mood.textContent = `${MOOD[m.label] || m.label} ${m.score >= 0 ? '+' : ''}${m.score.toFixed(2)}`;
  const t = turns.get(`${m.conversation_id}#${m.utterance_id || 1}`);
  if (t) t.droid.dataset.mood = MOOD[m.label] || '';
});

// ---- speaking / listening ----------------------------------------------------------------
let speaking = false;
function setActivity(what) {
  const a = $('activity');
  a.dataset.activity = what;
  a.textContent = what;
}
sub('SPEECH_EVENT', (m) => {
  const t = turns.get(`${m.conversation_id}#${m.utterance_id || 1}`);
  const s = t && t.sentences.get(m.sentence_index);
  if (m.event === C.SpeechEvent.STARTED) {
    speaking = true;
    setActivity('speaking');
    if (s) s.classList.add('speaking');
  } else {
    if (s) { s.classList.remove('speaking'); s.classList.add('spoken'); }
    if (m.event === C.SpeechEvent.INTERRUPTED && s) s.classList.add('cut');
    if (m.last_in_reply || m.event === C.SpeechEvent.INTERRUPTED || !m.conversation_id) {
      speaking = false;
      setActivity('idle');
    }
  }
});
sub('WAKE_WORD', () => setActivity('listening'));
sub('VOICE_ACTIVITY', (m) => {
  if (m.speaking && !speaking) setActivity('listening');
}, { throttle_rate: 100, queue_length: 1 });
sub('AMPLITUDE', (m) => { $('amp').value = m.amplitude; }, { throttle_rate: 50, queue_length: 1 });

// ---- microphone mute (the microphone node's `muted` parameter) --------------------------
const PARAM = { bool: 1, string: 4 };
const micNode = cfg.nodes.microphone;
async function refreshMute() {
  try {
    const r = await ros.callService(`${micNode}/get_parameters`,
      'rcl_interfaces/srv/GetParameters', { names: ['muted'] }, 5);
    const v = r.values[0];
    showMute(v && v.type === PARAM.bool ? v.bool_value : null);
  } catch (err) {
    showMute(null, `microphone: ${err.message}`);
  }
}
function showMute(muted, why = '') {
  const b = $('mute');
  b.setAttribute('aria-pressed', String(!!muted));
  b.textContent = muted ? 'Unmute microphone' : 'Mute microphone';
  note($('mute-state'), why || (muted === null ? 'no microphone' : muted ? 'muted' : 'listening'),
       !!why || !!muted);
}
$('mute').addEventListener('click', async () => {
  const want = $('mute').getAttribute('aria-pressed') !== 'true';
  try {
    const r = await ros.callService(`${micNode}/set_parameters`, 'rcl_interfaces/srv/SetParameters',
      { parameters: [{ name: 'muted', value: { type: PARAM.bool, bool_value: want } }] }, 5);
    const res = r.results[0];
    if (!res.successful) throw new Error(res.reason || 'refused');
    showMute(want);
  } catch (err) {
    showMute(null, `mute: ${err.message}`);
  }
});

// ---- eyes ------------------------------------------------------------------------------------
const canvas = $('eyes-canvas');
function drawEyes(img) {
  const ctx = canvas.getContext('2d');
  const raw = atob(img.data);
  const w = img.width;
  const h = img.height;
  const gap = 2;                                  // LEDs between the two 8x8 eyes
  const cell = Math.min(canvas.width / (w + gap), canvas.height / h);
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const [r, g, b] = [raw.charCodeAt(i), raw.charCodeAt(i + 1), raw.charCodeAt(i + 2)];
      ctx.fillStyle = r + g + b === 0 ? 'rgb(28,28,28)' : `rgb(${r},${g},${b})`;
      const cx = (x + (x >= w / 2 ? gap : 0) + 0.5) * cell;
      ctx.beginPath();
      ctx.arc(cx, (y + 0.5) * cell, cell * 0.42, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  canvas.dataset.frames = String(Number(canvas.dataset.frames || 0) + 1);
}
sub('EYE_IMAGE', drawEyes, { throttle_rate: 30, queue_length: 1 });
sub('EYE_STATE', (m) => {
  const hex = (c) => Math.round(Math.max(0, Math.min(1, c)) * 255).toString(16).padStart(2, '0');
  $('eyes-text').textContent = `${PATTERN_NAME[m.pattern] || m.pattern} #${hex(m.color.r)}${hex(m.color.g)}${hex(m.color.b)}`
    + ` · brightness ${m.brightness.toFixed(2)} · ${SOURCE_NAME[m.source] || m.source}`;
});
for (const [name, value] of Object.entries(C.EyePattern)) {
  $('eye-pattern').add(new Option(name.toLowerCase(), value, false, name.toLowerCase() === 'solid'));
}
$('eye-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const hex = $('eye-color').value;
  const seconds = Number($('eye-duration').value) || 0;
  ros.publish(T.EYE_COMMAND.name, T.EYE_COMMAND.type, {
    conversation_id: '', pattern: Number($('eye-pattern').value),
    color: { r: parseInt(hex.slice(1, 3), 16) / 255, g: parseInt(hex.slice(3, 5), 16) / 255,
             b: parseInt(hex.slice(5, 7), 16) / 255, a: 1.0 },
    brightness: Number($('eye-brightness').value), speed: 0.0,
    duration: { sec: Math.floor(seconds), nanosec: 0 },
  });
});

// ---- music -------------------------------------------------------------------------------------
const MUSIC = invert(C.MusicState);
sub('MUSIC_STATE', (m) => {
  const playing = m.state !== C.MusicState.STOPPED;
  $('music-title').textContent = playing ? `${MUSIC[m.state]}: ${m.track_title}` : 'stopped';
  $('music-pos').max = m.duration || 1;
  $('music-pos').value = playing ? m.position : 0;
  $('music-vol').value = m.volume;
  $('music-eff').value = m.effective_volume;
  $('music-duck').textContent = m.ducked ? `ducked to ${Math.round(100 * m.effective_volume)} %` : '';
}, { throttle_rate: 100, queue_length: 1 });
$('music-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const A = cfg.actions.MUSIC_PLAY;
  const goal = ros.sendGoal(A.name, A.type, { query: $('music-query').value, volume: -1.0,
                                                loop: false, conversation_id: '' });
  goal.result.then((r) => { if (r.values && r.values.error) $('music-title').textContent = r.values.error; })
    .catch(() => {});
});
$('music-stop').addEventListener('click', () => {
  const S = cfg.services.MUSIC_CONTROL;
  ros.callService(S.name, S.type, { command: C.MusicControl.STOP, volume: 0 }).catch(() => {});
});

// ---- mode and persona -------------------------------------------------------------------------
sub('MODE', (m) => {
  $('mode').textContent = MODE_NAME[m.mode] || m.mode;
  $('mode').dataset.mode = MODE_NAME[m.mode] || '';
  for (const b of $('modes').children) b.setAttribute('aria-pressed', String(Number(b.value) === m.mode));
  if (m.mode !== C.SystemMode.INTERACTIVE && !speaking) setActivity('idle');
});
for (const [name, value] of Object.entries(C.SystemMode)) {
  const b = document.createElement('button');
  b.textContent = name.toLowerCase();
  b.value = value;
  b.type = 'button';
  b.addEventListener('click', async () => {
    const S = cfg.services.SET_MODE;
    try {
      const r = await ros.callService(S.name, S.type, { mode: value, reason: 'dashboard' });
      note($('control-note'), r.message || '', !r.success);
    } catch (err) { note($('control-note'), `set_mode: ${err.message}`, true); }
  });
  $('modes').append(b);
}
for (const p of cfg.personas) $('persona-list').append(new Option(p, p));
sub('PERSONA', (m) => {
  $('persona').textContent = m.display_name || m.name;
  $('persona').dataset.name = m.name;
});
$('persona-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('persona-name').value.trim();
  if (!name) return;
  try {
    const r = await ros.callService(`${cfg.nodes.brain}/set_parameters`, 'rcl_interfaces/srv/SetParameters',
      { parameters: [{ name: 'persona', value: { type: PARAM.string, string_value: name } }] });
    const res = r.results[0];
    note($('control-note'), res.successful ? `persona ${name}` : `persona: ${res.reason}`, !res.successful);
  } catch (err) { note($('control-note'), `persona: ${err.message}`, true); }
});

// ---- type to the droid (as `chat` does) -----------------------------------------------
$('say-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('say-text').value.trim();
  if (!text) return;
  const cid = newId();
  const now = stampNow();
  ros.publish(T.TRANSCRIPTION.name, T.TRANSCRIPTION.type, {
    conversation_id: cid, utterance_id: 1, text,          // header: stamped by the bridge
    is_final: true, confidence: 1.0, language: 'en', audio_start: now, audio_end: now,
    source: 'dashboard' });
  ros.publish(T.TRACE.name, T.TRACE.type, {
    conversation_id: cid, utterance_id: 1, stage: C.TraceStage.final_transcript, input_stamp: now, node: 'dashboard', detail: 'dashboard' });
  $('say-text').value = '';
});

// ---- say a line (Speak action with feedback) -------------------------------------------
let speakGoal = null;
const SPEAK_RESULT = invert(C.SpeakResult);
$('speak-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('speak-text').value.trim();
  if (!text) return;
  const A = cfg.actions.SPEAK;
  $('speak-progress').value = 0;
  note($('speak-note'), 'speaking…');
  $('speak-cancel').disabled = false;
  const goal = ros.sendGoal(A.name, A.type, { text, conversation_id: '', utterance_id: 0, voice: '' },
    (fb) => {
      $('speak-progress').max = fb.duration_estimate || 1;
      $('speak-progress').value = fb.played;
      $('speak-note').dataset.feedback = String(Number($('speak-note').dataset.feedback || 0) + 1);
    });
  speakGoal = goal;
  goal.result.then((r) => {
    const v = r.values || {};
    const how = typeof v === 'object' ? SPEAK_RESULT[v.status] || 'done' : String(v);
    note($('speak-note'), `${how}${v.played !== undefined ? ` after ${v.played.toFixed(2)} s` : ''}${v.error ? `: ${v.error}` : ''}`,
         !r.succeeded && how !== 'interrupted');
  }).catch((err) => note($('speak-note'), err.message, true))
    .finally(() => { if (speakGoal === goal) $('speak-cancel').disabled = true; });
});
$('speak-cancel').addEventListener('click', () => { if (speakGoal) speakGoal.cancel(); });

// ---- health (/diagnostics) ------------------------------------------------------------------
const health = new Map();
const LEVEL = ['ok', 'warn', 'error', 'stale'];
sub('DIAGNOSTICS', (m) => {
  for (const s of m.status) {
    let row = health.get(s.name);
    if (!row) {
      row = document.createElement('li');
      row.innerHTML = '<span class="dot"></span><b></b> <span class="msg"></span>';
      health.set(s.name, row);
      const rows = [...health.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, r]) => r);
      $('health-list').replaceChildren(...rows);
    }
    row.dataset.level = LEVEL[s.level] || 'stale';
    row.dataset.name = s.name;
    row.dataset.seen = String(Date.now());
    row.children[1].textContent = s.name;
    row.children[2].textContent = s.message;
  }
});
setInterval(() => {                  // a node that stopped reporting turns grey
  for (const row of health.values()) {
    if (Date.now() - Number(row.dataset.seen) > 5000) row.dataset.level = 'stale';
  }
}, 1000);

// ---- latency waterfall (TraceEvents, as latency_report computes them) ----------------
const traceTurns = new Map();
sub('TRACE', (m) => {
  const key = `${m.conversation_id}#${m.utterance_id || 1}`;
  let t = traceTurns.get(key);
  if (!t) {
    t = { key, first: {} };
    traceTurns.set(key, t);
    while (traceTurns.size > 5) traceTurns.delete(traceTurns.keys().next().value);
  }
  const stage = STAGE_NAME[m.stage];
  if (stage && !(stage in t.first)) t.first[stage] = toSec(m.header.stamp);
  drawWaterfall();
});
function drawWaterfall() {
  const out = [];
  for (const t of [...traceTurns.values()].reverse()) {
    const times = Object.values(t.first);
    const t0 = Math.min(...times);
    const span = Math.max(0.001, Math.max(...times) - t0);
    const box = document.createElement('div');
    box.className = 'wf-turn';
    box.innerHTML = `<div class="wf-title">${t.key.slice(0, 6)}</div>`;
    for (const [label, a, b] of cfg.latency_intervals) {
      if (!(a in t.first) || !(b in t.first)) continue;
      const ms = (t.first[b] - t.first[a]) * 1000;
      const row = document.createElement('div');
      row.className = 'wf-row';
      row.dataset.interval = label;
      row.innerHTML = '<span class="wf-label"></span><span class="wf-track"><span class="wf-bar"></span></span><span class="wf-ms"></span>';
      row.children[0].textContent = label.replaceAll('_', ' ');
      const bar = row.children[1].firstChild;
      bar.style.marginLeft = `${(100 * (t.first[a] - t0)) / span}%`;
      bar.style.width = `${Math.max(0.5, (100 * (t.first[b] - t.first[a])) / span)}%`;
      row.children[2].textContent = `${ms.toFixed(0)} ms`;
      box.append(row);
    }
    if (box.children.length > 1) out.push(box);
  }
  $('waterfall').replaceChildren(...out);
}
