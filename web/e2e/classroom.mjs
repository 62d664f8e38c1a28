// The classroom end to end, as a teacher and a student would do it (docs/web.md, "Tests"):
//   teacher logs in → opens the lesson → goes live (WM_MODE=whip: from the browser with the fake
//   camera; rtmp: ffmpeg publishes with the stream key, like OBS) → a student registers in
//   another browser context, buys the course with the sandbox provider, opens the classroom and
//   the video plays ≥ 10 s → the student chats, the teacher sees it → the student reloads: still
//   signed in, the chat resumes without duplicates → the access token expires and is refreshed
//   unnoticed → the teacher ends the lesson → the student's page becomes the replay, which plays
//   and seeks.
// Live interaction (docs/interaction.md, steps in interaction.mjs): the teacher opens a poll, the
// student answers, the teacher sees the count and shows the results to the student; the
// student asks an anonymous question, the teacher sees who asked and answers it; a reaction
// reaches the teacher's counter; a raised hand is called on. After the lesson the replay's
// chat timeline lists the student's message (the classroom's replay and the recording page).
import { spawn } from 'node:child_process';
import {
  assertAccessible, assertPlays, assertTranslated, context, env, launch, log, login, PHONE, screenshot, videoTime, watch,
} from './lib.mjs';
import { liveInteraction, replayTimeline } from './interaction.mjs';

const mode = env('WM_MODE');
const lessonId = env('WM_LESSON_ID');
const courseId = env('WM_COURSE_ID');
const accessTtl = Number(process.env.WM_ACCESS_TTL_S ?? '0');
const shots = mode === 'whip'; // one set of screenshots is enough

