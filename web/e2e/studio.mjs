// The teacher's studio and the ops console, as people use them (docs/web.md, "Tests"):
//   1. a teacher creates a course with a cover and a lesson in the studio and publishes it; a
//      student finds it in the catalogue (and buys it with the sandbox provider);
//   3. the teacher asks for a payout of that sale; an admin approves it and marks it paid in
//      the console; the teacher's earnings show it paid;
//   4. the student cannot open /studio or /ops (the page says so, the API refuses too); the
//      teacher cannot open /ops;
//   (and the teacher bans the student from the course chat outside the classroom, then lifts it);
//   (and the teacher opens the course's attendance: the student's row, nothing held yet, and its
//   CSV export; the student sees their own progress on the course page);
//   (and the console's payments list the refunds in flight, its viewing-quality section shows its
//   table or says nobody watched lately);
//   5. axe-core finds no serious or critical violation on the studio and console pages, in
//      English and in Chinese, and no key is left untranslated; a studio and a console page on a
//      phone, in Chinese.
import { readFileSync } from 'node:fs';
import {
  apiStatus, apiToken, assertAccessible, assertTranslated, context, env, launch, log, login, PHONE, screenshotTop,
  setLanguage, waitText, watch,
} from './lib.mjs';

// A real 2×2 PNG: the page crops it to 16:9 and uploads a 1280×720 JPEG.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==',
  'base64',
);
const stamp = Date.now();
const title = `Ink painting: plum blossoms ${stamp}`;

/** axe and the translation check on the current page, in both languages; back to `back`. */
async function checkBothLanguages(page, where, back = 'en') {
  for (const l of ['en', 'zh-CN']) {
    await setLanguage(page, l);
    await assertTranslated(page, `${where} (${l})`);
    await assertAccessible(page, `${where} (${l})`);
  }
  await setLanguage(page, back);
}

