// The live interaction of docs/interaction.md in the browser, for classroom.mjs: while the
// lesson is live with the teacher's page (English) and a student's (Chinese) open — a poll
// opened, answered and its results shown; an anonymous question seen with its author by the
// teacher and answered; a reaction counted on the teacher's side; a raised hand called on.
// Then, after the lesson, the replay's timeline replays the chat. Everything is driven through
// data-testid attributes and data-* values, never through translated text.
import { log, screenshot } from './lib.mjs';

const POLL_TIMEOUT = 20_000;

/** `[data-testid=poll-count]` texts of the page's current poll. */
const pollCounts = (page) =>
  page.evaluate(() => [...document.querySelectorAll('[data-testid=poll] [data-testid=poll-count]')].map((e) => e.textContent.trim()));

async function showTab(page, name) {
  await page.click(`[data-testid=${name}-tab]`);
  await page.waitForSelector(`[data-testid=${name}-tab][aria-selected=true]`);
}

/** Poll, Q&A, reactions and hands, live. `studentName` is the student's display name. */
export async function liveInteraction(teacher, student, { mode, studentName, shots }) {
  // ---- a poll: opened by the teacher, answered by the student, results shown ----
  await showTab(teacher, 'poll');
  await showTab(student, 'poll');
  const question = `2 + 2 = ? (${mode})`;
  await teacher.fill('[data-testid=poll-question]', question);
  const options = teacher.locator('[data-testid=poll-option-input]');
  if ((await options.count()) !== 2) throw new Error(`the poll form starts with ${await options.count()} options, not 2`);
  await options.nth(0).fill('4');
  await options.nth(1).fill('5');
  await teacher.click('[data-testid=poll-submit]');
  const teacherPoll = teacher.locator('[data-testid=poll][data-closed=false]', { hasText: question });
  await teacherPoll.waitFor({ timeout: POLL_TIMEOUT });
  const pollId = await teacherPoll.getAttribute('data-poll-id');
  log(`teacher opened poll ${pollId}`);

  const studentPoll = student.locator(`[data-testid=poll][data-poll-id="${pollId}"]`);
  await studentPoll.waitFor({ timeout: POLL_TIMEOUT });
  await studentPoll.locator('[data-testid=poll-choice]').nth(0).check();
  await studentPoll.locator('[data-testid=poll-answer]').click();
  // Acknowledged: the student's answer is the first option, nothing pending.
  await student.waitForSelector(`[data-testid=poll][data-poll-id="${pollId}"][data-answer="0"][data-pending=false]`, { timeout: POLL_TIMEOUT });

  await teacher.waitForFunction(
    () => {
      const answered = document.querySelector('[data-testid=poll] [data-testid=poll-answered]')?.getAttribute('data-answered');
      const counts = [...document.querySelectorAll('[data-testid=poll] [data-testid=poll-count]')].map((e) => e.textContent.trim());
      return answered === '1' && counts[0] === '1' && counts[1] === '0';
    },
    null,
    { timeout: POLL_TIMEOUT },
  ).catch(async (e) => {
    throw new Error(`teacher's poll results: ${JSON.stringify(await pollCounts(teacher))}: ${e.message}`);
  });
  log('teacher sees 1 answered, 1 on the chosen option');

  // Before the teacher shows them, the student has no results.
  if (await student.locator('[data-testid=poll-results]').count()) throw new Error('the student sees the results before they are shown');
  await teacher.click('[data-testid=poll-show]');
  await teacher.waitForSelector('[data-testid=poll-show][aria-pressed=true]', { timeout: POLL_TIMEOUT });
  await student.waitForFunction(
    () => {
      const answered = document.querySelector('[data-testid=poll-results] [data-testid=poll-answered]')?.getAttribute('data-answered');
      const counts = [...document.querySelectorAll('[data-testid=poll-results] [data-testid=poll-count]')].map((e) => e.textContent.trim());
      return answered === '1' && counts[0] === '1';
    },
    null,
    { timeout: POLL_TIMEOUT },
  );
  log('the student sees the results once shown');
  if (shots) {
    await screenshot(teacher, 'interaction-poll-teacher-en');
    await screenshot(student, 'interaction-poll-student-zh');
  }

  // ---- Q&A: an anonymous question; the teacher sees who asked and answers it ----
  await showTab(student, 'qa');
  await showTab(teacher, 'qa');
  const asked = `为什么天空是蓝色的？ ${mode}`;
  await student.fill('[data-testid=ask-input]', asked);
  await student.check('[data-testid=ask-anonymous]');
  await student.click('[data-testid=ask-submit]');
  const teacherQuestion = teacher.locator('[data-testid=question]', { hasText: asked });
  await teacherQuestion.waitFor({ timeout: POLL_TIMEOUT });
  await teacher.waitForFunction(
    ([text, name]) =>
      [...document.querySelectorAll('[data-testid=question]')].some(
        (q) => q.textContent.includes(text) && q.querySelector('[data-testid=question-author]')?.textContent.includes(name),
      ),
    [asked, studentName],
    { timeout: POLL_TIMEOUT },
  );
  log('teacher sees the anonymous question with its author');
  // Classmates would not: the student's own copy says "me", never another name.
  const questionId = await teacherQuestion.getAttribute('data-question-id');
  if (shots) await screenshot(teacher, 'interaction-qa-teacher-en');
  await teacherQuestion.locator('[data-testid=q-answer]').click();
  await teacher.waitForSelector(`[data-testid=question][data-question-id="${questionId}"][data-state=answered]`, { timeout: POLL_TIMEOUT });
  await student.waitForSelector(`[data-testid=question][data-question-id="${questionId}"][data-state=answered]`, { timeout: POLL_TIMEOUT });
  log('the student sees the question answered');
  if (shots) await screenshot(student, 'interaction-qa-student-zh');

  // ---- reactions: counted once a second, shown on the teacher's side ----
  let seen = false;
  for (let i = 0; i < 3 && !seen; i++) {
    await student.click('[data-testid=reaction-thumbs_up]');
    seen = await teacher
      .waitForSelector('[data-testid=reactions-live] [data-reaction=thumbs_up]', { timeout: 8_000 })
      .then(() => true)
      .catch(() => false);
  }
  if (!seen) throw new Error('the teacher never saw the reaction counted');
  const count = Number(await teacher.getAttribute('[data-testid=reactions-live] [data-reaction=thumbs_up]', 'data-count'));
  if (!(count >= 1)) throw new Error(`the reaction is counted ${count} times`);
  log(`teacher sees the reaction (${count} in the window)`);

  // ---- a raised hand, called on ----
  await student.click('[data-testid=hand-toggle]');
  await student.waitForSelector('[data-testid=hand-toggle][aria-pressed=true]');
  await teacher.waitForSelector('[data-testid=hands-queue] [data-testid=hand]', { timeout: POLL_TIMEOUT });
  if (shots) {
    await teacher.locator('[data-testid=hands-queue]').scrollIntoViewIfNeeded();
    await screenshot(teacher, 'interaction-class-teacher-en');
    await student.locator('[data-testid=livebar]').scrollIntoViewIfNeeded();
    await screenshot(student, 'interaction-livebar-student-zh');
  }
  await teacher.click('[data-testid=hands-queue] [data-testid=call-on]');
  await student.waitForSelector('[data-testid=called-on]', { timeout: POLL_TIMEOUT });
  await student.waitForSelector('[data-testid=hand-toggle][aria-pressed=false]');
  await teacher.waitForFunction(() => !document.querySelector('[data-testid=hands-queue] [data-testid=hand]'), null, { timeout: POLL_TIMEOUT });
  log('the student raised a hand and was called on');
  if (shots) await screenshot(student, 'interaction-called-on-student-zh');

  // Back to the chat, where the rest of the scenario writes.
  await showTab(teacher, 'chat');
  await showTab(student, 'chat');
}