const browser = await launch();
let ffmpeg = null;
const errors = [];
const pages = {}; // for the diagnostics of a failure
try {
  // ---- teacher ----
  const teacherCtx = await context(browser, { locale: 'en-US' });
  const teacher = await teacherCtx.newPage();
  pages.teacher = teacher;
  watch(teacher, 'teacher', errors);
  await teacher.goto('/login');
  if (shots) await assertAccessible(teacher, 'login');
  await login(teacher, env('WM_TEACHER_EMAIL'), env('WM_TEACHER_PASSWORD'));
  log('teacher signed in');
  await teacher.goto(`/lessons/${lessonId}`);
  await teacher.waitForSelector('.teacher');
  if (mode === 'whip') {
    // The fake camera feeds the preview; go live over WHIP with a publish token.
    await teacher.waitForFunction(() => {
      const v = document.querySelector('video.preview');
      return v && v.srcObject && v.videoWidth > 0;
    });
    if (shots) await screenshot(teacher, 'teacher-preview-en');
    await teacher.click('.golive button.button:not(.button-danger)');
  } else {
    const args = ['-hide_banner', '-loglevel', 'error', '-re',
      '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25',
      '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
      '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '50', '-pix_fmt', 'yuv420p',
      '-c:a', 'aac', '-b:a', '96k', '-f', 'flv', env('WM_RTMP_URL')];
    ffmpeg = spawn('ffmpeg', args, { stdio: ['ignore', 'inherit', 'inherit'] });
    log('ffmpeg publishing over RTMP');
  }
  await teacher.waitForSelector('[data-lesson-status=live]', { timeout: 45_000 });
  await teacher.waitForFunction(() => document.querySelector('[data-testid=health-state]')?.textContent === 'On air', null, { timeout: 30_000 });
  log('lesson is live');
  if (shots) await screenshot(teacher, 'teacher-live-en');

  // ---- student: register, buy, watch ----
  const studentCtx = await context(browser, { locale: 'zh-CN' });
  const student = await studentCtx.newPage();
  pages.student = student;
  watch(student, 'student', errors);
  const email = `student-${Date.now()}-${mode}@example.com`;
  await student.goto('/register');
  await assertTranslated(student, 'register (zh-CN)');
  if (shots) await assertAccessible(student, 'register');
  await student.fill('input[name=display_name]', '小明');
  await student.fill('input[name=email]', email);
  await student.fill('input[name=password]', 'correct horse battery staple');
  await student.click('form button[type=submit]');
  await student.waitForURL(/\/courses$/);
  await student.waitForSelector('.card');
  await assertTranslated(student, 'catalogue (zh-CN)');
  if (shots) {
    await screenshot(student, 'catalogue-zh');
    await assertAccessible(student, 'catalogue');
  }
  await student.goto(`/courses/${courseId}`);
  await student.waitForSelector('.checkout');
  await assertTranslated(student, 'course (zh-CN)');
  if (shots) {
    await screenshot(student, 'course-checkout-zh');
    await assertAccessible(student, 'course page');
  }
  await student.check('input[name=provider][value=sandbox]');
  await student.click('.checkout > button.button');
  // The sandbox calls back like a provider; the page polls the order, then shows the lessons.
  await student.waitForSelector('.pill-ok', { timeout: 30_000 });
  log('student bought the course');
  await student.goto(`/lessons/${lessonId}`);
  await assertPlays(student, 10, 'student live');
  // WebRTC first: the classroom plays the lesson over WHEP (H.264 as published, Opus audio).
  const playMode = await student.getAttribute('.player', 'data-mode');
  if (playMode !== 'webrtc') throw new Error(`the classroom plays over ${playMode}, not WebRTC`);
  await student.waitForSelector('.player .badge-realtime');
  const tracks = await student.evaluate(() =>
    document.querySelector('video.player-video').srcObject?.getTracks().map((t) => t.kind).sort().join(','),
  );
  if (tracks !== 'audio,video') throw new Error(`WebRTC playback has tracks ${tracks}`);
  log('student plays the lesson over WebRTC (WHEP)');

  // Without WebRTC (a browser or network that cannot do it), the same page falls back to
  // Low-Latency HLS: the LL playlist (blocking reloads, parts), at most a few seconds behind
  // by the clock (EXT-X-PROGRAM-DATE-TIME against now; bench/ measures glass to glass).
  const hlsPage = await studentCtx.newPage();
  watch(hlsPage, 'student without WebRTC', errors);
  await hlsPage.addInitScript(() => {
    delete window.RTCPeerConnection;
  });
  const llRequests = [];
  hlsPage.on('request', (r) => {
    if (/\/hls\/live\/.*(ll\.m3u8|ll-)/.test(r.url())) llRequests.push(r.url());
  });
  await hlsPage.goto(`/lessons/${lessonId}`);
  await assertPlays(hlsPage, 6, 'student live without WebRTC');
  if ((await hlsPage.getAttribute('.player', 'data-mode')) !== 'hls') throw new Error('no fallback to HLS');
  if (!llRequests.some((u) => /ll\.m3u8\?.*_HLS_msn=\d+&_HLS_part=\d+/.test(u))) {
    throw new Error(`no blocking LL-HLS reload among ${llRequests.length} LL requests`);
  }
  if (!llRequests.some((u) => /ll-\d+\.\d+\.m4s/.test(u))) throw new Error('no LL-HLS part fetched');
  const latencies = [];
  for (let i = 0; i < 10; i++) {
    await student.waitForTimeout(500);
    const l = Number(await hlsPage.getAttribute('.player', 'data-latency'));
    if (l > 0) latencies.push(l);
  }
  latencies.sort((a, b) => a - b);
  const median = latencies[Math.floor(latencies.length / 2)];
  log(`LL-HLS latency by the clock: median ${median?.toFixed(2)} s of ${latencies.length} readings`);
  if (!(median < 4)) throw new Error(`LL-HLS plays ${median} s behind the live edge`);
  await hlsPage.close();
  if (mode === 'whip') await switchWhileLive(teacher, student);
  await assertTranslated(student, 'classroom (zh-CN)');
  if (shots) {
    await screenshot(student, 'classroom-live-zh');
    await assertAccessible(student, 'classroom (live)');
  }

  // ---- chat both ways ----
  const hello = `你好，老师！ ${mode}`;
  await student.fill('.chat-form input', hello);
  await student.press('.chat-form input', 'Enter');
  // The full suite loads both cores (both classroom scenarios and every other test at once):
  // allow deliveries 45 s there (Playwright's default 20 s once ran out); a lost message still fails.
  await teacher.waitForFunction((t) => document.querySelector('[data-testid=chat-list]')?.innerText.includes(t), hello, { timeout: 45_000 });
  log('teacher saw the student message');
  const reply = `Welcome! (${mode})`;
  await teacher.fill('.chat-form input', reply);
  await teacher.press('.chat-form input', 'Enter');
  await student.waitForFunction((t) => document.querySelector('[data-testid=chat-list]')?.innerText.includes(t), reply, { timeout: 45_000 });

  // ---- an attachment: uploaded to storage, carried by a message, shown to the teacher ----
  if (mode === 'whip') {
    // A real 2×2 PNG (the server checks the file's first bytes against its declared type).
    const png = Buffer.from(
      'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==',
      'base64',
    );
    await student.setInputFiles('.chat-form input[type=file]', { name: 'board.png', mimeType: 'image/png', buffer: png });
    await teacher.waitForFunction(() => document.querySelector('[data-testid=chat-list]')?.innerText.includes('board.png'));
    log('teacher saw the attachment');
  }

  // ---- live interaction: poll, Q&A, reactions, hands (over the same socket as the chat) ----
  await liveInteraction(teacher, student, { mode, studentName: '小明', shots });
  await assertTranslated(student, 'classroom interaction (zh-CN)');
  await assertTranslated(teacher, 'classroom interaction (en)');
  if (shots) await assertAccessible(student, 'classroom (interaction)');

  // ---- reload: same session, chat resumes without duplicates ----
  await student.reload();
  await student.waitForSelector('.chat[data-status=subscribed]');
  await student.waitForFunction((t) => document.querySelector('[data-testid=chat-list]')?.innerText.includes(t), reply, { timeout: 45_000 });
  const count = await student.evaluate((t) => document.querySelector('[data-testid=chat-list]').innerText.split(t).length - 1, hello);
  if (count !== 1) throw new Error(`after a reload the message shows ${count} times`);
  await assertPlays(student, 3, 'student after reload');
  log('reload kept the session; chat resumed without duplicates');

  // ---- the access token expires; the next call refreshes it unnoticed ----
  if (accessTtl > 0) {
    await student.waitForTimeout((accessTtl + 2) * 1000);
    const after = `after expiry ${mode}`;
    await student.fill('.chat-form input', after);
    await student.press('.chat-form input', 'Enter');
    await teacher.waitForFunction((t) => document.querySelector('[data-testid=chat-list]')?.innerText.includes(t), after);
    await student.goto(`/courses/${courseId}`); // an API call with an expired token
    await student.waitForSelector('.pill-ok');
    if (/\/login/.test(student.url())) throw new Error('sent to /login after the access token expired');
    log('expired access token was refreshed without the user noticing');
    await student.goto(`/lessons/${lessonId}`);
    await student.waitForSelector('.player[data-state=playing]', { timeout: 45_000 });
  }

  if (shots) {
    // The classroom on a phone, in portrait.
    const phone = await context(browser, { locale: 'zh-CN', viewport: PHONE });
    const p = await phone.newPage();
    await p.goto('/courses');
    await p.waitForSelector('.card');
    await screenshot(p, 'catalogue-phone-zh');
    await phone.close();
  }

  // ---- the teacher ends the lesson; the student's page becomes the replay ----
  await teacher.click('.teacher-actions .button-danger');
  await teacher.waitForSelector('[data-lesson-status=ended]', { timeout: 30_000 });
  log('teacher ended the lesson');
  await student.waitForSelector('[data-lesson-status=ended]', { timeout: 30_000 });
  await student.waitForSelector('.player', { timeout: 90_000 });
  await assertPlays(student, 2, 'student replay');
  const duration = await student.evaluate(() => document.querySelector('video.player-video').duration);
  if (!(duration > 8)) throw new Error(`replay is ${duration} s long`);
  const target = Math.max(1, duration / 2);
  await student.evaluate((t) => {
    document.querySelector('video.player-video').currentTime = t;
  }, target);
  await student.waitForFunction((t) => document.querySelector('video.player-video').currentTime > t + 0.5, target, { timeout: 20_000 });
  log(`replay seeks: ${duration.toFixed(1)} s long, jumped to ${target.toFixed(1)}, at ${(await videoTime(student)).toFixed(1)}`);
  if (shots) await screenshot(student, 'classroom-replay-zh');

  // ---- the replay's timeline: the chat replayed with the video (classroom, then the recording page) ----
  const recordingId = await replayTimeline(student, hello, 'student replay');
  if (shots) {
    await student.locator('[data-testid=timeline]').scrollIntoViewIfNeeded();
    await screenshot(student, 'replay-timeline-zh');
  }
  await teacher.goto(`/recordings/${recordingId}`);
  await assertPlays(teacher, 1, 'recording page');
  await replayTimeline(teacher, hello, 'recording page');

  // ---- English renders too ----
  await student.selectOption('[data-testid=language]', 'en');
  await assertTranslated(student, 'classroom (en)');
  if (shots) await screenshot(student, 'classroom-replay-en');

  if (errors.length) throw new Error(errors.join('\n'));
  console.log('classroom scenario passed');
} catch (e) {
  await diagnose(e);
  throw e;
} finally {
  ffmpeg?.kill('SIGKILL');
  await browser.close();
}

