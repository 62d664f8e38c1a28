// One course in the studio: its details (title, summary, Markdown description with the
// server's rendering of the text being written as the preview, price, tags, cover), its visibility (publish, unpublish,
// archive, delete), and tabs for its lessons, roster, attendance, recordings and chat.
import { useEffect, useState } from 'react';
import { Link, useLocation } from 'wouter';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, apiFetch, must, ApiProblem } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import type { MessageKey } from '../../lib/i18n/en';
import { ErrorMessage, Loading } from '../../components/Status';
import type { components } from '../../api/schema';
import { Lessons } from './Lessons';
import { Roster } from './Roster';
import { Attendance } from './Attendance';
import { Recordings } from './Recordings';
import { CoverPicker } from './CoverPicker';
import { ChatModeration } from './ChatModeration';

type Course = components['schemas']['CourseResponse'];
const TABS: [string, MessageKey][] = [
  ['details', 'studio.tab.details'],
  ['lessons', 'studio.tab.lessons'],
  ['roster', 'studio.tab.roster'],
  ['attendance', 'studio.tab.attendance'],
  ['recordings', 'studio.tab.recordings'],
  ['chat', 'studio.tab.chat'],
];

export function CourseEditor({ id, tab }: { id: string; tab: string }) {
  const { t } = useI18n();
  const course = useQuery({
    queryKey: ['course', id],
    queryFn: async () => must(await api.GET('/api/v1/courses/{id}', { params: { path: { id } } })),
  });
  if (course.isPending) return <Loading />;
  if (course.isError) return <ErrorMessage error={course.error} retry={() => void course.refetch()} />;
  const c = course.data;
  return (
    <>
      <p>
        <Link href="/">← {t('studio.courses')}</Link>
      </p>
      <h1>
        {c.title} <span className={`badge badge-${c.visibility}`} data-testid="course-visibility">{t(`studio.vis.${c.visibility}`)}</span>
      </h1>
      <nav className="tabs" aria-label={t('studio.course')}>
        {TABS.map(([key, label]) => (
          <Link
            key={key}
            href={`/courses/${id}/${key}`}
            className={`tab${tab === key ? ' tab-on' : ''}`}
            aria-current={tab === key ? 'page' : undefined}
          >
            {t(label)}
          </Link>
        ))}
      </nav>
      {tab === 'details' && <Details course={c} />}
      {tab === 'lessons' && <Lessons courseId={id} />}
      {tab === 'roster' && <Roster courseId={id} />}
      {tab === 'attendance' && <Attendance courseId={id} />}
      {tab === 'recordings' && <Recordings courseId={id} />}
      {tab === 'chat' && <ChatModeration courseId={id} />}
    </>
  );
}

