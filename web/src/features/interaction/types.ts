// The shapes of docs/interaction.md (live interaction, learning records, viewing quality): the
// REST ones are the generated API types (src/api/schema.d.ts, from the server's OpenAPI
// document, which `scripts/test` regenerates and compares), re-exported under the names the UI
// uses, so the UI cannot drift from the API. Frames of the socket that the OpenAPI document
// does not describe (reactions, markers, the poll form) are written out here.
import type { components } from '../../api/schema';

type S = components['schemas'];

export type QuestionState = S['QuestionState'];
/** Anonymous to classmates: moderators see `author_id`, students null. `mine` and `voted` are
 * per reader in the REST snapshot and false in broadcast frames. */
export type Question = S['QuestionView'];
/** `correct`: students get it once the results are shown; moderators always. */
export type Poll = S['PollView'];
/** `rev` grows with every answer: the highest one wins. */
export type PollResults = S['PollResults'];
export type RaisedHand = S['RaisedHand'];

export type ReactionName = 'thumbs_up' | 'heart' | 'laugh' | 'wow' | 'clap' | 'lost';
export const REACTIONS: readonly ReactionName[] = ['thumbs_up', 'heart', 'laugh', 'wow', 'clap', 'lost'];
/** "I'm lost" has no emoji: it is a word (interaction.reaction.lost) everywhere. */
export const REACTION_EMOJI: Record<Exclude<ReactionName, 'lost'>, string> = {
  thumbs_up: '👍',
  heart: '❤️',
  laugh: '😂',
  wow: '😮',
  clap: '👏',
};

export type MarkerKind = 'confused' | 'bookmark';

export interface Marker {
  id: string;
  kind: MarkerKind;
  at: string;
}

/** `GET /api/v1/lessons/{id}/interaction` (`hands`: moderators only, else []). */
export type InteractionSnapshotResponse = S['InteractionSnapshot'];

export interface PollOpenInput {
  question: string;
  options: string[];
  multiple: boolean;
  correct?: number[];
  duration_s?: number;
}

export type Percentiles = S['Percentiles'];

/** `GET /api/v1/lessons/{id}/quality`: `rebuffer_ratio` = rebuffering time / playing time
 * (0.02 = 2 %), `by_mode` the sessions per playback mode. */
export type QualityResponse = S['Quality'];

/** A chapter of a replay: `source` is `manual` (set by hand) or `pin` (a pinned question). */
export type TimelineChapter = S['Chapter'];
/** One chapter of `PUT /api/v1/recordings/{id}/chapters` (`t`: seconds from the start). */
export type ChapterInput = S['ChapterInput'];
export type TimelineMessage = S['TimelineMessage'];
export type TimelineQuestion = S['TimelineQuestion'];
/** `GET /api/v1/recordings/{id}/timeline` (times in seconds from the recording's start). */
export type TimelineResponse = S['Timeline'];

/** `POST /api/v1/recordings/{id}/progress` answer (`ranges`: the merged whole seconds played). */
export type ProgressResponse = S['Progress'];

/** A lesson's attendance (moderators) and one student's row of it (`/attendance/me`). */
export type LessonAttendance = S['LessonAttendance'];
export type AttendanceRow = S['AttendanceRow'];
/** A course's record (moderators) and one student's row of it (`/attendance/me`). */
export type CourseAttendance = S['CourseAttendance'];
export type CourseAttendanceRow = S['CourseAttendanceRow'];

export type PlaybackMode = 'webrtc' | 'll-hls' | 'hls' | 'native';

/** One playback session's running totals (`POST /api/v1/playback/reports`): the API's
 * `QualityReport`, with the modes the player knows. */
export type PlaybackReport = Omit<S['QualityReport'], 'mode'> & { mode: PlaybackMode };
