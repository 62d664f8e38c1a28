// The API client: openapi-fetch over types generated from /api/v1/openapi.json (schema.d.ts;
// `scripts/test` regenerates it and fails when it differs, so the UI cannot drift from the API).
// Every request carries the in-memory access token; a 401 gets one refresh and one retry.
import createClient from 'openapi-fetch';
import type { paths } from './schema';
import { token, tokenAfter401 } from '../lib/session';

async function authedFetch(input: Request): Promise<Response> {
  const retry = input.clone();
  const t = await token();
  if (t) input.headers.set('authorization', `Bearer ${t}`);
  const r = await fetch(input);
  if (r.status !== 401 || !t) return r;
  const next = await tokenAfter401(t);
  if (!next) return r;
  retry.headers.set('authorization', `Bearer ${next}`);
  return fetch(retry);
}

export const api = createClient<paths>({ baseUrl: '', fetch: authedFetch });

/** A problem+json answer as an Error the UI can show. */
export class ApiProblem extends Error {
  constructor(
    public status: number,
    public code: string | undefined,
    detail: string | undefined,
  ) {
    super(detail ?? `HTTP ${status}`);
  }
}

/** Unwrap an openapi-fetch result: the data, or throw its problem. */
export function must<T>(r: { data?: T; error?: unknown; response: Response }): T {
  if (r.error !== undefined || r.data === undefined) {
    const p = (r.error ?? {}) as { code?: string; detail?: string };
    throw new ApiProblem(r.response.status, p.code, p.detail);
  }
  return r.data;
}

/** A plain authenticated fetch for what openapi-fetch does not cover (uploads, 204s). */
export async function apiFetch(path: string, init: RequestInit = {}): Promise<Response> {
  return authedFetch(new Request(path, init));
}

/** For answers without a body (204): throw the problem unless the status is a success. */
export function mustOk(r: { error?: unknown; response: Response }): void {
  if (!r.response.ok) {
    const p = (r.error ?? {}) as { code?: string; detail?: string };
    throw new ApiProblem(r.response.status, p.code, p.detail);
  }
}
