// Time to first frame of a live stream: the classroom page vs a plain hls.js page on the same
// stream, both same-origin, each loaded WM_LOADS times in a fresh page; median and spread.
// Run by bench/web.sh (which starts the server, the publisher and the student account).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(new URL('../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const hlsJs = readFileSync(require.resolve('hls.js/dist/hls.min.js'), 'utf8');

const base = process.env.WM_BASE;
const lesson = process.env.WM_LESSON_ID;
const loads = Number(process.env.WM_LOADS ?? 10);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--autoplay-policy=no-user-gesture-required'],
});
// First frame presented, measured from the navigation start of the page.
const firstFrame = () =>
  new Promise((resolve) => {
    const arm = () => {
      const v = document.querySelector('video');
      if (!v) return setTimeout(arm, 5);
      v.requestVideoFrameCallback(() => resolve(performance.now()));
    };
    arm();
  });

const ctx = await browser.newContext({ baseURL: base });
const login = await ctx.newPage();
await login.goto('/login');
await login.fill('input[name=email]', process.env.WM_EMAIL);
await login.fill('input[name=password]', process.env.WM_PASSWORD);
await login.click('form button[type=submit]');
await login.waitForURL(/\/courses/);
// The plain page needs a signed URL: ask the API like the app does.
const token = await login.evaluate(async (id) => {
  // The app keeps the access token in memory only: refresh once through the cookie.
  const csrf = document.cookie.match(/wm_csrf=([^;]+)/)[1];
  const t = await (await fetch('/api/v1/auth/refresh', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf }, body: '{}' })).json();
  const p = await (await fetch(`/api/v1/lessons/${id}/playback`, { headers: { authorization: `Bearer ${t.access_token}` } })).json();
  return p.live.hls_url;
}, lesson);
await login.close();
await ctx.route('**/__bench/plain.html', (r) =>
  r.fulfill({ contentType: 'text/html', body: `<!doctype html><video muted autoplay playsinline></video><script src="/__bench/hls.js"></script><script>const h=new Hls({lowLatencyMode:true});h.loadSource(${JSON.stringify(token)});h.attachMedia(document.querySelector('video'));</script>` }),
);
await ctx.route('**/__bench/hls.js', (r) => r.fulfill({ contentType: 'application/javascript', body: hlsJs }));

const results = { classroom: [], plain: [] };
for (let i = 0; i < loads; i++) {
  for (const [name, url] of [['classroom', `/lessons/${lesson}`], ['plain', '/__bench/plain.html']]) {
    const page = await ctx.newPage();
    await page.goto(url);
    const ms = await page.evaluate(firstFrame);
    results[name].push(ms);
    await page.close();
  }
}
for (const [name, xs] of Object.entries(results)) {
  console.log(`  ${name}: median ${median(xs).toFixed(0)} ms, min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)} (${xs.length} loads)`);
}
console.log(`  ratio classroom / plain: ${(median(results.classroom) / median(results.plain)).toFixed(2)}`);
await browser.close();
