// The REST routes of docs/interaction.md that the generated client (api/client.ts, from
// schema.d.ts) does not know yet: a typed fetch over `apiFetch`, which carries the bearer token
// the way every API call does (token() from the session, one refresh and retry on a 401).
// When schema.d.ts has the routes, these become `api.GET(...)` calls and types.ts aliases.
import { apiFetch, ApiProblem } from '../../api/client';
import type {
  InteractionSnapshotResponse,
  Percentiles,
  PlaybackReport,
  ProgressResponse,
  QualityResponse,
  TimelineResponse,
} from './types';

async function problem(r: Response): Promise<ApiProblem> {
  let body: { code?: string; detail?: string } = {};
  try {
    body = (await r.json()) as typeof body;
  } catch {
    /* not problem+json */
  }
  return new ApiProblem(r.status, body.code, body.detail);
}

/** GET a JSON resource; an error status throws its problem. */
export async function getJson<T>(path: string, init: RequestInit = {}): Promise<T> {
  const r = await apiFetch(path, { ...init, headers: { accept: 'application/json' } });
  if (!r.ok) throw await problem(r);
  return (await r.json()) as T;
}

/**
 * POST a JSON body; the answer's JSON when there is one (202 and 204 have none). `keepalive`
 * lets the request outlive the page (pagehide).
 */
export async function postJson<T = unknown>(path: string, body: unknown, opts: { keepalive?: boolean } = {}): Promise<T | null> {
  const r = await apiFetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    keepalive: opts.keepalive ?? false,
  });
  if (!r.ok) throw await problem(r);
  if (r.status === 202 || r.status === 204) return null;
  const text = await r.text();
  return text ? (JSON.parse(text) as T) : null;
}

const lessonPath = (id: string) => `/api/v1/lessons/${encodeURIComponent(id)}`;
const recordingPath = (id: string) => `/api/v1/recordings/${encodeURIComponent(id)}`;

export function getInteraction(lessonId: string): Promise<InteractionSnapshotResponse> {
  return getJson<InteractionSnapshotResponse>(`${lessonPath(lessonId)}/interaction`);
}

function percentiles(raw: Record<string, unknown>, name: string): Percentiles {
  const nested = raw[name];
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  if (nested && typeof nested === 'object') {
    const o = nested as Record<string, unknown>;
    return { p50: num(o.p50), p95: num(o.p95) };
  }
  // Also accepted flat: `startup_ms_p50`, `startup_ms_p95`.
  return { p50: num(raw[`${name}_p50`]), p95: num(raw[`${name}_p95`]) };
}

/** Moderators' viewing quality of a lesson (percentiles nested `{p50, p95}`, or flat `_p50`). */
export async function getQuality(lessonId: string): Promise<QualityResponse> {
  const raw = await getJson<Record<string, unknown>>(`${lessonPath(lessonId)}/quality`);
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  // Sessions per mode: `by_mode: [{mode, sessions}]` (or a map).
  const modes: Record<string, number> = {};
  if (Array.isArray(raw.by_mode)) {
    for (const m of raw.by_mode as { mode?: unknown; sessions?: unknown }[]) {
      if (typeof m?.mode === 'string') modes[m.mode] = n(m.sessions);
    }
  } else if (raw.by_mode && typeof raw.by_mode === 'object') {
    Object.assign(modes, raw.by_mode);
  }
  return {
    viewers_now: n(raw.viewers_now),
    viewers_peak: n(raw.viewers_peak),
    sessions: n(raw.sessions),
    startup_ms: percentiles(raw, 'startup_ms'),
    rebuffer_ratio: typeof raw.rebuffer_ratio === 'number' ? raw.rebuffer_ratio : null,
    latency_ms: percentiles(raw, 'latency_ms'),
    errors: n(raw.errors),
    modes,
  };
}

export function getTimeline(recordingId: string): Promise<TimelineResponse> {
  return getJson<TimelineResponse>(`${recordingPath(recordingId)}/timeline`);
}

export function postProgress(recordingId: string, ranges: number[][], keepalive = false): Promise<ProgressResponse | null> {
  return postJson<ProgressResponse>(`${recordingPath(recordingId)}/progress`, { ranges }, { keepalive });
}

export async function postPlaybackReports(reports: PlaybackReport[], keepalive = false): Promise<void> {
  await postJson('/api/v1/playback/reports', { reports }, { keepalive });
}