function Details({ course: c }: { course: Course }) {
  const { t, locale } = useI18n();
  const qc = useQueryClient();
  const [, navigate] = useLocation();
  const digits = new Intl.NumberFormat(locale, { style: 'currency', currency: c.price.currency }).resolvedOptions()
    .maximumFractionDigits ?? 2;
  const [form, setForm] = useState(() => ({
    title: c.title,
    summary: c.summary,
    description: c.description,
    price: String(c.price.amount / 10 ** digits),
    currency: c.price.currency,
    tags: c.tags.join(', '),
  }));
  const [preview, setPreview] = useState(false);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  useEffect(() => setMsg(null), [c.id]);
  const set = (k: keyof typeof form) => (e: React.ChangeEvent<HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement>) =>
    setForm({ ...form, [k]: e.target.value });
  const refresh = async () => {
    await qc.invalidateQueries({ queryKey: ['course', c.id] });
    await qc.invalidateQueries({ queryKey: ['courses'] });
  };
  const fail = (e: unknown) => setMsg({ ok: false, text: e instanceof Error ? e.message : String(e) });
  const save = async (e?: React.FormEvent) => {
    e?.preventDefault();
    const d = new Intl.NumberFormat('en', { style: 'currency', currency: form.currency }).resolvedOptions()
      .maximumFractionDigits ?? 2;
    const amount = Math.round(Number(form.price) * 10 ** d);
    if (!Number.isFinite(amount) || amount < 0) {
      setMsg({ ok: false, text: t('studio.badPrice') });
      return;
    }
    try {
      must(
        await api.PATCH('/api/v1/courses/{id}', {
          params: { path: { id: c.id } },
          body: {
            title: form.title,
            summary: form.summary,
            description: form.description,
            price: { amount, currency: form.currency },
            tags: form.tags
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean),
          },
        }),
      );
      await refresh();
      setMsg({ ok: true, text: t('studio.saved') });
    } catch (err) {
      fail(err);
    }
  };
  const setVisibility = async (visibility: 'draft' | 'published' | 'archived') => {
    try {
      must(await api.PATCH('/api/v1/courses/{id}', { params: { path: { id: c.id } }, body: { visibility } }));
      await refresh();
      setMsg({ ok: true, text: t(`studio.vis.${visibility}`) });
    } catch (err) {
      fail(err);
    }
  };
  const remove = async () => {
    if (!window.confirm(t('studio.deleteConfirm', { title: c.title }))) return;
    const r = await apiFetch(`/api/v1/courses/${c.id}`, { method: 'DELETE' });
    if (!r.ok && r.status !== 404) {
      const p = (await r.json().catch(() => ({}))) as { code?: string; detail?: string };
      fail(new ApiProblem(r.status, p.code, p.detail));
      return;
    }
    await qc.invalidateQueries({ queryKey: ['courses'] });
    navigate('/');
  };
  return (
    <div className="editor">
      <form className="form" onSubmit={save}>
        <label>
          {t('studio.courseTitle')}
          <input name="title" required maxLength={200} value={form.title} onChange={set('title')} />
        </label>
        <label>
          {t('studio.summary')}
          <input name="summary" maxLength={500} value={form.summary} onChange={set('summary')} />
        </label>
        <div className="tabs" role="group" aria-label={t('studio.description')}>
          <button type="button" className={`tab${preview ? '' : ' tab-on'}`} aria-pressed={!preview} onClick={() => setPreview(false)}>
            {t('studio.write')}
          </button>
          <button type="button" className={`tab${preview ? ' tab-on' : ''}`} aria-pressed={preview} onClick={() => setPreview(true)}>
            {t('studio.preview')}
          </button>
        </div>
        {preview ? (
          <DescriptionPreview markdown={form.description} saved={form.description === c.description ? c.description_html : null} />
        ) : (
          <label>
            {t('studio.description')}
            <textarea name="description" rows={8} value={form.description} onChange={set('description')} />
            <small>{t('studio.markdownHint')}</small>
          </label>
        )}
        <div className="row">
          <label>
            {t('studio.price')}
            <input name="price" type="number" min="0" step="0.01" inputMode="decimal" value={form.price} onChange={set('price')} />
          </label>
          <label>
            {t('studio.currency')}
            <select name="currency" value={form.currency} onChange={set('currency')}>
              {['CNY', 'USD', 'EUR', 'HKD', 'JPY'].map((x) => (
                <option key={x} value={x}>
                  {x}
                </option>
              ))}
            </select>
          </label>
        </div>
        <label>
          {t('studio.tags')}
          <input name="tags" value={form.tags} onChange={set('tags')} />
          <small>{t('studio.tagsHint')}</small>
        </label>
        <div className="actions">
          <button type="submit" className="button">
            {t('common.save')}
          </button>
        </div>
        {msg && (
          <p className={msg.ok ? 'form-ok' : 'form-error'} role={msg.ok ? 'status' : 'alert'}>
            {msg.text}
          </p>
        )}
      </form>
      <aside className="editor-side">
        <CoverPicker course={c} onChanged={refresh} />
        <h2>{t('studio.visibility')}</h2>
        <p className="muted">{t(`studio.visHelp.${c.visibility}`)}</p>
        <div className="actions">
          {c.visibility !== 'published' && (
            <button type="button" className="button" onClick={() => void setVisibility('published')}>
              {t('studio.publish')}
            </button>
          )}
          {c.visibility === 'published' && (
            <button type="button" className="button button-secondary" onClick={() => void setVisibility('draft')}>
              {t('studio.unpublish')}
            </button>
          )}
          {c.visibility !== 'archived' && (
            <button type="button" className="button button-secondary" onClick={() => void setVisibility('archived')}>
              {t('studio.archive')}
            </button>
          )}
          <button type="button" className="button button-danger" onClick={() => void remove()}>
            {t('studio.delete')}
          </button>
        </div>
        {c.visibility === 'published' && (
          <p>
            <Link href={`~/courses/${c.id}`}>{t('studio.viewInCatalogue')}</Link>
          </p>
        )}
      </aside>
    </div>
  );
}

/** The server's rendering of `markdown` (sanitized there with ammonia, as the course page will
 * show it): the saved HTML when the text is the saved one, else a render of the text as it is
 * now (POST /courses/description-preview; nothing is saved). */
function DescriptionPreview({ markdown, saved }: { markdown: string; saved: string | null }) {
  const { t } = useI18n();
  const render = useQuery({
    queryKey: ['description-preview', markdown],
    enabled: saved === null,
    staleTime: Infinity,
    queryFn: async () => must(await api.POST('/api/v1/courses/description-preview', { body: { markdown } })).html,
  });
  const html = saved ?? render.data;
  return (
    <div className="prose preview-box" data-testid="description-preview">
      {saved === null && <p className="notice">{t('studio.previewUnsaved')}</p>}
      {render.isError && <ErrorMessage error={render.error} retry={() => void render.refetch()} />}
      {html === undefined ? !render.isError && <Loading /> : <div dangerouslySetInnerHTML={{ __html: html }} />}
    </div>
  );
}
