// Glass-to-glass latency in Chromium: each shown frame's clock stamp (drawn into the picture by
// bench/clock_source.py, or by the WHIP publisher page) against the wall clock when Chromium
// presents the frame (requestVideoFrameCallback's expectedDisplayTime; for WHEP, when the
// decoded frame reaches the page through MediaStreamTrackProcessor, since headless Chromium
// draws a WebRTC <video> into a canvas as black). Publisher and player share this machine's
// clock. Run by bench/latency.sh.
//
//   WM_CASES='[{"name":"ll","url":"http://…/ll.m3u8","hls":{"lowLatencyMode":true}}]' WM_SECONDS=60 node bench/latency.mjs
//
// Prints one JSON line per case: frames read, median / p90 / max latency (ms), time to first
// frame (ms from page start), stalls (waiting events after the first frame), frames whose
// stamp could not be read (and the last reading error), the picture size.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(new URL('../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const hlsJs = readFileSync(require.resolve('hls.js/dist/hls.min.js'), 'utf8');

const cases = JSON.parse(process.env.WM_CASES);
const seconds = Number(process.env.WM_SECONDS ?? 60);
const quantile = (xs, q) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))] : null);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--autoplay-policy=no-user-gesture-required', '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding',
  ],
});

// In the page: play `url` (hls.js with `config`, or WHEP), read every presented frame's stamp.
function measure({ url, config, whep, seconds }) {
  const video = document.querySelector('video');
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const samples = [];
  const t0 = performance.now();
  let first = null;
  let stalls = 0;
  video.addEventListener('waiting', () => {
    if (first !== null) stalls += 1;
  });
  // The stamp in a picture: `source` is the <video>, or a WebCodecs VideoFrame (WHEP: headless
  // Chromium draws a WebRTC <video> into a canvas as black, so its frames are read from the
  // track itself).
  const read = (source, w, h) => {
    if (!w) return null;
    if (canvas.width !== w) { canvas.width = w; canvas.height = h; }
    ctx.drawImage(source, 0, 0, w, h);
    const block = w / 32, band = Math.floor(h / 18);
    const rowAt = (y) => {
      const px = ctx.getImageData(0, y, w, 1).data;
      let v = 0;
      for (let i = 0; i < 32; i++) {
        const x = Math.floor(i * block + block / 2);
        v = v * 2 + (px[x * 4] > 128 ? 1 : 0);
      }
      return v;
    };
    const a = rowAt(Math.floor(band / 2));
    const b = rowAt(band + Math.floor(band / 2) + Math.floor(band / 2));
    return a === b ? a : null;
  };
  let unread = 0;
  let readError = null;
  // One frame shown at `shown` (ms since the epoch): read its stamp, keep its latency.
  const record = (shown, source, w, h) => {
    if (first === null) first = performance.now() - t0;
    let stamp = null;
    try {
      stamp = read(source, w, h);
    } catch (e) {
      readError = String(e);
    }
    if (stamp === null) {
      unread += 1;
      return;
    }
    // The stamp is the send time modulo 2^32 ms.
    let lat = (shown % 2 ** 32) - stamp;
    if (lat < -(2 ** 31)) lat += 2 ** 32;
    if (lat > -1000 && lat < 60_000) samples.push(lat);
  };
  const onFrame = (_now, meta) => {
    if (whep) return;
    record(performance.timeOrigin + meta.expectedDisplayTime, video, video.videoWidth, video.videoHeight);
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  if (whep) {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    // The offer has no msid: tracks arrive without a stream. One stream for both.
    const stream = new MediaStream();
    pc.ontrack = (e) => {
      stream.addTrack(e.track);
      video.srcObject = stream;
      if (e.track.kind !== 'video') return;
      // Each decoded frame as it reaches the page (the <video> shows it at the next vsync,
      // at most ~17 ms later: the figure is that much early at worst).
      const reader = new MediaStreamTrackProcessor({ track: e.track }).readable.getReader();
      (async () => {
        for (;;) {
          const { value: frame, done } = await reader.read();
          if (done) return;
          record(performance.timeOrigin + performance.now(), frame, frame.displayWidth, frame.displayHeight);
          frame.close();
        }
      })();
    };
    (async () => {
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); else pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); });
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: pc.localDescription.sdp });
      await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    })();
  } else {
    const hls = new Hls(config);
    hls.loadSource(url);
    hls.attachMedia(video);
  }
  video.muted = true;
  video.play().catch(() => {});
  return new Promise((resolve) =>
    setTimeout(() => resolve({ samples, first, stalls, unread, readError, size: [video.videoWidth, video.videoHeight] }), seconds * 1000),
  );
}

