// The shapes of docs/interaction.md (live interaction, learning records, viewing quality), by
// hand until the generated API types (src/api/schema.d.ts) include the new routes: then these
// become aliases of `components["schemas"][…]` and nothing else changes. Frames of the socket
// are here too (they are not in the OpenAPI document).

export type QuestionState = 'open' | 'answered' | 'pinned' | 'dismissed';

export interface Question {
  id: string;
  lesson_id: string;
  body: string;
  /** Anonymous to classmates: moderators see the author, students see null. */
  anonymous: boolean;
  author_id?: string | null;
  /** Per reader in the REST snapshot; false in broadcast frames. */
  mine: boolean;
  votes: number;
  /** Per reader in the REST snapshot; false in broadcast frames. */
  voted: boolean;
  state: QuestionState;
  created_at: string;
  answered_at?: string | null;
  pinned_at?: string | null;
}

export interface Poll {
  id: string;
  question: string;
  options: string[];
  multiple: boolean;
  /** Students get it once the results are shown; moderators always. */
  correct?: number[] | null;
  quiz: boolean;
  closes_at?: string | null;
  closed: boolean;
  results_shown: boolean;
  created_at: string;
}

export interface PollResults {
  counts: number[];
  answered: number;
  /** Grows with every answer: the highest one wins. */
  rev: number;
}

export interface RaisedHand {
  user_id: string;
  raised_at: string;
}

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

/** `GET /api/v1/lessons/{id}/interaction`. */
export interface InteractionSnapshotResponse {
  questions: Question[];
  polls: (Poll & { my_choices?: number[] | null; results?: PollResults | null })[];
  /** Moderators only (else []). */
  hands: RaisedHand[];
  my_hand: boolean;
}

export interface PollOpenInput {
  question: string;
  options: string[];
  multiple: boolean;
  correct?: number[];
  duration_s?: number;
}

export interface Percentiles {
  p50: number | null;
  p95: number | null;
}

/** `GET /api/v1/lessons/{id}/quality` (as api.ts normalizes it). */
export interface QualityResponse {
  viewers_now: number;
  viewers_peak: number;
  sessions: number;
  startup_ms: Percentiles;
  /** Rebuffering time / playing time (0.02 = 2 %). */
  rebuffer_ratio: number | null;
  latency_ms: Percentiles;
  errors: number;
  /** Sessions per playback mode. */
  modes: Record<string, number>;
}

export interface TimelineChapter {
  t: number;
  title: string;
  /** `manual` or `pin` (a pinned question). */
  source?: string;
}

export interface TimelineMessage {
  t: number;
  id: string;
  sender_id?: string | null;
  kind: string;
  html: string;
}

export interface TimelineQuestion {
  t: number;
  id: string;
  body: string;
  votes: number;
  state: QuestionState | string;
  answered_t?: number | null;
}

/** `GET /api/v1/recordings/{id}/timeline` (times in seconds from the recording's start). */
export interface TimelineResponse {
  duration_s: number;
  chapters: TimelineChapter[];
  heat: { bucket_s: number; confused: number[] };
  chat: TimelineMessage[];
  questions: TimelineQuestion[];
  bookmarks: { t: number; kind: string }[];
}

/** `POST /api/v1/recordings/{id}/progress` answer. */
export interface ProgressResponse {
  watched_s: number;
  duration_s: number;
  coverage: number;
  /** The merged set of whole seconds played, `[from, to)`. */
  ranges: number[][];
}

export type PlaybackMode = 'webrtc' | 'll-hls' | 'hls' | 'native';

/** One playback session's running totals (`POST /api/v1/playback/reports`). */
export interface PlaybackReport {
  session_id: string;
  lesson_id?: string;
  recording_id?: string;
  live: boolean;
  mode: PlaybackMode;
  rendition: string | null;
  startup_ms: number | null;
  rebuffer_count: number;
  rebuffer_ms: number;
  played_ms: number;
  errors: number;
  latency_ms: number | null;
}
