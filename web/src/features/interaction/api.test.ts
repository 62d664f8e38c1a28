// The interaction routes through the generated client: the requests they make (method, path,
// body, keepalive, cache) and what they make of the answers (JSON, 202/204 without a body,
// problems thrown).
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';

type Api = typeof import('./api');
let api: Api;
let requests: Request[] = [];
let answer: () => Response;

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

beforeAll(async () => {
  // The app's client has a relative base URL (the page's origin); Node needs an absolute one.
  const Base = globalThis.Request;
  class PageRequest extends Base {
    constructor(input: RequestInfo | URL, init?: RequestInit) {
      super(typeof input === 'string' ? new URL(input, 'http://app.test') : input, init);
    }
  }
  vi.stubGlobal('Request', PageRequest);
  vi.stubGlobal('fetch', async (r: Request) => {
    requests.push(r);
    return answer();
  });
  api = await import('./api');
});

afterAll(() => vi.unstubAllGlobals());

beforeEach(() => {
  requests = [];
  answer = () => json({});
});

describe('interaction API', () => {
  it('sends progress with keepalive and returns the merged ranges', async () => {
    answer = () => json({ watched_s: 57, duration_s: 300, coverage: 0.19, ranges: [[0, 42], [60, 75]] });
    const p = await api.postProgress('r-1', [[0, 42]], true);
    expect(p.coverage).toBe(0.19);
    const r = requests[0]!;
    expect(r.method).toBe('POST');
    expect(new URL(r.url).pathname).toBe('/api/v1/recordings/r-1/progress');
    expect(r.keepalive).toBe(true);
    expect(r.headers.get('content-type')).toContain('application/json');
    expect(await r.json()).toEqual({ ranges: [[0, 42]] });
  });

  it('sends quality reports (202, no body) and throws the problem of a refusal', async () => {
    answer = () => new Response(null, { status: 202 });
    const report = {
      session_id: 's',
      live: true,
      mode: 'hls' as const,
      rendition: null,
      startup_ms: 800,
      rebuffer_count: 0,
      rebuffer_ms: 0,
      played_ms: 1000,
      errors: 0,
      latency_ms: null,
    };
    await expect(api.postPlaybackReports([report], true)).resolves.toBeUndefined();
    expect(requests[0]!.keepalive).toBe(true);
    expect(new URL(requests[0]!.url).pathname).toBe('/api/v1/playback/reports');
    answer = () => json({ code: 'not_found', detail: 'lesson not found', status: 404, title: 'Not Found', type: 'x' }, 404);
    await expect(api.postPlaybackReports([report])).rejects.toMatchObject({ status: 404, code: 'not_found' });
  });

  it('puts the chapters set by hand (204)', async () => {
    answer = () => new Response(null, { status: 204 });
    await api.putChapters('r-2', [{ t: 0, title: 'Start' }]);
    const r = requests[0]!;
    expect(r.method).toBe('PUT');
    expect(new URL(r.url).pathname).toBe('/api/v1/recordings/r-2/chapters');
    expect(await r.json()).toEqual({ chapters: [{ t: 0, title: 'Start' }] });
    answer = () => json({ code: 'forbidden', detail: 'only the course’s teachers set chapters' }, 403);
    await expect(api.putChapters('r-2', [])).rejects.toMatchObject({ status: 403 });
  });

  it('reads the timeline, past the browser cache when asked', async () => {
    const timeline = { duration_s: 10, chapters: [], heat: { bucket_s: 10, confused: [0] }, chat: [], questions: [], bookmarks: [], recording_id: 'r-3' };
    answer = () => json(timeline);
    expect(await api.getTimeline('r-3')).toEqual(timeline);
    expect(requests[0]!.cache).not.toBe('no-cache');
    await api.getTimeline('r-3', { fresh: true });
    expect(requests[1]!.cache).toBe('no-cache');
    expect(new URL(requests[1]!.url).pathname).toBe('/api/v1/recordings/r-3/timeline');
  });

  it('reads the caller’s own lesson record; a 404 throws', async () => {
    answer = () => json({ user_id: 'u', completed: true, live_s: 600, replay_coverage: 0.5 });
    expect((await api.getMyLessonAttendance('l-1')).completed).toBe(true);
    expect(new URL(requests[0]!.url).pathname).toBe('/api/v1/lessons/l-1/attendance/me');
    answer = () => json({ code: 'not_found', detail: 'enrollment not found' }, 404);
    await expect(api.getMyLessonAttendance('l-1')).rejects.toMatchObject({ status: 404 });
  });
});
