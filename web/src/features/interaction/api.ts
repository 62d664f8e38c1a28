// The REST routes of docs/interaction.md through the generated client (api/client.ts, typed by
// schema.d.ts): the bearer token, one refresh and retry on a 401, and the problem of an error
// status thrown as an ApiProblem. Progress and quality reports pass `keepalive` through to the
// request (openapi-fetch hands the RequestInit options to `new Request`), so a report sent on
// pagehide outlives the page.
import { api, must, mustOk } from '../../api/client';
import type {
  AttendanceRow,
  ChapterInput,
  InteractionSnapshotResponse,
  PlaybackReport,
  ProgressResponse,
  QualityResponse,
  TimelineResponse,
} from './types';

const byId = (id: string) => ({ params: { path: { id } } });

export async function getInteraction(lessonId: string): Promise<InteractionSnapshotResponse> {
  return must(await api.GET('/api/v1/lessons/{id}/interaction', byId(lessonId)));
}

/** Moderators' (and operators') viewing quality of a lesson. */
export async function getQuality(lessonId: string): Promise<QualityResponse> {
  return must(await api.GET('/api/v1/lessons/{id}/quality', byId(lessonId)));
}

/**
 * The replay's timeline. The server lets the browser keep it 10 s (`private, max-age=10`):
 * `fresh` revalidates instead, for the read right after a change (chapters saved).
 */
export async function getTimeline(recordingId: string, opts: { fresh?: boolean } = {}): Promise<TimelineResponse> {
  return must(
    await api.GET('/api/v1/recordings/{id}/timeline', { ...byId(recordingId), ...(opts.fresh ? { cache: 'no-cache' as const } : {}) }),
  );
}

/** Replace the chapters set by hand (chapters of pinned questions stay). */
export async function putChapters(recordingId: string, chapters: ChapterInput[]): Promise<void> {
  mustOk(await api.PUT('/api/v1/recordings/{id}/chapters', { ...byId(recordingId), body: { chapters } }));
}

export async function postProgress(recordingId: string, ranges: number[][], keepalive = false): Promise<ProgressResponse> {
  return must(await api.POST('/api/v1/recordings/{id}/progress', { ...byId(recordingId), body: { ranges }, keepalive }));
}

/** Viewing-quality reports (202, no body). */
export async function postPlaybackReports(reports: PlaybackReport[], keepalive = false): Promise<void> {
  mustOk(await api.POST('/api/v1/playback/reports', { body: { reports }, keepalive }));
}

/** The caller's own attendance of a lesson (a student; 404 for whoever is not enrolled). */
export async function getMyLessonAttendance(lessonId: string): Promise<AttendanceRow> {
  return must(await api.GET('/api/v1/lessons/{id}/attendance/me', byId(lessonId)));
}
