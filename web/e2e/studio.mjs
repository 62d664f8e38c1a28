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
//   (and an admin subscribes a receiver this script runs to events in the console, sees the
//   secret once, sends a test, and follows its delivery to "delivered"; the receiver checks the
//   Standard Webhooks signature with that secret);
//   5. axe-core finds no serious or critical violation on the studio and console pages, in
//      English and in Chinese, and no key is left untranslated; a studio and a console page on a
//      phone, in Chinese.
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
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

// An integrator's endpoint: keeps what it receives, answers 204.
const received = [];
const receiver = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    received.push({ headers: req.headers, body });
    res.writeHead(204).end();
  });
});
await new Promise((ok) => receiver.listen(0, '127.0.0.1', ok));
const hookUrl = `http://127.0.0.1:${receiver.address().port}/hooks/wemaster`;

const browser = await launch();
const errors = [];
try {
  // ---- 1. the teacher builds a course in the studio ----
  // The browser runs in UTC; the teacher plans in Shanghai's time (their account's setting).
  const teacherCtx = await context(browser, { locale: 'en-US', timezoneId: 'UTC' });
  const teacher = await teacherCtx.newPage();
  watch(teacher, 'teacher', errors);
  await login(teacher, env('WM_TEACHER_EMAIL'), env('WM_TEACHER_PASSWORD'));
  await teacher.goto('/me');
  await teacher.selectOption('select[name=time_zone]', 'Asia/Shanghai');
  await teacher.click('form[aria-labelledby=me-profile] button[type=submit]');
  await waitText(teacher, 'form[aria-labelledby=me-profile] [role=status]', /Saved/);
  await teacher.goto('/');
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
  // The preview renders the text before it is saved (the server's rendering, nothing stored).
  await teacher.click('button[aria-pressed=false]:has-text("Preview")');
  await waitText(teacher, '[data-testid=description-preview] strong', /^Bring$/);
  await waitText(teacher, '[data-testid=description-preview] .notice', /Not saved yet/);
  await teacher.click('button[aria-pressed=false]:has-text("Write")');
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
  // A square image is too tall for 16:9: the teacher keeps its top instead of its middle.
  const centred = await teacher.getAttribute('[data-testid=cover-img]', 'src');
  await teacher.fill('input[name=cover_focus]', '0');
  await teacher.waitForFunction((old) => {
    const src = document.querySelector('[data-testid=cover-img]')?.src;
    return src?.startsWith('blob:') && src !== old;
  }, centred);
  await teacher.click('.cover-picker button.button');
  await teacher.waitForFunction(() => {
    const i = document.querySelector('[data-testid=cover-img]');
    return i && !i.src.startsWith('blob:') && i.complete && i.naturalWidth === 1280;
  });
  log('cover uploaded and served back (1280×720)');
  // A lesson, tomorrow at 10:00 in the teacher's time zone (Shanghai, UTC+8), recorded.
  await teacher.click('nav.tabs a:has-text("Lessons")');
  await waitText(teacher, '[data-testid=schedule-zone]', /Asia\/Shanghai/);
  await teacher.click('button:has-text("Add a lesson")');
  await teacher.fill('input[name=lesson_title]', 'Five petals in one stroke');
  const day = new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai' }).format(Date.now() + 86400_000);
  await teacher.fill('input[name=starts_at]', `${day}T10:00`);
  await teacher.fill('input[name=duration]', '45');
  await teacher.click('[data-testid=lesson-form] button[type=submit]');
  await waitText(teacher, '[data-testid=studio-lessons]', /Five petals in one stroke/);
  await waitText(teacher, '[data-testid=studio-lessons]', /10:00\sAM · 45 min/);
  await waitText(teacher, '[data-testid=studio-lessons]', /Recorded/);
  // Stored as the instant it is: 10:00 in Shanghai is 02:00 UTC, whatever the browser's zone.
  const planToken = await apiToken(env('WM_TEACHER_EMAIL'), env('WM_TEACHER_PASSWORD'));
  const plannedRes = await fetch(new URL(`/api/v1/courses/${courseId}/lessons`, env('WM_BASE')), { headers: { authorization: `Bearer ${planToken}` } });
  const planned = plannedRes.ok ? (await plannedRes.json()).items : plannedRes.status;
  const lessonRow = Array.isArray(planned) ? planned.find((l) => l.title === 'Five petals in one stroke') : null;
  if (!lessonRow || lessonRow.starts_at.slice(0, 16) !== `${day}T02:00` || lessonRow.time_zone !== 'Asia/Shanghai') {
    throw new Error(`the lesson is stored as ${JSON.stringify(lessonRow ?? planned)}, not ${day}T02:00Z in Asia/Shanghai`);
  }
  // The week grid puts it in its day's column (the key noted, its panel closed).
  await teacher.click('button:has-text("I have saved it")');
  await teacher.click('button[aria-pressed]:has-text("Week")');
  // The grid opens on this week; tomorrow is in the next one when today is a Sunday there.
  await teacher.waitForSelector('[data-testid=week-grid]');
  if ((await teacher.locator(`[data-testid=week-grid] [data-day="${day}"]`).count()) === 0) {
    await teacher.click('button:has-text("→")');
  }
  await waitText(teacher, `[data-testid=week-grid] [data-day="${day}"]`, /Five petals in one stroke/);
  await screenshotTop(teacher, 'studio-week-en');
  await teacher.click('button[aria-pressed]:has-text("List")');
  log(`lesson scheduled at 10:00 Asia/Shanghai (${lessonRow.starts_at}), in its week's column`);
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

  // ---- chat moderation outside the classroom: the channel's messages, mutes and bans as the
  // server has them; a ban closes the course chat to the student ----
  const channel = `course:${courseId}`;
  const history = `/api/v1/chat/channels/${channel}/messages`;
  if ((await apiStatus(history, studentToken)) !== 200) throw new Error('the enrolled student cannot read the course chat');
  // The student writes in the course chat from their own page (the chat socket, as the app's).
  await student.evaluate(
    ({ token, channel }) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/api/v1/ws?v=1&token=${encodeURIComponent(token)}`);
        const timer = setTimeout(() => reject(new Error('no ack for the chat message')), 10_000);
        ws.onmessage = (e) => {
          const f = JSON.parse(e.data);
          if (f.type === 'hello') ws.send(JSON.stringify({ type: 'subscribe', channel }));
          if (f.type === 'subscribed' && f.channel === channel)
            ws.send(JSON.stringify({ type: 'send', channel, client_id: 'e2e-spam-1', body: 'buy cheap followers here' }));
          if (f.type === 'ack' || f.type === 'error') {
            clearTimeout(timer);
            ws.close();
            if (f.type === 'ack') resolve(null);
            else reject(new Error(`chat message refused: ${JSON.stringify(f)}`));
          }
        };
        ws.onerror = () => reject(new Error('chat socket failed'));
      }),
    { token: studentToken, channel },
  );
  await teacher.goto(`/studio/courses/${courseId}/chat`);
  await waitText(teacher, '[data-testid=channel-messages]', /buy cheap followers here/);
  const studentName = (await teacher.textContent('[data-testid=moderation] tr td')).trim();
  // Mute for 10 minutes: the "Muted now" list shows the student with the time it ends.
  await teacher.click('[data-testid=moderation] tr button:has-text("Mute for 10 minutes")');
  await waitText(teacher, '[data-testid=moderation-result]', /is muted for 10 minutes/);
  await waitText(teacher, '[data-testid=mutes]', new RegExp(studentName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  // Ban, with a reason typed into the prompt: the "Banned" list shows it.
  teacher.promptAnswer = 'spam links';
  await teacher.click('[data-testid=moderation] tr button:has-text("Ban from the chat")');
  await waitText(teacher, '[data-testid=moderation-result]', /is banned from the course chat/);
  await waitText(teacher, '[data-testid=bans]', /spam links/);
  const banned = await apiStatus(history, studentToken);
  if (banned !== 403 && banned !== 404) throw new Error(`a banned student reads the course chat: ${banned}`);
  // The spam goes: the message is removed for everyone.
  await teacher.click('[data-testid=channel-message]:has-text("buy cheap followers here") button:has-text("Remove")');
  await waitText(teacher, '[data-testid=moderation-result]', /Message removed/);
  await waitText(teacher, '[data-testid=channel-messages]', /\(removed\)/);
  await screenshotTop(teacher, 'studio-chat-en');
  await checkBothLanguages(teacher, 'studio chat moderation');
  // A reload shows the same state: it is the server's, not the page's memory.
  await teacher.reload();
  await waitText(teacher, '[data-testid=bans]', /spam links/);
  await teacher.click('[data-testid=bans] tr button:has-text("Lift the ban")');
  await waitText(teacher, '[data-testid=moderation-result]', /may join the course chat again/);
  await teacher.click('[data-testid=mutes] tr button:has-text("Unmute")');
  await waitText(teacher, '[data-testid=moderation-result]', /may write again/);
  await teacher.waitForSelector('[data-testid=bans]', { state: 'detached' });
  await teacher.waitForSelector('[data-testid=mutes]', { state: 'detached' });
  if ((await apiStatus(history, studentToken)) !== 200) throw new Error('the ban was not lifted');
  log('teacher saw the student\'s message, muted and banned them (listed, 403 for them), removed the message, lifted both');

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
    ['webhooks', 'form.webhook-form'],
  ]) {
    await admin.goto(`/ops/${section}`);
    await admin.waitForSelector(ready);
    await admin.waitForSelector('[role=status]:has-text("Loading")', { state: 'detached' }).catch(() => undefined);
    if (section === 'users') {
      await admin.fill('#user-q', 'teacher-studio');
      await admin.click('form[role=search] button');
      await waitText(admin, '[data-testid=ops-users]', /teacher-studio/);
      // The teacher's devices: the browser and this script's API login; the admin signs the
      // script's out, and its token stops working.
      await admin.click('[data-testid=ops-users] tr:has-text("teacher-studio") button:has-text("Devices")');
      await admin.waitForSelector('[data-testid=user-sessions] tbody tr');
      const devices = await admin.$$eval('[data-testid=user-sessions] tbody tr', (rs) => rs.length);
      if (devices < 2) throw new Error(`the teacher has ${devices} device(s) listed, not the browser and the script`);
      if ((await apiStatus('/api/v1/me', teacherToken)) !== 200) throw new Error('the teacher\'s API token does not work before');
      // The token names its session (`sid`).
      const sid = JSON.parse(Buffer.from(teacherToken.split('.')[1], 'base64url').toString()).sid;
      await admin.click(`[data-testid=user-sessions] tr[data-session-id="${sid}"] button:has-text("Sign out this device")`);
      await waitText(admin, '[role=status]', /That device is signed out/);
      await admin.waitForFunction((n) => document.querySelectorAll('[data-testid=user-sessions] tbody tr').length === n - 1, devices);
      if ((await apiStatus('/api/v1/me', teacherToken)) !== 401) throw new Error('the signed-out device\'s token still works');
      log(`admin listed the teacher's ${devices} devices and signed the script's out (its token is refused)`);
    }
    if (section === 'audit') await admin.waitForSelector('[data-testid=ops-audit] tbody tr');
    if (section === 'webhooks') {
      await admin.fill('input[name=url]', hookUrl);
      await admin.fill('input[name=description]', 'School LMS');
      await admin.check('input[name=event][value="payment.confirmed"]');
      await admin.check('input[name=event][value="enrollment.created"]');
      await admin.click('form.webhook-form button[type=submit]');
      const secret = (await admin.textContent('[data-testid=webhook-secret] code')).trim();
      if (!/^whsec_[A-Za-z0-9+/=]{40,}$/.test(secret)) throw new Error(`the secret shown is ${secret}`);
      await admin.click('[data-testid=webhook-secret] button');
      const row = `[data-testid=ops-webhooks] tr:has-text("${hookUrl}")`;
      await admin.click(`${row} button:has-text("Send a test")`);
      await admin.click(`${row} button:has-text("Deliveries")`);
      await admin.waitForSelector('[data-testid=webhook-deliveries] tr[data-status=delivered]', { timeout: 30_000 });
      await admin.click('[data-testid=webhook-deliveries] tr[data-status=delivered] button:has-text("Details")');
      await waitText(admin, '[data-testid=webhook-tries] li', /204/);
      // What the receiver got: the test event, signed with the secret the page showed.
      const hook = received.find((h) => JSON.parse(h.body).type === 'webhook.test');
      if (!hook) throw new Error(`the receiver got ${received.length} requests, no webhook.test`);
      const { 'webhook-id': id, 'webhook-timestamp': ts, 'webhook-signature': sig } = hook.headers;
      const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
      const expected = `v1,${createHmac('sha256', key).update(`${id}.${ts}.${hook.body}`).digest('base64')}`;
      if (!sig.split(' ').includes(expected)) throw new Error(`signature ${sig} is not ${expected}`);
      if (JSON.parse(hook.body).id !== id) throw new Error('the body\'s id is not the webhook-id');
      log('admin subscribed an endpoint, sent a test, saw it delivered; the receiver verified its signature');
    }
    // The server's own history: charted as soon as it holds two samples (10 s apart).
    if (section === 'system') await admin.waitForSelector('[data-testid=metrics-traffic] canvas', { timeout: 30_000 });
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
  receiver.close();
}
