// The replay, enriched by what happened live (docs/interaction.md, "The replay, enriched"):
// chapters to jump to, a heat strip of where the class was lost (one cell per bucket, as wide
// as the time it covers, so the strip lines up with the recording), the reader's bookmarks,
// and the chat and questions replayed in step with the video. Nothing shows when the timeline
// cannot be read. Whoever may set chapters (`canEdit`) gets an editor of the chapters set by hand.
import { useEffect, useMemo, useRef, useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { formatDuration, useI18n } from '../../lib/i18n';
import type { MessageKey } from '../../lib/i18n/en';
import { useName } from '../../lib/useName';
import { getTimeline } from '../interaction/api';
import type { TimelineMessage, TimelineQuestion, TimelineResponse } from '../interaction/types';
import { ChaptersEditor } from './ChaptersEditor';

/** At most this many replayed items in the page at once (the newest before the playhead). */
const MAX_SHOWN = 300;

type Item = ({ item: 'message' } & TimelineMessage) | ({ item: 'question' } & TimelineQuestion);

function heatColour(ratio: number): string {
  if (ratio <= 0) return '#e5e7eb';
  // From a light to a deep red.
  return `hsl(0 75% ${Math.round(90 - 55 * Math.min(1, ratio))}%)`;
}

function Sender({ id }: { id: string | null | undefined }) {
  const name = useName(id);
  return <strong className="chat-sender">{id ? name || '…' : ''}</strong>;
}

function Heat({ data, time, seek }: { data: TimelineResponse; time: number; seek: (t: number) => void }) {
  const { t } = useI18n();
  const { bucket_s: bucket, confused } = data.heat;
  const duration = data.duration_s;
  if (!(duration > 0) || !(bucket > 0)) return null;
  const count = Math.max(1, Math.ceil(duration / bucket));
  const max = Math.max(1, ...confused);
  return (
    <div className="heat-wrap">
      <h3 id="heat-title">{t('timeline.heat')}</h3>
      <p className="muted small">{t('timeline.heatHint')}</p>
      <div className="heat" data-testid="heat" role="group" aria-labelledby="heat-title">
        {Array.from({ length: count }, (_, i) => {
          const start = i * bucket;
          const n = confused[i] ?? 0;
          const label = t('timeline.heatCell', { time: formatDuration(start), n });
          return (
            <button
              key={i}
              type="button"
              className="heat-cell"
              data-testid="heat-cell"
              data-n={n}
              style={{ flexGrow: Math.max(0.05, Math.min(bucket, duration - start) / bucket), background: heatColour(n / max) }}
              aria-label={label}
              title={label}
              tabIndex={n > 0 ? 0 : -1}
              onClick={() => seek(start)}
            />
          );
        })}
        <span className="heat-playhead" aria-hidden="true" style={{ left: `${Math.min(100, (time / duration) * 100)}%` }} />
      </div>
    </div>
  );
}

function ChatReplay({ items, time, seek }: { items: Item[]; time: number; seek: (t: number) => void }) {
  const { t } = useI18n();
  const list = useRef<HTMLOListElement>(null);
  const [follow, setFollow] = useState(true);
  let shown = 0;
  while (shown < items.length && items[shown]!.t <= time + 0.25) shown += 1;
  const visible = items.slice(Math.max(0, shown - MAX_SHOWN), shown);
  // Scroll with playback, unless the reader scrolled up to read.
  useEffect(() => {
    const el = list.current;
    if (el && follow) el.scrollTop = el.scrollHeight;
  }, [shown, follow]);
  return (
    <div className="timeline-chat-box">
      <h3>{t('timeline.chat')}</h3>
      <ol
        className="chat-list timeline-chat"
        data-testid="timeline-chat"
        ref={list}
        onScroll={(e) => {
          const el = e.currentTarget;
          setFollow(el.scrollHeight - el.scrollTop - el.clientHeight < 40);
        }}
      >
        {visible.length === 0 && <li className="muted">{t('timeline.chatEmpty')}</li>}
        {visible.map((item) => {
          const at = (
            <button type="button" className="link-button timeline-t" aria-label={t('timeline.jump', { time: formatDuration(item.t) })} onClick={() => seek(item.t)}>
              {formatDuration(item.t)}
            </button>
          );
          return item.item === 'message' ? (
            <li key={`m-${item.id}`} className="chat-msg" data-testid="timeline-message" data-t={item.t}>
              <div className="chat-meta">
                {at} <Sender id={item.sender_id} />
              </div>
              <div className="chat-body" dangerouslySetInnerHTML={{ __html: item.html }} />
            </li>
          ) : (
            <li key={`q-${item.id}`} className="chat-msg timeline-question" data-testid="timeline-question" data-t={item.t} data-state={item.state}>
              <div className="chat-meta">
                {at} <span className="badge">{t('timeline.question')}</span>{' '}
                <span className={`badge badge-q-${item.state}`}>{t(`qa.state.${item.state}` as MessageKey)}</span>{' '}
                <span className="muted small">{t('timeline.votes', { n: item.votes })}</span>
              </div>
              <p className="question-body">{item.body}</p>
            </li>
          );
        })}
      </ol>
    </div>
  );
}

export function Timeline({
  recordingId,
  time,
  seek,
  canEdit = false,
}: {
  recordingId: string;
  time: number;
  seek: (t: number) => void;
  /** The reader may set the chapters (moderators of the lesson, the recording's owner, admins). */
  canEdit?: boolean;
}) {
  const { t } = useI18n();
  const qc = useQueryClient();
  const key = ['recording', recordingId, 'timeline'];
  const q = useQuery({
    queryKey: key,
    queryFn: () => getTimeline(recordingId),
    retry: false,
  });
  const [editing, setEditing] = useState(false);
  const [saved, setSaved] = useState(false);
  // After a save: read the timeline again past the browser's 10 s cache of it.
  const onSaved = async () => {
    try {
      qc.setQueryData(key, await getTimeline(recordingId, { fresh: true }));
    } catch {
      await qc.invalidateQueries({ queryKey: key });
    }
    setEditing(false);
    setSaved(true);
  };
  const items = useMemo<Item[]>(() => {
    if (!q.data) return [];
    const all: Item[] = [
      ...(q.data.chat ?? []).filter((m) => m.kind !== 'tombstone').map((m) => ({ item: 'message' as const, ...m })),
      ...(q.data.questions ?? []).map((x) => ({ item: 'question' as const, ...x })),
    ];
    return all.sort((a, b) => a.t - b.t);
  }, [q.data]);
  if (!q.data) return null;
  const data = q.data;
  const chapters = [...(data.chapters ?? [])].sort((a, b) => a.t - b.t);
  let current = -1;
  chapters.forEach((c, i) => {
    if (c.t <= time + 0.25) current = i;
  });

  return (
    <section className="timeline" data-testid="timeline" data-recording-id={recordingId} aria-labelledby="timeline-title">
      <h2 id="timeline-title">{t('timeline.title')}</h2>
      <Heat data={data} time={time} seek={seek} />
      <div className={`timeline-grid ${chapters.length || (data.bookmarks ?? []).length || canEdit ? '' : 'timeline-grid-single'}`}>
        <div>
          {(chapters.length > 0 || canEdit) && (
            <div className="timeline-chapters-head">
              <h3>{t('timeline.chapters')}</h3>
              {canEdit && !editing && (
                <button
                  type="button"
                  className="button button-small button-secondary"
                  data-testid="chapters-edit"
                  onClick={() => {
                    setSaved(false);
                    setEditing(true);
                  }}
                >
                  {t('chapters.edit')}
                </button>
              )}
            </div>
          )}
          {saved && !editing && (
            <p className="form-ok" role="status">
              {t('chapters.saved')}
            </p>
          )}
          {canEdit && editing && (
            <ChaptersEditor
              recordingId={recordingId}
              chapters={data.chapters ?? []}
              durationS={data.duration_s}
              time={time}
              onSaved={onSaved}
              onCancel={() => setEditing(false)}
            />
          )}
          {chapters.length > 0 && (
            <>
              <ol className="chapters" data-testid="chapters">
                {chapters.map((c, i) => (
                  <li key={`${c.t}-${i}`}>
                    <button
                      type="button"
                      className={`chapter ${i === current ? 'chapter-on' : ''}`}
                      data-testid="chapter"
                      data-t={c.t}
                      aria-current={i === current ? 'true' : undefined}
                      onClick={() => seek(c.t)}
                    >
                      <span className="chapter-t">{formatDuration(c.t)}</span>
                      {c.source === 'pin' && <span aria-hidden="true">📌</span>}
                      <span className="chapter-title">{c.title}</span>
                    </button>
                  </li>
                ))}
              </ol>
            </>
          )}
          {(data.bookmarks ?? []).length > 0 && (
            <>
              <h3>{t('timeline.bookmarks')}</h3>
              <ul className="bookmarks">
                {data.bookmarks.map((b, i) => (
                  <li key={`${b.t}-${i}`}>
                    <button type="button" className="button button-small button-secondary" data-testid="bookmark" onClick={() => seek(b.t)}>
                      <span aria-hidden="true">🔖</span> {formatDuration(b.t)}
                    </button>
                  </li>
                ))}
              </ul>
            </>
          )}
        </div>
        <ChatReplay items={items} time={time} seek={seek} />
      </div>
    </section>
  );
}
