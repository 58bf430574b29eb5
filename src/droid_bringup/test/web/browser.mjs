// Drives the dashboard in headless Chromium (the Debian browser) through playwright-core.
// Commands come as JSON lines on stdin, answers go as JSON lines on stdout:
//   {"cmd": "goto", "url": ...}        {"cmd": "viewport", "width": .., "height": ..}
//   {"cmd": "fill", "selector": .., "value": ..}   {"cmd": "click", "selector": ..}
//   {"cmd": "wait", "js": "<expression>", "timeout": ms}   {"cmd": "eval", "js": ..}
//   {"cmd": "screenshot", "path": .., "fullPage": true}    {"cmd": "errors"}  {"cmd": "quit"}
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const errors = [];
page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });

const handlers = {
  goto: (c) => page.goto(c.url, { waitUntil: 'load' }).then((r) => r && r.status()),
  viewport: (c) => page.setViewportSize({ width: c.width, height: c.height }),
  fill: (c) => page.fill(c.selector, c.value),
  click: (c) => page.click(c.selector),
  select: (c) => page.selectOption(c.selector, c.value),
  // polled from here: page.waitForFunction would eval() inside the page, which the
  // dashboard's Content-Security-Policy (rightly) forbids
  wait: async (c) => {
    const deadline = Date.now() + (c.timeout || 30000);
    for (;;) {
      const value = await page.evaluate(c.js).catch((e) => { throw e; });
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`timeout waiting for: ${c.js}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  },
  eval: (c) => page.evaluate(c.js),
  screenshot: (c) => page.screenshot({ path: c.path, fullPage: !!c.fullPage }).then(() => c.path),
  errors: () => errors.splice(0),
};

const rl = createInterface({ input: process.stdin });
console.log(JSON.stringify({ ok: true, value: 'ready' }));
for await (const line of rl) {
  const c = JSON.parse(line);
  if (c.cmd === 'quit') break;
  try {
    const value = await handlers[c.cmd](c);
    console.log(JSON.stringify({ ok: true, value: value === undefined ? null : value }));
  } catch (err) {
    console.log(JSON.stringify({ ok: false, error: String(err.message || err) }));
  }
}
await browser.close();
process.exit(0);