// A WHIP publisher in a page of its own: a canvas with the clock drawn as the same bit pattern
// (clock_source.py's layout), captured at 30 fps and sent to WHIP with the stream key.
function publishWhip({ url, key }) {
  // 640x360: the page encodes in software on the machine that also decodes and serves, and
  // what is measured is the server's delay, not the encoder's appetite.
  const w = 640, h = 360, block = w / 32, band = Math.floor(h / 18);
  const canvas = document.createElement('canvas');
  canvas.width = w; canvas.height = h;
  document.body.append(canvas);
  const ctx = canvas.getContext('2d');
  let n = 0;
  const draw = () => {
    const stamp = Date.now() % 2 ** 32;
    ctx.fillStyle = '#6e6e6e';
    ctx.fillRect(0, 0, w, h);
    ctx.fillStyle = '#c8c8c8';
    ctx.fillRect((n++ * 8) % w, 3 * band, 40, h - 3 * band);
    for (let i = 0; i < 32; i++) {
      ctx.fillStyle = Math.floor(stamp / 2 ** (31 - i)) % 2 ? '#ebebeb' : '#101010';
      ctx.fillRect(i * block, 0, block, band);
      ctx.fillRect(i * block, band + Math.floor(band / 2), block, band);
    }
  };
  setInterval(draw, 1000 / 30);
  draw();
  const stream = canvas.captureStream(30);
  const pc = new RTCPeerConnection();
  const audio = new AudioContext();
  const osc = audio.createOscillator();
  const dest = audio.createMediaStreamDestination();
  osc.connect(dest);
  osc.start();
  pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly' });
  pc.addTransceiver(dest.stream.getAudioTracks()[0], { direction: 'sendonly' });
  return (async () => {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); else pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); });
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: `Bearer ${key}` }, body: pc.localDescription.sdp });
    if (res.status !== 201) throw new Error(`WHIP answered ${res.status}: ${await res.text()}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    window.__pc = pc;
  })();
}

try {
  if (process.env.WM_WHIP_URL) {
    const pub = await browser.newPage();
    const origin = new URL(process.env.WM_WHIP_URL).origin;
    await pub.route(`${origin}/__bench/pub.html`, (r) => r.fulfill({ contentType: 'text/html', body: '<!doctype html><body></body>' }));
    await pub.goto(`${origin}/__bench/pub.html`);
    await pub.evaluate(publishWhip, { url: process.env.WM_WHIP_URL, key: process.env.WM_WHIP_KEY });
    // Live, with a few segments in the playlist, before the players start.
    await pub.waitForTimeout(10_000);
  }
  for (const c of cases) {
    const page = await browser.newPage();
    const origin = new URL(c.url).origin;
    await page.route(`${origin}/__bench/page.html`, (r) =>
      r.fulfill({ contentType: 'text/html', body: '<!doctype html><body style="margin:0"><video playsinline muted></video></body>' }),
    );
    await page.route(`${origin}/__bench/hls.js`, (r) => r.fulfill({ contentType: 'application/javascript', body: hlsJs }));
    await page.goto(`${origin}/__bench/page.html`);
    await page.addScriptTag({ url: `${origin}/__bench/hls.js` });
    const r = await page.evaluate(measure, { url: c.url, config: c.hls ?? {}, whep: !!c.whep, seconds });
    const s = r.samples;
    console.log(JSON.stringify({
      case: c.name,
      frames: s.length,
      median_ms: quantile(s, 0.5),
      p90_ms: quantile(s, 0.9),
      max_ms: s.length ? Math.max(...s) : null,
      first_frame_ms: r.first === null ? null : Math.round(r.first),
      stalls: r.stalls,
      unread: r.unread,
      read_error: r.readError,
      size: r.size,
    }));
    await page.close();
  }
} finally {
  await browser.close();
}
