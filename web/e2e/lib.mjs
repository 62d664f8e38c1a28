// Shared by the browser tests: Debian's Chromium through playwright-core (the Playwright
// browser download does not work here), a fake camera and microphone, screenshots, the
// accessibility check (axe-core) and the missing-translation check.
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (the Rust test that runs this script sets it)`);
  return v;
};

export function log(...args) {
  console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...args);
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
}

export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 860 };

export async function context(browser, { locale = 'en-US', viewport = DESKTOP, timezoneId = undefined } = {}) {
  const ctx = await browser.newContext({
    baseURL: env('WM_BASE'),
    locale,
    viewport,
    timezoneId,
    permissions: ['camera', 'microphone'],
  });
  ctx.setDefaultTimeout(20_000);
  return ctx;
}

/** Collect the page's uncaught errors and console errors into `errors` (the caller's list,
 * checked at the end of the scenario; a copy taken now would stay empty). */
export function watch(page, name, errors) {
  page.on('pageerror', (e) => errors.push(`${name}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource|WebSocket/.test(m.text())) {
      errors.push(`${name}: console error: ${m.text()}`);
    }
  });
  // Confirmations are accepted; prompts get `page.promptAnswer` when the scenario set one,
  // else a fixed answer (a payout's transfer reference).
  page.on('dialog', (d) => void d.accept(d.type() === 'prompt' ? (page.promptAnswer ?? 'E2E-REF-1') : undefined));
  return errors;
}

let shots = 0;
export async function screenshot(page, name) {
  const dir = process.env.WM_SCREENSHOTS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  shots += 1;
  await page.screenshot({ path: join(dir, `${name}.png`), fullPage: false });
}

/** A screenshot of the top of the page (where a form submit may have scrolled away from). */
export async function screenshotTop(page, name) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await screenshot(page, name);
}

/** No `⟦key⟧` on the page: every string came through the catalogue of its language. */
export async function assertTranslated(page, where) {
  const missing = await page.evaluate(() => document.body.innerText.match(/⟦[^⟧]+⟧/g));
  if (missing) throw new Error(`${where}: untranslated keys ${missing.join(', ')}`);
}

/** axe-core on the current page: no serious or critical violation. */
export async function assertAccessible(page, where) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.length} × ${v.nodes[0]?.target?.join(' ')} — ${v.help}`);
  });
  if (result.length) throw new Error(`${where}: accessibility violations:\n  ${result.join('\n  ')}`);
  log(`axe: ${where}: no serious or critical violations`);
}

export async function login(page, email, password) {
  await page.goto('/login');
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', password);
  await page.click('form button[type=submit]');
  await page.waitForURL(/\/courses/);
}

/** currentTime of the page's main video. */
export const videoTime = (page) => page.evaluate(() => document.querySelector('video.player-video')?.currentTime ?? -1);

/** Wait until the video has played `seconds` of media, failing on a player error. */
export async function assertPlays(page, seconds, where) {
  await page.waitForSelector('.player[data-state=playing]', { timeout: 45_000 });
  const start = await videoTime(page);
  const deadline = Date.now() + (seconds + 25) * 1000;
  for (;;) {
    const state = await page.getAttribute('.player', 'data-state');
    if (state === 'error') {
      const text = await page.textContent('.player-overlay');
      throw new Error(`${where}: player error: ${text}`);
    }
    const now = await videoTime(page);
    if (now - start >= seconds) {
      log(`${where}: played ${(now - start).toFixed(1)} s (${start.toFixed(1)} → ${now.toFixed(1)})`);
      return;
    }
    if (Date.now() > deadline) {
      const v = await page.evaluate(() => {
        const e = document.querySelector('video.player-video');
        const b = e.buffered;
        return { paused: e.paused, readyState: e.readyState, networkState: e.networkState, error: e.error?.message,
          buffered: [...Array(b.length).keys()].map((i) => [b.start(i), b.end(i)]), src: e.currentSrc };
      });
      throw new Error(`${where}: only ${(now - start).toFixed(1)} s played; video: ${JSON.stringify(v)}`);
    }
    await page.waitForTimeout(500);
  }
}

/** Log in through the API (no cookie): an access token, for checking what the API refuses. */
export async function apiToken(email, password) {
  const r = await fetch(new URL('/api/v1/auth/login', env('WM_BASE')), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  if (!r.ok) throw new Error(`API login of ${email}: ${r.status}`);
  return (await r.json()).access_token;
}

/** The status of an API GET with a bearer token. */
export async function apiStatus(path, token) {
  const r = await fetch(new URL(path, env('WM_BASE')), { headers: { authorization: `Bearer ${token}` } });
  return r.status;
}

/** Switch the page's language with the header's selector. */
export async function setLanguage(page, locale) {
  await page.selectOption('[data-testid=language]', locale);
  await page.waitForFunction((l) => document.documentElement.lang === l, locale);
}

/** Wait until `selector`'s text matches `re` (polling the page). */
export async function waitText(page, selector, re, timeout = 20_000) {
  await page.waitForFunction(
    ([s, src, flags]) => new RegExp(src, flags).test(document.querySelector(s)?.textContent ?? ''),
    [selector, re.source, re.flags],
    { timeout },
  );
}