/** Mid-lesson the teacher shares the screen, picks another microphone and goes back to the
 * camera: each is a new capture whose tracks replace the ones being sent, so the live session
 * (its id), the recording and the student's WebRTC playback carry on without a restart. */
async function switchWhileLive(teacher, student) {
  const sessionId = await teacher.getAttribute('[data-testid=health]', 'data-session');
  if (!sessionId) throw new Error('no live session shown in the stream health');
  const previewTrack = (kind) =>
    teacher.evaluate((k) => document.querySelector('video.preview').srcObject?.getTracks().find((t) => t.kind === k)?.label ?? '', kind);
  const camera = await previewTrack('video');
  await teacher.check('input[name=source][value=screen]');
  await teacher.waitForFunction(
    () => /^screen/.test(document.querySelector('video.preview').srcObject?.getVideoTracks()[0]?.label ?? ''),
    null, { timeout: 20_000 },
  );
  log(`teacher shares the screen while live (was ${camera})`);
  const mics = await teacher.$$eval('.golive select option', (os) => os.map((o) => ({ value: o.value, label: o.textContent })));
  const before = await previewTrack('audio');
  const other = mics.find((m) => m.value && m.label !== before && !/default/i.test(m.label));
  if (!other) throw new Error(`no second microphone among ${JSON.stringify(mics)}`);
  await teacher.selectOption('.golive select', other.value);
  await teacher.waitForFunction(
    (l) => document.querySelector('video.preview').srcObject?.getAudioTracks()[0]?.label === l, other.label, { timeout: 20_000 },
  );
  log(`teacher switched the microphone to ${other.label}`);
  await assertPlays(student, 4, 'student after the switch to the screen');
  if ((await student.getAttribute('.player', 'data-mode')) !== 'webrtc') throw new Error('the switch broke WebRTC playback');
  await teacher.check('input[name=source][value=camera]');
  await teacher.waitForFunction(
    (l) => document.querySelector('video.preview').srcObject?.getVideoTracks()[0]?.label === l, camera, { timeout: 20_000 },
  );
  await assertPlays(student, 3, 'student after the switch back to the camera');
  const after = await teacher.getAttribute('[data-testid=health]', 'data-session');
  if (after !== sessionId) throw new Error(`switching sources restarted the live session (${sessionId} → ${after})`);
  const state = await teacher.textContent('[data-testid=health-state]');
  if (state !== 'On air') throw new Error(`after the switches the stream is ${state}`);
  log('screen share and device switch while live: one session throughout');
}

/** On a failure: what each page's chat shows and its socket state, the page errors collected
 * so far, and a screenshot of each page (in the system's temp dir), so that a failure under
 * load says more than "timeout". */
async function diagnose(e) {
  console.error(`classroom scenario (${mode}) failed: ${e.message}`);
  if (errors.length) console.error(`page errors so far:\n  ${errors.join('\n  ')}`);
  for (const [name, page] of Object.entries(pages)) {
    try {
      const state = await page.evaluate(() => ({
        url: location.pathname,
        chat: document.querySelector('section.chat')?.getAttribute('data-status'),
        lines: [...document.querySelectorAll('[data-testid=chat-list] > li')].map((li) => li.innerText.replace(/\s+/g, ' ').slice(0, 80)),
      }));
      console.error(`${name}: ${JSON.stringify(state)}`);
      const file = `${process.env.TMPDIR ?? '/tmp'}/wemaster-classroom-${mode}-${name}.png`;
      await page.screenshot({ path: file, fullPage: true });
      console.error(`${name}: screenshot ${file}`);
    } catch (err) {
      console.error(`${name}: no diagnostics (${err.message})`);
    }
  }
}
