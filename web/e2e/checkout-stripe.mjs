// Stripe's card form in the checkout (docs/web.md, "Checkout"): a student buys a course by card.
//
// Stripe.js itself cannot be fetched here (js.stripe.com is not reachable), so the page loads
// localstripe's Stripe.js (the emulator's own script, at the configured `js_url`) whose card
// Element draws real inputs. One gap of that script is filled by this test: its
// confirmCardPayment only does the 3-D Secure step, while Stripe.js first sends the card to
// Stripe with the PaymentIntent's client secret. Here that first step is done by the test
// process playing Stripe's servers (it holds the secret key): the card typed into the form
// becomes a PaymentMethod on localstripe and the intent is confirmed with it. What follows is
// all real: localstripe's 3-D Secure dialog and its `_authenticate` call from the page,
// localstripe's signed webhook to the server, the order paid, the course open.
//   a declined card → the page shows Stripe's error and keeps the form;
//   a card that needs 3-D Secure → localstripe's dialog → completed → paid.
import {
  assertTranslated, context, env, launch, log, login, screenshot, watch,
} from './lib.mjs';

const stripeUrl = env('WM_STRIPE_URL'); // localstripe
const secretKey = env('WM_STRIPE_SECRET_KEY');
const courseId = env('WM_COURSE_ID');

async function stripeApi(path, form) {
  const r = await fetch(`${stripeUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secretKey}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  return { status: r.status, body: await r.json() };
}

/** Stripe's side of confirmCardPayment: the card becomes a PaymentMethod, the intent is
 * confirmed with it. Answers what Stripe.js's promise resolves to. */
async function stripeConfirm(clientSecret, card) {
  const pi = clientSecret.match(/^(pi_\w+)_secret_/)?.[1];
  if (!pi || !card) return { error: { message: 'incomplete card' } };
  const pm = await stripeApi('/v1/payment_methods', {
    type: 'card', 'card[number]': card.number, 'card[exp_month]': card.exp_month,
    'card[exp_year]': card.exp_year, 'card[cvc]': card.cvc,
  });
  if (pm.status !== 200) return { error: pm.body.error };
  const attached = await stripeApi(`/v1/payment_intents/${pi}`, { payment_method: pm.body.id });
  if (attached.status !== 200) return { error: attached.body.error };
  const confirmed = await stripeApi(`/v1/payment_intents/${pi}/confirm`, {});
  if (confirmed.status !== 200) return { error: confirmed.body.error };
  return { paymentIntent: confirmed.body };
}

// Appended to localstripe's script: confirmCardPayment sends the card first (above), then
// leaves 3-D Secure to localstripe's own code when the intent asks for it.
const ADAPTER = `
;(() => {
  const LocalStripe = Stripe;
  Stripe = (key, options) => {
    const s = LocalStripe(key, options);
    const authenticate = s.confirmCardPayment;
    s.confirmCardPayment = async (secret, data) => {
      const r = await window.__stripeConfirm(secret, data.payment_method.card.value?.card ?? null);
      if (r.error || r.paymentIntent.status !== 'requires_action') return r;
      return authenticate(secret, data);
    };
    return s;
  };
})();
`;

const browser = await launch();
const errors = [];
try {
  const ctx = await context(browser, { locale: 'en-US' });
  const page = await ctx.newPage();
  watch(page, 'student', errors);
  await page.exposeFunction('__stripeConfirm', stripeConfirm);
  let scriptLoads = 0;
  await page.route(`${stripeUrl}/js.stripe.com/v3/`, async (route) => {
    scriptLoads++;
    const original = await route.fetch();
    await route.fulfill({ response: original, body: (await original.text()) + ADAPTER });
  });
  await login(page, env('WM_STUDENT_EMAIL'), env('WM_STUDENT_PASSWORD'));
  await page.goto(`/courses/${courseId}`);
  await page.waitForSelector('.checkout');
  const startCardPayment = async () => {
    await page.waitForSelector('.checkout');
    await page.check('input[name=provider][value=stripe]');
    await page.click('.checkout > button.button');
    await page.waitForSelector('.stripe-card[data-ready=true]', { timeout: 20_000 });
  };
  await startCardPayment();
  if (scriptLoads !== 1) throw new Error(`Stripe.js loaded ${scriptLoads} times`);
  log('the card form is mounted from the configured Stripe.js');

  const typeCard = async (number) => {
    const field = (name) => page.locator(`.stripe-card-field input[placeholder=${name}]`);
    await field('number').fill(number);
    await field('exp_month').fill('12');
    await field('exp_year').fill('34');
    await field('cvc').fill('123');
  };
  // Declined (localstripe's charge-declining card): Stripe's message on the page, the order
  // still waiting, the form still there for another card.
  await typeCard('4000000000000341');
  await page.click('.stripe-card button');
  await page.waitForSelector('.stripe-card [role=alert]');
  const declined = await page.textContent('.stripe-card [role=alert]');
  if (!/declined/i.test(declined)) throw new Error(`a declined card shows "${declined}"`);
  if (await page.$('.pill-ok')) throw new Error('a declined card paid the order');
  log(`declined card: "${declined.trim()}"`);
  await screenshot(page, 'checkout-stripe-declined-en');

  if (!(await page.isVisible('.stripe-card-field input'))) throw new Error('the card form went away after a decline');
  // localstripe cannot confirm a PaymentIntent again after a declined charge (Stripe can), so
  // the second card goes to a new order: the page reloaded, the card payment started again.
  await page.reload();
  await startCardPayment();
  // 3-D Secure: localstripe's dialog, completed; the webhook makes the order paid.
  await typeCard('4000002760003184');
  await page.click('.stripe-card button');
  const complete = page.getByRole('button', { name: 'Complete authentication' });
  await complete.waitFor({ timeout: 20_000 });
  await complete.click();
  await page.waitForSelector('.pill-ok', { timeout: 30_000 });
  await assertTranslated(page, 'checkout');
  log('3-D Secure completed; Stripe\'s webhook paid the order');
  await screenshot(page, 'checkout-stripe-paid-en');
  if (errors.length) throw new Error(errors.join('\n'));
} finally {
  await browser.close();
}