/**
 * After the lesson: the replay's chat timeline lists `message` once the video is past it.
 * Returns the recording id (data-recording-id of the timeline).
 */
export async function replayTimeline(page, message, where) {
  await page.waitForSelector('[data-testid=timeline]', { timeout: 30_000 });
  // Near the end, everything said during the recording has been replayed.
  await page.waitForFunction(() => Number.isFinite(document.querySelector('video.player-video')?.duration));
  await page.evaluate(() => {
    const v = document.querySelector('video.player-video');
    v.currentTime = Math.max(0, v.duration - 0.5);
  });
  await page
    .waitForFunction(
      (text) => [...document.querySelectorAll('[data-testid=timeline-chat] [data-testid=timeline-message]')].some((e) => e.textContent.includes(text)),
      message,
      { timeout: 20_000 },
    )
    .catch(async (e) => {
      const items = await page.evaluate(() =>
        [...document.querySelectorAll('[data-testid=timeline-message]')].map((e) => `${e.getAttribute('data-t')}: ${e.textContent}`),
      );
      throw new Error(`${where}: the chat replay does not list ${JSON.stringify(message)} (has ${JSON.stringify(items)}): ${e.message}`);
    });
  const t = await page.evaluate(
    (text) => [...document.querySelectorAll('[data-testid=timeline-message]')].find((e) => e.textContent.includes(text))?.getAttribute('data-t'),
    message,
  );
  log(`${where}: the chat replay lists the message at ${t} s`);
  return page.getAttribute('[data-testid=timeline]', 'data-recording-id');
}
