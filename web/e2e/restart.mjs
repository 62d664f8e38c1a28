// One browser profile across a server restart (tests/api/web.rs runs this twice on the same
// profile directory, once per session of one live stream): hls.js plays the stream's plain and
// LL playlists, and the picture must be the colour the current session publishes — never the
// previous session's, which the profile's HTTP cache holds (issue #16: segment URLs reused
// across restarts showed the earlier lesson).
//
//   WM_BASE, WM_PROFILE (user data dir), WM_URLS (JSON list of playlist URLs),
//   WM_EXPECT (red | blue)
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { env, log } from './lib.mjs';

const require = createRequire(import.meta.url);
const hlsJs = readFileSync(require.resolve('hls.js/dist/hls.min.js'), 'utf8');
const base = env('WM_BASE');
const expect = env('WM_EXPECT');
const urls = JSON.parse(env('WM_URLS'));

const ctx = await chromium.launchPersistentContext(env('WM_PROFILE'), {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
  ],
});
try {
  // A page of the server's origin (same-origin requests, the cache partition the app uses).
  await ctx.route(`${base}/__e2e/player.html`, (r) =>
    r.fulfill({ contentType: 'text/html', body: '<!doctype html><video muted playsinline></video>' }),
  );
  await ctx.route(`${base}/__e2e/hls.js`, (r) => r.fulfill({ contentType: 'application/javascript', body: hlsJs }));
  for (const url of urls) {
    const page = await ctx.newPage();
    await page.goto(`${base}/__e2e/player.html`);
    await page.addScriptTag({ url: `${base}/__e2e/hls.js` });
    const colour = await page.evaluate(
      (src) =>
        new Promise((resolve, reject) => {
          const video = document.querySelector('video');
          const hls = new Hls({ lowLatencyMode: true });
          hls.on(Hls.Events.ERROR, (_e, d) => d.fatal && reject(new Error(`hls.js: ${d.details}`)));
          hls.loadSource(src);
          hls.attachMedia(video);
          video.play().catch(() => {});
          const canvas = document.createElement('canvas');
          const c = canvas.getContext('2d', { willReadFrequently: true });
          let start = null;
          const look = () => {
            if (video.currentTime > 0 && start === null) start = video.currentTime;
            // Two seconds of playback, then the picture's centre.
            if (start !== null && video.currentTime - start > 2 && video.videoWidth) {
              canvas.width = video.videoWidth;
              canvas.height = video.videoHeight;
              c.drawImage(video, 0, 0);
              const [r, g, b] = c.getImageData(canvas.width >> 1, canvas.height >> 1, 1, 1).data;
              resolve(r > 150 && b < 100 ? 'red' : b > 150 && r < 100 ? 'blue' : `rgb(${r},${g},${b})`);
              return;
            }
            setTimeout(look, 100);
          };
          look();
          setTimeout(() => reject(new Error('no playback within 30 s')), 30_000);
        }),
      url,
    );
    log(`${url.split('/').pop()}: the picture is ${colour} (expected ${expect})`);
    if (colour !== expect) throw new Error(`${url}: showed ${colour}, the session publishes ${expect}`);
    await page.close();
  }
  console.log('restart scenario passed');
} finally {
  await ctx.close();
}
