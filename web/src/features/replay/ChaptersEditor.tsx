// Chapters by hand, for whoever may set them (the course's teachers and assistants, the
// recording's owner, admins): the chapters set by hand as rows of time and title, a new one at
// the playhead, removal, and Save (`PUT /api/v1/recordings/{id}/chapters`, which replaces the
// chapters set by hand; those of pinned questions stay and are not listed here).
import { useState } from 'react';
import { formatDuration, useI18n } from '../../lib/i18n';
import { putChapters } from '../interaction/api';
import type { TimelineChapter } from '../interaction/types';
import { addAt, draftsOf, MAX_TITLE, toChapters, type ChapterDraft } from './chapters';

export function ChaptersEditor({
  recordingId,
  chapters,
  durationS,
  time,
  onSaved,
  onCancel,
}: {
  recordingId: string;
  chapters: readonly TimelineChapter[];
  durationS: number;
  /** The playhead (seconds). */
  time: number;
  onSaved: () => Promise<void>;
  onCancel: () => void;
}) {
  const { t } = useI18n();
  const [drafts, setDrafts] = useState<ChapterDraft[]>(() => draftsOf(chapters));
  const [added, setAdded] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const edit = (key: string, patch: Partial<ChapterDraft>) => setDrafts((ds) => ds.map((d) => (d.key === key ? { ...d, ...patch } : d)));
  const add = () => {
    const r = addAt(drafts, time);
    setDrafts(r.drafts);
    setAdded(r.key);
  };
  const save = async (e: React.FormEvent) => {
    e.preventDefault();
    setError(null);
    const r = toChapters(drafts, durationS);
    if (!r.ok) {
      const p = r.problem;
      setError(
        p.kind === 'count'
          ? t('chapters.tooMany')
          : t(p.kind === 'time' ? 'chapters.badTime' : 'chapters.badTitle', { n: p.index + 1 }),
      );
      return;
    }
    setSaving(true);
    try {
      await putChapters(recordingId, r.chapters);
      await onSaved();
    } catch (err) {
      setError(t('chapters.failed', { detail: err instanceof Error ? err.message : String(err) }));
    } finally {
      setSaving(false);
    }
  };
  return (
    <form className="chapters-editor" data-testid="chapters-editor" onSubmit={(e) => void save(e)} noValidate>
      <h3>{t('chapters.editing')}</h3>
      <p className="muted small">{t('chapters.hint')}</p>
      {drafts.length === 0 ? (
        <p className="muted">{t('chapters.none')}</p>
      ) : (
        <ol className="chapter-inputs">
          {drafts.map((d, i) => (
            <li key={d.key} className="chapter-input-row" data-testid="chapter-input">
              <input
                name={`chapter_t_${i}`}
                className="chapter-input-t"
                data-testid="chapter-input-t"
                aria-label={t('chapters.timeOf', { n: i + 1 })}
                inputMode="decimal"
                autoComplete="off"
                size={8}
                value={d.time}
                onChange={(e) => edit(d.key, { time: e.target.value })}
              />
              <input
                name={`chapter_title_${i}`}
                className="chapter-input-title"
                data-testid="chapter-input-title"
                aria-label={t('chapters.titleOf', { n: i + 1 })}
                placeholder={t('chapters.titleLabel')}
                autoComplete="off"
                maxLength={MAX_TITLE}
                // A row just added at the playhead: type its title at once.
                autoFocus={d.key === added}
                value={d.title}
                onChange={(e) => edit(d.key, { title: e.target.value })}
              />
              <button
                type="button"
                className="button button-small button-secondary"
                data-testid="chapter-remove"
                aria-label={t('chapters.removeOf', { n: i + 1 })}
                onClick={() => setDrafts((ds) => ds.filter((x) => x.key !== d.key))}
              >
                {t('chapters.remove')}
              </button>
            </li>
          ))}
        </ol>
      )}
      <div className="actions">
        <button type="button" className="button button-small button-secondary" data-testid="chapter-add" onClick={add}>
          {t('chapters.add', { time: formatDuration(time) })}
        </button>
        <button type="submit" className="button button-small" data-testid="chapters-save" disabled={saving}>
          {t('chapters.save')}
        </button>
        <button type="button" className="button button-small button-secondary" onClick={onCancel} disabled={saving}>
          {t('common.cancel')}
        </button>
      </div>
      {error && (
        <p className="form-error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
