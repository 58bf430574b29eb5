// A roslibjs (npm `roslib`) client against the droid's rosbridge websocket: what a
// droid builder's own roslib page would do. Prints one JSON line per check, exits 0 when
// all passed.   node roslib_client.mjs ws://127.0.0.1:9090/
import * as ROSLIB from 'roslib';

const url = process.argv[2];
const ros = new ROSLIB.Ros({ url });
const out = (o) => console.log(JSON.stringify(o));
const timeout = (ms, what) => new Promise((_, reject) =>
  setTimeout(() => reject(new Error(`timeout: ${what}`)), ms));
const once = (topic) => new Promise((resolve) => {
  const cb = (m) => { topic.unsubscribe(cb); resolve(m); };
  topic.subscribe(cb);
});

async function main() {
  await Promise.race([new Promise((resolve, reject) => {
    ros.on('connection', resolve);
    ros.on('error', reject);
  }), timeout(20000, 'connect')]);
  out({ check: 'connected' });

  // subscribe: the latched system mode arrives at once
  const mode = new ROSLIB.Topic({ ros, name: '/mode', messageType: 'droid_msgs/msg/SystemMode' });
  const m = await Promise.race([once(mode), timeout(20000, 'mode')]);
  out({ check: 'subscribe', mode: m.mode });

  // call_service (no type given: the bridge finds it in the graph)
  const setMode = new ROSLIB.Service({ ros, name: '/set_mode', serviceType: 'droid_msgs/srv/SetMode' });
  const res = await Promise.race([new Promise((resolve, reject) =>
    setMode.callService({ mode: 1, reason: 'roslib' }, resolve, reject)), timeout(20000, 'set_mode')]);
  out({ check: 'call_service', success: res.success, mode: res.mode });

  // advertise + publish: an eye command shows on eyes/state
  const state = new ROSLIB.Topic({ ros, name: '/eyes/state', messageType: 'droid_msgs/msg/EyeState' });
  const seen = new Promise((resolve) => state.subscribe((s) => {
    if (s.source === 4 && s.color.b > 0.9 && s.color.r < 0.1) resolve(s);
  }));
  const cmd = new ROSLIB.Topic({ ros, name: '/eyes/command', messageType: 'droid_msgs/msg/EyeCommand' });
  const send = () => cmd.publish({ pattern: 1, color: { r: 0, g: 0, b: 1, a: 1 }, brightness: 1.0,
                                   speed: 0, duration: { sec: 30, nanosec: 0 } });
  send();
  const timer = setInterval(send, 1000);      // discovery of a new publisher takes a moment
  const s = await Promise.race([seen, timeout(20000, 'eye state')]);
  clearInterval(timer);
  out({ check: 'publish', pattern: s.pattern, source: s.source });

  // send_action_goal with feedback: the droid says a line
  const speak = new ROSLIB.Action({ ros, name: '/voice/speak', actionType: 'droid_msgs/action/Speak' });
  let feedback = 0;
  const result = await Promise.race([new Promise((resolve, reject) =>
    speak.sendGoal({ text: 'Hello from roslib, this is a test line.' }, resolve,
                   () => { feedback += 1; }, reject)), timeout(60000, 'speak')]);
  out({ check: 'action', status: result.status, played: result.played, feedback });
  ros.close();
}

main().then(() => process.exit(0)).catch((err) => {
  out({ error: String(err && err.message ? err.message : err) });
  process.exit(1);
});