const browser = await launch();
const errors = [];
try {
  // ---- 1. the teacher builds a course in the studio ----
  const teacherCtx = await context(browser, { locale: 'en-US' });
  const teacher = await teacherCtx.newPage();
  watch(teacher, 'teacher', errors);
  await login(teacher, env('WM_TEACHER_EMAIL'), env('WM_TEACHER_PASSWORD'));
  await teacher.click('nav.nav a[href="/studio"]');
  await teacher.waitForSelector('input[name=new_title]');
  await teacher.fill('input[name=new_title]', title);
  await teacher.click('.inline-form button[type=submit]');
  await teacher.waitForURL(/\/studio\/courses\/[0-9a-f-]{36}$/);
  const courseId = teacher.url().match(/courses\/([0-9a-f-]{36})/)[1];
  log(`course ${courseId} created as a draft`);
  await waitText(teacher, '[data-testid=course-visibility]', /Draft/);
  await teacher.fill('input[name=summary]', 'Brush, ink and five petals');
  await teacher.fill('textarea[name=description]', 'Four live lessons.\n\n**Bring** your own brush.');
  await teacher.fill('input[name=price]', '49');
  await teacher.selectOption('select[name=currency]', 'CNY');
  await teacher.fill('input[name=tags]', 'art, ink');
  await teacher.click('.editor form button[type=submit]');
  await waitText(teacher, '.form-ok', /Saved/);
  await teacher.click('button[aria-pressed=false]:has-text("Preview")');
  const strong = await teacher.textContent('[data-testid=description-preview] strong');
  if (strong !== 'Bring') throw new Error(`the Markdown preview shows ${strong}`);
  // The cover: picked, previewed (a blob URL, cropped to 16:9), uploaded.
  await teacher.setInputFiles('input[name=cover]', { name: 'plum.png', mimeType: 'image/png', buffer: PNG });
  await teacher.waitForFunction(() => document.querySelector('[data-testid=cover-img]')?.src.startsWith('blob:'));
  const preview = await teacher.evaluate(() => {
    const i = document.querySelector('[data-testid=cover-img]');
    return [i.naturalWidth, i.naturalHeight];
  });
  if (preview[0] !== 1280 || preview[1] !== 720) throw new Error(`cover preview is ${preview}`);
  await teacher.click('.cover-picker button.button');
  await teacher.waitForFunction(() => {
    const i = document.querySelector('[data-testid=cover-img]');
    return i && !i.src.startsWith('blob:') && i.complete && i.naturalWidth === 1280;
  });
  log('cover uploaded and served back (1280×720)');
  // A lesson, tomorrow at 10:00 in the teacher's time zone, recorded.
  await teacher.click('nav.tabs a:has-text("Lessons")');
  await teacher.click('button:has-text("Add a lesson")');
  await teacher.fill('input[name=lesson_title]', 'Five petals in one stroke');
  const tomorrow = new Date(Date.now() + 86400_000);
  const pad = (n) => String(n).padStart(2, '0');
  await teacher.fill('input[name=starts_at]', `${tomorrow.getFullYear()}-${pad(tomorrow.getMonth() + 1)}-${pad(tomorrow.getDate())}T10:00`);
  await teacher.fill('input[name=duration]', '45');
  await teacher.click('[data-testid=lesson-form] button[type=submit]');
  await waitText(teacher, '[data-testid=studio-lessons]', /Five petals in one stroke/);
  await waitText(teacher, '[data-testid=studio-lessons]', /10:00\sAM · 45 min/);
  await waitText(teacher, '[data-testid=studio-lessons]', /Recorded/);
  log('lesson scheduled');
  await screenshotTop(teacher, 'studio-lessons-en');
  await checkBothLanguages(teacher, 'studio lessons');
  // Publish.
  await teacher.click('nav.tabs a:has-text("Details")');
  await teacher.click('.editor-side button:has-text("Publish")');
  await waitText(teacher, '[data-testid=course-visibility]', /Published/);
  log('course published');
  await screenshotTop(teacher, 'studio-course-en');
  await checkBothLanguages(teacher, 'studio course');
  await teacher.click('.subnav a:has-text("Courses")');
  await waitText(teacher, '[data-testid=studio-courses]', new RegExp(`${stamp}[\\s\\S]*Published`));
  await screenshotTop(teacher, 'studio-courses-en');
  await checkBothLanguages(teacher, 'studio courses');

  // ---- the student finds it in the catalogue and buys it ----
  const studentCtx = await context(browser, { locale: 'zh-CN' });
  const student = await studentCtx.newPage();
  watch(student, 'student', errors);
  await login(student, env('WM_STUDENT_EMAIL'), env('WM_STUDENT_PASSWORD'));
  await student.fill('form[role=search] input', `${stamp}`);
  await student.click('form[role=search] button');
  await student.waitForSelector(`.card a[href="/courses/${courseId}"]`);
  const coverShown = await student.evaluate(
    (id) => document.querySelector(`.card a[href="/courses/${id}"] img`)?.naturalWidth ?? 0,
    courseId,
  );
  if (coverShown !== 1280) throw new Error(`the catalogue card shows no cover (${coverShown})`);
  await student.click(`.card a[href="/courses/${courseId}"]`);
  await waitText(student, '.lessons', /Five petals in one stroke/);
  log('student found the course in the catalogue, with its cover and lesson');
  await student.check('input[name=provider][value=sandbox]');
  await student.click('.checkout > button.button');
  await student.waitForSelector('.pill-ok', { timeout: 30_000 });
  log('student bought the course');
  // Their own record of the course: enrolled, no lesson held yet.
  await waitText(student, '[data-testid=my-progress]', /0 \/ 0/);
  await assertTranslated(student, 'course page with my progress (zh-CN)');
  log('student sees their progress on the course page');

  // ---- 4. who may not enter ----
  const navLinks = await student.$$eval('nav.nav a', (as) => as.map((a) => a.getAttribute('href')));
  if (navLinks.includes('/studio') || navLinks.includes('/ops')) throw new Error(`student nav offers ${navLinks}`);
  for (const path of ['/studio', '/ops']) {
    await student.goto(path);
    await waitText(student, '[data-testid=forbidden]', path === '/studio' ? /工作室仅供教师使用/ : /运维控制台仅供/);
    await assertTranslated(student, `${path} refused (zh-CN)`);
  }
  await screenshotTop(student, 'ops-refused-zh');
  await assertAccessible(student, 'refused page');
  const studentToken = await apiToken(env('WM_STUDENT_EMAIL'), env('WM_STUDENT_PASSWORD'));
  const teacherToken = await apiToken(env('WM_TEACHER_EMAIL'), env('WM_TEACHER_PASSWORD'));
  for (const [who, token, path] of [
    ['student', studentToken, '/api/v1/earnings'],
    ['student', studentToken, '/api/v1/courses/teaching'],
    ['student', studentToken, '/api/v1/admin/storage/usage'],
    ['student', studentToken, '/api/v1/admin/users'],
    ['teacher', teacherToken, '/api/v1/admin/storage/usage'],
    ['teacher', teacherToken, '/api/v1/admin/audit-log'],
  ]) {
    const status = await apiStatus(path, token);
    if (status !== 403) throw new Error(`${who} GET ${path}: ${status}, not 403`);
  }
  await teacher.goto('/ops');
  await waitText(teacher, '[data-testid=forbidden]', /ops console is for ops and admins/);
  log('student kept out of /studio and /ops, teacher out of /ops; the API answers 403');

  // ---- chat moderation outside the classroom: a ban closes the course chat to the student ----
  const history = `/api/v1/chat/channels/course:${courseId}/messages`;
  if ((await apiStatus(history, studentToken)) !== 200) throw new Error('the enrolled student cannot read the course chat');
  await teacher.goto(`/studio/courses/${courseId}/chat`);
  await teacher.waitForSelector('[data-testid=moderation] tr');
  await teacher.click('[data-testid=moderation] tr button:has-text("Ban from the chat")');
  await waitText(teacher, '[data-testid=moderation-result]', /is banned from the course chat/);
  const banned = await apiStatus(history, studentToken);
  if (banned !== 403 && banned !== 404) throw new Error(`a banned student reads the course chat: ${banned}`);
  await screenshotTop(teacher, 'studio-chat-en');
  await checkBothLanguages(teacher, 'studio chat moderation');
  await teacher.click('[data-testid=moderation] tr button:has-text("Lift the ban")');
  await waitText(teacher, '[data-testid=moderation-result]', /may join the course chat again/);
  if ((await apiStatus(history, studentToken)) !== 200) throw new Error('the ban was not lifted');
  log('teacher banned the student from the course chat (403 for them) and lifted it');

  // ---- the class's attendance: the course's table (the student, no lesson held yet) and its CSV ----
  const studentEmail = env('WM_STUDENT_EMAIL');
  await teacher.click('nav.tabs a:has-text("Attendance")');
  await teacher.waitForURL(/\/studio\/courses\/[0-9a-f-]{36}\/attendance$/);
  await teacher.waitForSelector(
    '[data-testid=attendance] [data-testid=attendance-row], [data-testid=attendance] [data-testid=attendance-empty]',
  );
  await teacher.waitForFunction(
    (email) => document.querySelector('[data-testid=attendance]')?.textContent.includes(email),
    studentEmail,
  );
  // The lesson part says no lesson was held (the lesson is tomorrow).
  await teacher.waitForSelector('[data-testid=lesson-attendance-section] p.empty');
  const [csv] = await Promise.all([teacher.waitForEvent('download'), teacher.click('[data-testid=attendance-csv]')]);
  const csvText = readFileSync(await csv.path(), 'utf8');
  const csvHead = csvText.split(/\r?\n/)[0];
  if (!csvHead.startsWith('user_id,name,email,enrollment')) throw new Error(`the attendance CSV starts with ${csvHead}`);
  if (!csvText.includes(studentEmail)) throw new Error(`the attendance CSV does not list the student: ${csvText}`);
  log(`attendance: the student's row, and the CSV (${csv.suggestedFilename()}) starts with ${csvHead}`);
  await screenshotTop(teacher, 'studio-attendance-en');
  await checkBothLanguages(teacher, 'studio attendance');

  // ---- 3. earnings and a payout ----
  await teacher.goto('/studio/earnings');
  await waitText(teacher, '[data-testid=earn-available]', /44\.10/); // 49.00 less the 10 % fee
  await teacher.waitForSelector('[data-testid=earnings-chart] canvas');
  await teacher.fill('input[name=payout_amount]', '40');
  await teacher.selectOption('select[name=payout_method]', 'alipay');
  await teacher.fill('input[name=payout_destination]', 'teacher@alipay.example');
  await teacher.fill('input[name=payout_note]', 'December');
  await teacher.click('[data-testid=payout-form] button[type=submit]');
  await waitText(teacher, '[data-testid=payouts]', /Pending/);
  await waitText(teacher, '[data-testid=earn-available]', /¥4\.10/);
  log('payout requested');
  await screenshotTop(teacher, 'studio-earnings-en');
  await checkBothLanguages(teacher, 'studio earnings');

  const adminCtx = await context(browser, { locale: 'en-US' });
  const admin = await adminCtx.newPage();
  watch(admin, 'admin', errors);
  await login(admin, env('WM_ADMIN_EMAIL'), env('WM_ADMIN_PASSWORD'));
  await admin.click('nav.nav a[href="/ops"]');
  await admin.waitForSelector('[data-testid=usage-total]');
  await admin.click('.subnav a:has-text("Payments")');
  await waitText(admin, '[data-testid=ops-payouts]', /teacher@alipay\.example/);
  // Refunds in flight: a table, or its empty state (this scenario refunds nothing).
  await admin.waitForSelector('[data-testid=ops-refunds-section] :is([data-testid=ops-refunds], [data-testid=ops-refunds-empty])');
  await screenshotTop(admin, 'ops-payments-en');
  await admin.click('[data-testid=ops-payouts] tr:has-text("teacher@alipay.example") button:has-text("Approve")');
  await waitText(admin, '.form-ok', /Payout approved/);
  await admin.selectOption('select[name=payout_status]', 'approved');
  await admin.click('[data-testid=ops-payouts] tr:has-text("teacher@alipay.example") button:has-text("Mark paid")');
  await waitText(admin, '.form-ok', /marked paid/);
  log('admin approved the payout and marked it paid');
  await teacher.reload();
  await waitText(teacher, '[data-testid=payouts]', /Paid — E2E-REF-1/);
  log('teacher sees the payout paid');

  // ---- the console's viewing quality: its table, or the empty state when nobody watched lately ----
  await admin.click('.subnav a:has-text("Quality")');
  await admin.waitForSelector('[data-testid=ops-quality], [data-testid=ops-quality-empty]');
  const qualityRows = await admin.$$eval('[data-testid=ops-quality] tbody tr', (rs) => rs.length);
  log(`viewing quality: ${qualityRows ? `${qualityRows} lesson(s) in the table` : 'the empty state'}`);
  await assertAccessible(admin, 'ops quality');
  await screenshotTop(admin, 'console-quality-en');

  // ---- 5. every console page, both languages ----
  for (const [section, ready] of [
    ['storage', '[data-testid=usage-total]'],
    ['recordings', 'form.filters'],
    ['live', 'h1'],
    ['quality', '[data-testid=ops-quality], [data-testid=ops-quality-empty]'],
    ['users', '[data-testid=ops-users]'],
    ['audit', '[data-testid=ops-audit]'],
    ['payments', '[data-testid=ops-refunds], [data-testid=ops-refunds-empty]'],
    ['system', '[data-testid=readiness]'],
  ]) {
    await admin.goto(`/ops/${section}`);
    await admin.waitForSelector(ready);
    await admin.waitForSelector('[role=status]:has-text("Loading")', { state: 'detached' }).catch(() => undefined);
    if (section === 'users') {
      await admin.fill('#user-q', 'teacher-studio');
      await admin.click('form[role=search] button');
      await waitText(admin, '[data-testid=ops-users]', /teacher-studio/);
    }
    if (section === 'audit') await admin.waitForSelector('[data-testid=ops-audit] tbody tr');
    if (section === 'system') await admin.waitForSelector('[data-testid=metrics]');
    // Storage, recordings and live now are shot with a recording, by recordings.mjs; payments
    // and quality above (the payout pending).
    if (!['storage', 'recordings', 'live', 'payments', 'quality'].includes(section)) await screenshotTop(admin, `ops-${section}-en`);
    await checkBothLanguages(admin, `ops ${section}`);
  }

  // ---- a studio page and a console page on a phone, in Chinese ----
  for (const [who, user, path, ready, shot] of [
    ['teacher', 'TEACHER', `/studio/courses/${courseId}/lessons`, '[data-testid=studio-lessons]', 'studio-phone-zh'],
    ['admin', 'ADMIN', '/ops/storage', '[data-testid=usage-total]', 'console-phone-zh'],
  ]) {
    const phone = await context(browser, { locale: 'zh-CN', viewport: PHONE });
    const p = await phone.newPage();
    watch(p, `${who} (phone)`, errors);
    await login(p, env(`WM_${user}_EMAIL`), env(`WM_${user}_PASSWORD`));
    await p.goto(path);
    await p.waitForSelector(ready);
    await p.waitForSelector('[role=status]:has-text("加载中")', { state: 'detached' }).catch(() => undefined);
    if ((await p.evaluate(() => document.documentElement.lang)) !== 'zh-CN') throw new Error(`${shot}: the page is not in Chinese`);
    await assertTranslated(p, `${path} on a phone (zh-CN)`);
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 1) log(`${shot}: the page is ${overflow} px wider than the phone`);
    await screenshotTop(p, shot);
    await phone.close();
  }
  log('studio and console shot on a phone, in Chinese');

  if (errors.length) throw new Error(errors.join('\n'));
  console.log('studio and console scenario passed');
} finally {
  await browser.close();
}
