// A recorded lesson from the studio to the ops console (docs/web.md, "Tests", 2): ffmpeg
// publishes the lesson over RTMP; the teacher ends it; the recording appears in the studio's
// library, plays, and is made public; ops see the storage usage grow by exactly its size,
// delete it from the recordings table (the confirmation says how many bytes go), and the
// usage drops back.
import { spawn } from 'node:child_process';
import {
  assertAccessible, assertPlays, assertTranslated, context, env, launch, log, login, screenshotTop, setLanguage, waitText,
  watch,
} from './lib.mjs';

const lessonId = env('WM_LESSON_ID');
const courseId = env('WM_COURSE_ID');

async function usageBytes(page) {
  await page.goto('/ops/storage');
  await page.waitForSelector('[data-testid=usage-total]');
  return Number(await page.getAttribute('[data-testid=usage-total]', 'data-bytes'));
}

const browser = await launch();
let ffmpeg = null;
const errors = [];
try {
  const opsCtx = await context(browser, { locale: 'en-US' });
  const ops = await opsCtx.newPage();
  watch(ops, 'ops', errors);
  await login(ops, env('WM_OPS_EMAIL'), env('WM_OPS_PASSWORD'));
  const before = await usageBytes(ops);
  log(`storage in use before the lesson: ${before} bytes`);

  // ---- the lesson, published by ffmpeg like OBS would ----
  const teacherCtx = await context(browser, { locale: 'en-US' });
  const teacher = await teacherCtx.newPage();
  watch(teacher, 'teacher', errors);
  await login(teacher, env('WM_TEACHER_EMAIL'), env('WM_TEACHER_PASSWORD'));
  ffmpeg = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-re',
    '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '50', '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-b:a', '96k', '-t', '40', '-f', 'flv', env('WM_RTMP_URL')], { stdio: ['ignore', 'inherit', 'inherit'] });
  await teacher.goto(`/lessons/${lessonId}`);
  await teacher.waitForSelector('[data-lesson-status=live]', { timeout: 45_000 });
  log('lesson is live');
  // The console's "live now" shows the session with its facts.
  await ops.goto('/ops/live');
  await waitText(ops, '[data-testid=ops-live]', /RTMP/, 30_000);
  await waitText(ops, '[data-testid=ops-live]', /640×360/, 30_000);
  await screenshotTop(ops, 'ops-live-en');
  await teacher.waitForTimeout(8_000);
  await teacher.click('.teacher-actions .button-danger');
  await teacher.waitForSelector('[data-lesson-status=ended]', { timeout: 30_000 });
  ffmpeg.kill('SIGKILL');
  ffmpeg = null;
  log('teacher ended the lesson');

  // ---- the studio's library: ready, poster, plays, visibility ----
  await teacher.goto(`/studio/courses/${courseId}/recordings`);
  await teacher.waitForSelector('[data-testid=studio-recordings] .recording[data-status=ready] img.poster', { timeout: 120_000 });
  const recId = await teacher.getAttribute('[data-testid=studio-recordings] .recording', 'data-recording-id');
  log(`recording ${recId} is ready with its poster`);
  await teacher.click('.recording button:has-text("Play")');
  await assertPlays(teacher, 3, 'studio library');
  const vis = await teacher.textContent('[data-testid=rec-visibility]');
  const target = vis === 'Private' ? 'Public' : 'Private';
  await teacher.click(`.recording button:has-text("Make ${target.toLowerCase()}")`);
  await waitText(teacher, '[data-testid=rec-visibility]', new RegExp(`^${target}$`));
  log(`visibility changed: ${vis} → ${target}`);
  await screenshotTop(teacher, 'studio-recordings-en');
  for (const l of ['zh-CN', 'en']) {
    await setLanguage(teacher, l);
    await assertTranslated(teacher, `studio recordings (${l})`);
    await assertAccessible(teacher, `studio recordings (${l})`);
  }

  // ---- ops: usage grew by its size; delete it from the table; usage drops ----
  await ops.goto(`/ops/recordings`);
  const row = `[data-testid=ops-recordings] tr[data-recording-id="${recId}"]`;
  await ops.waitForSelector(row);
  const size = Number(await ops.getAttribute(`${row} td[data-bytes]`, 'data-bytes'));
  const grown = await usageBytes(ops);
  if (!(size > 100_000) || grown - before !== size) {
    throw new Error(`usage ${before} → ${grown} (+${grown - before}); the recording is ${size} bytes`);
  }
  log(`usage grew by the recording's ${size} bytes`);
  await ops.waitForSelector('[data-testid=usage-chart] canvas');
  // The course is among the top courses, by its title.
  const topCourse = `[data-testid=top-courses] td[title="${courseId}"]`;
  await ops.waitForSelector(topCourse);
  const courseTitle = (await ops.textContent(topCourse)).trim();
  if (!courseTitle || courseTitle === courseId.slice(0, 8)) throw new Error(`top courses name the course "${courseTitle}"`);
  await screenshotTop(ops, 'ops-storage-en');
  await setLanguage(ops, 'zh-CN');
  await assertTranslated(ops, 'ops storage (zh-CN)');
  await screenshotTop(ops, 'ops-storage-zh');
  await setLanguage(ops, 'en');
  await ops.goto('/ops/recordings');
  // The table names the recording's lesson and course, and filters by the course.
  await waitText(ops, `${row} [data-testid=rec-lesson]`, new RegExp(courseTitle.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  await ops.waitForSelector(`select[name=course_id] option[value="${courseId}"]`, { state: 'attached' });
  await ops.selectOption('select[name=course_id]', courseId);
  await ops.selectOption('select[name=status]', 'ready');
  await ops.click('form.filters button[type=submit]');
  await ops.waitForSelector(row);
  await ops.check(`${row} input[type=checkbox]`);
  await ops.click('button:has-text("Delete selected")');
  await waitText(ops, '[data-testid=bulk-confirm]', new RegExp(`Delete 1 recording\\(s\\)\\? This frees .* \\(${size} bytes\\)`));
  await screenshotTop(ops, 'ops-recordings-en');
  await ops.click('[data-testid=bulk-confirm] button:has-text("Yes, delete them")');
  await waitText(ops, '[role=status]', /Deleted 1 recording\(s\) \(0 failed\)/);
  await ops.waitForSelector(row, { state: 'detached' });
  const after = await usageBytes(ops);
  if (after !== before) throw new Error(`usage after the delete is ${after}, was ${before} before the lesson`);
  log(`usage dropped back to ${after} bytes`);
  // The teacher's library no longer lists it.
  await teacher.goto(`/studio/courses/${courseId}/recordings`);
  await teacher.waitForSelector('text=No recordings yet');

  if (errors.length) throw new Error(errors.join('\n'));
  console.log('recordings scenario passed');
} finally {
  ffmpeg?.kill('SIGKILL');
  await browser.close();
}
