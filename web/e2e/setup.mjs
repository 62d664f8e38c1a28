// The first admin without a shell (issue #21): the link the server prints while no admin
// exists opens /setup with its token in the fragment; the form makes the first admin, who lands
// in the ops console; afterwards the page says the server is set up. axe and the translation
// check in both languages on the form.
//   WM_BASE, WM_SETUP_TOKEN, WM_ADMIN_EMAIL
import {
  assertAccessible, assertTranslated, context, env, launch, log, screenshotTop, setLanguage, waitText, watch,
} from './lib.mjs';

const browser = await launch();
const errors = [];
try {
  const ctx = await context(browser, { locale: 'en-US' });
  const page = await ctx.newPage();
  watch(page, 'setup', errors);
  await page.goto(`/setup#token=${env('WM_SETUP_TOKEN')}`);
  await page.waitForSelector('input[name=email]');
  if (await page.$('input[name=token]')) throw new Error('the token from the link is asked for again');
  for (const l of ['zh-CN', 'en']) {
    await setLanguage(page, l);
    await assertTranslated(page, `setup (${l})`);
    await assertAccessible(page, `setup (${l})`);
  }
  await page.fill('input[name=display_name]', 'Head of IT');
  await page.fill('input[name=email]', env('WM_ADMIN_EMAIL'));
  await page.fill('input[name=password]', 'a fine passphrase');
  await screenshotTop(page, 'setup');
  await page.click('form button[type=submit]');
  await Promise.race([
    page.waitForURL(/\/ops/),
    // A refusal shows in the form; the loser of the race must not reject later.
    page.waitForSelector('.form-error', { timeout: 25_000 }).then(
      async (e) => {
        throw new Error(`setup refused: ${await e.textContent()}`);
      },
      () => new Promise(() => {}),
    ),
  ]);
  if (page.url().includes('token=')) throw new Error(`the spent token stays in the address: ${page.url()}`);
  await page.waitForSelector('nav.nav a[href="/ops"]');
  log('first admin created; signed in to the console');
  // A second visit: nothing left to set up.
  await page.goto('/setup');
  await waitText(page, '[role=status]', /set up/);
  log('the setup page now says the server is set up');
  if (errors.length) throw new Error(errors.join('\n'));
  console.log('setup scenario passed');
} finally {
  await browser.close();
}
