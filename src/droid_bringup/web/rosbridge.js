// A tiny rosbridge v2 client (the subset the dashboard uses), reconnecting by itself:
// subscriptions and advertisements are made again on every new connection.
export class Rosbridge extends EventTarget {
  constructor(url, { minDelay = 250, maxDelay = 4000 } = {}) {
    super();
    Object.assign(this, { url, minDelay, maxDelay, delay: minDelay, connected: false });
    this.subs = new Map();      // id -> {req, cb}
    this.pubs = new Map();      // topic -> advertise request
    this.calls = new Map();     // id -> {resolve, reject}
    this.goals = new Map();     // id -> {resolve, reject, onFeedback}
    this.seq = 0;
    this.connect();
  }

  nextId(kind) { return `${kind}:${++this.seq}:${Date.now()}`; }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.connected = true;
      this.delay = this.minDelay;
      for (const req of this.pubs.values()) this.send(req);
      for (const { req } of this.subs.values()) this.send(req);
      this.emit('connection', true);
    };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      this.handle(m);
    };
    ws.onclose = () => {
      const was = this.connected;
      this.connected = false;
      for (const p of [...this.calls.values(), ...this.goals.values()]) {
        p.reject(new Error('connection lost'));
      }
      this.calls.clear();
      this.goals.clear();
      if (was) this.emit('connection', false);
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, this.maxDelay);
    };
    ws.onerror = () => {};    // a close event follows
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  handle(m) {
    if (m.op === 'publish') {
      for (const { req, cb } of this.subs.values()) if (req.topic === m.topic) cb(m.msg);
    } else if (m.op === 'service_response') {
      const p = this.calls.get(m.id);
      if (!p) return;
      this.calls.delete(m.id);
      if (m.result) p.resolve(m.values); else p.reject(new Error(String(m.values)));
    } else if (m.op === 'action_feedback') {
      const g = this.goals.get(m.id);
      if (g && g.onFeedback) g.onFeedback(m.values);
    } else if (m.op === 'action_result') {
      const g = this.goals.get(m.id);
      if (!g) return;
      this.goals.delete(m.id);
      g.resolve({ status: m.status, succeeded: m.result, values: m.values });
    } else if (m.op === 'status') {
      this.emit('status', m);
    }
  }

  // Calls cb(msg) for every message; returns a function that unsubscribes.
  subscribe(topic, type, cb, { throttle_rate = 0, queue_length = 0 } = {}) {
    const id = this.nextId(`subscribe:${topic}`);
    const req = { op: 'subscribe', id, topic, type, throttle_rate, queue_length };
    this.subs.set(id, { req, cb });
    this.send(req);
    return () => { this.subs.delete(id); this.send({ op: 'unsubscribe', id, topic }); };
  }

  publish(topic, type, msg) {
    if (!this.pubs.has(topic)) {
      const req = { op: 'advertise', id: this.nextId(`advertise:${topic}`), topic, type };
      this.pubs.set(topic, req);
      this.send(req);
    }
    return this.send({ op: 'publish', topic, msg });
  }

  callService(service, type, args = {}, timeout = undefined) {
    return new Promise((resolve, reject) => {
      const id = this.nextId(`call_service:${service}`);
      this.calls.set(id, { resolve, reject });
      if (!this.send({ op: 'call_service', id, service, type, args, timeout })) {
        this.calls.delete(id);
        reject(new Error('not connected'));
      }
    });
  }

  // -> {id, result: Promise<{status, succeeded, values}>, cancel()}
  sendGoal(action, actionType, args = {}, onFeedback = null) {
    const id = this.nextId(`send_action_goal:${action}`);
    const result = new Promise((resolve, reject) => {
      this.goals.set(id, { resolve, reject, onFeedback });
      if (!this.send({ op: 'send_action_goal', id, action, action_type: actionType, args,
                       feedback: !!onFeedback })) {
        this.goals.delete(id);
        reject(new Error('not connected'));
      }
    });
    return { id, result, cancel: () => this.send({ op: 'cancel_action_goal', id, action }) };
  }
}
