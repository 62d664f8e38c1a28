// The browser session: the access token lives in this module's memory only; the refresh token
// is an HttpOnly cookie the server sets (browser mode of /auth/login) that scripts never see.
// A reload restores the session with one cookie refresh (CSRF double submit: the readable
// `wm_csrf` cookie echoed in `X-CSRF-Token`). Refreshes are serialized across tabs with the Web
// Locks API: two tabs rotating the same refresh token at once would look like token theft to
// the server, which then revokes the session.

export interface SessionUser {
  id: string;
  email: string;
  display_name: string;
  roles: string[];
  locale?: string;
  avatar_url?: string | null;
  /** The IANA zone the user plans in; null: the browser's. */
  time_zone?: string | null;
}

export type SessionState =
  | { status: 'unknown' }
  | { status: 'anonymous'; reason?: 'expired' }
  | { status: 'authenticated'; user: SessionUser };

interface Tokens {
  access_token: string;
  expires_in: number;
}

export type LoginResult =
  | { kind: 'ok' }
  | { kind: 'mfa'; challenge: string }
  | { kind: 'error'; status: number; code?: string; detail?: string };

let accessToken: string | null = null;
let accessExpiresAt = 0;
let state: SessionState = { status: 'unknown' };
const listeners = new Set<() => void>();
let refreshing: Promise<boolean> | null = null;

function emit() {
  for (const l of listeners) l();
}

export function subscribe(l: () => void): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

export function getState(): SessionState {
  return state;
}

function setState(s: SessionState) {
  state = s;
  emit();
}

function csrfCookie(): string | null {
  const m = document.cookie.match(/(?:^|;\s*)wm_csrf=([^;]+)/);
  return m?.[1] ?? null;
}

function acceptTokens(t: Tokens) {
  accessToken = t.access_token;
  // Refresh a little early so a request never leaves with a token about to expire.
  accessExpiresAt = Date.now() + Math.max(5, t.expires_in - 30) * 1000;
}

async function loadUser(): Promise<void> {
  const r = await fetch('/api/v1/me', { headers: { authorization: `Bearer ${accessToken}` } });
  if (!r.ok) throw new Error(`GET /me: ${r.status}`);
  setState({ status: 'authenticated', user: (await r.json()) as SessionUser });
}

async function withLock<T>(f: () => Promise<T>): Promise<T> {
  const locks = (navigator as Navigator & { locks?: LockManager }).locks;
  return locks ? locks.request('wm-refresh', f) : f();
}

/** One cookie refresh at a time (per tab and across tabs). True when a new access token came. */
export function refresh(): Promise<boolean> {
  refreshing ??= withLock(async () => {
    const csrf = csrfCookie();
    if (!csrf) return false;
    const r = await fetch('/api/v1/auth/refresh', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
      body: '{}',
      credentials: 'same-origin',
    });
    if (!r.ok) return false;
    acceptTokens((await r.json()) as Tokens);
    return true;
  }).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** At start: a session comes back from the cookie, or the visitor is anonymous. */
export async function restore(): Promise<void> {
  try {
    if (await refresh()) {
      await loadUser();
      return;
    }
  } catch {
    /* network error: treated as signed out, the next action retries */
  }
  setState({ status: 'anonymous' });
}

/** A valid access token, refreshed first when it is about to expire; null when signed out. */
export async function token(): Promise<string | null> {
  if (accessToken && Date.now() < accessExpiresAt) return accessToken;
  if (state.status !== 'authenticated' && !accessToken) return null;
  if (await refresh()) return accessToken;
  expire();
  return null;
}

/** The server refused our token (revoked elsewhere, or expired): try one refresh. */
export async function tokenAfter401(used: string | null): Promise<string | null> {
  if (used && used !== accessToken) return accessToken; // another request refreshed already
  if (await refresh()) return accessToken;
  expire();
  return null;
}

function expire() {
  const was = state.status === 'authenticated';
  accessToken = null;
  setState(was ? { status: 'anonymous', reason: 'expired' } : { status: 'anonymous' });
}

async function problem(r: Response): Promise<LoginResult> {
  let body: { code?: string; detail?: string } = {};
  try {
    body = (await r.json()) as typeof body;
  } catch {
    /* not JSON */
  }
  return { kind: 'error', status: r.status, code: body.code, detail: body.detail };
}

export async function login(email: string, password: string): Promise<LoginResult> {
  const r = await fetch('/api/v1/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password, cookie: true }),
  });
  if (!r.ok) return problem(r);
  const body = (await r.json()) as Tokens | { mfa_required: true; challenge_token: string };
  if ('mfa_required' in body) return { kind: 'mfa', challenge: body.challenge_token };
  acceptTokens(body);
  await loadUser();
  return { kind: 'ok' };
}

export async function loginMfa(
  challenge: string,
  code: { code?: string; recovery_code?: string },
): Promise<LoginResult> {
  const r = await fetch('/api/v1/auth/login/mfa', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ challenge_token: challenge, ...code, cookie: true }),
  });
  if (!r.ok) return problem(r);
  acceptTokens((await r.json()) as Tokens);
  await loadUser();
  return { kind: 'ok' };
}

export async function logout(): Promise<void> {
  const t = accessToken;
  accessToken = null;
  if (t) {
    await fetch('/api/v1/auth/logout', {
      method: 'POST',
      headers: { authorization: `Bearer ${t}` },
    }).catch(() => undefined);
  }
  setState({ status: 'anonymous' });
}

/** After a profile change: read /me again. */
export async function reloadUser(): Promise<void> {
  if (accessToken) await loadUser();
}

/** For tests and the dev tools: forget the access token as if it had expired. */
export function forgetAccessToken(): void {
  accessExpiresAt = 0;
}

export function hasRole(s: SessionState, ...roles: string[]): boolean {
  return s.status === 'authenticated' && s.user.roles.some((r) => roles.includes(r));
}
