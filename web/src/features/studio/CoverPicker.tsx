// The course cover: pick an image, see it cropped to 16:9 (what the catalogue cards show),
// choose which part of it stays (a slider along the side that is too long), upload it as a
// 1280×720 JPEG; or remove the cover. Cropping here keeps uploads small and the cards
// consistent.
import { useEffect, useState } from 'react';
import { apiFetch, ApiProblem } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import type { components } from '../../api/schema';

const W = 1280;
const H = 720;

/** Which way the picked image is too long for 16:9 (the slider moves along it), if any. */
function excess(b: ImageBitmap): 'x' | 'y' | null {
  const r = b.width / b.height;
  return Math.abs(r - W / H) < 0.01 ? null : r > W / H ? 'x' : 'y';
}

/** The 16:9 part of `bitmap` at `focus` (0: left/top edge, 50: centre, 100: right/bottom). */
async function crop16x9(bitmap: ImageBitmap, focus: number): Promise<Blob> {
  const scale = Math.max(W / bitmap.width, H / bitmap.height);
  const sw = W / scale;
  const sh = H / scale;
  const canvas = document.createElement('canvas');
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('canvas');
  const f = Math.min(100, Math.max(0, focus)) / 100;
  ctx.drawImage(bitmap, (bitmap.width - sw) * f, (bitmap.height - sh) * f, sw, sh, 0, 0, W, H);
  return new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('toBlob'))), 'image/jpeg', 0.86),
  );
}

export function CoverPicker({
  course,
  onChanged,
}: {
  course: components['schemas']['CourseResponse'];
  onChanged: () => Promise<void>;
}) {
  const { t } = useI18n();
  const [bitmap, setBitmap] = useState<ImageBitmap | null>(null);
  const [focus, setFocus] = useState(50);
  const [blob, setBlob] = useState<Blob | null>(null);
  const [url, setUrl] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => () => void (url && URL.revokeObjectURL(url)), [url]);
  useEffect(() => () => bitmap?.close(), [bitmap]);
  // The preview follows the picked image and the slider.
  useEffect(() => {
    if (!bitmap) return;
    let live = true;
    void crop16x9(bitmap, focus).then(
      (b) => {
        if (!live) return;
        setBlob(b);
        setUrl(URL.createObjectURL(b));
      },
      () => live && setError(t('studio.coverUnreadable')),
    );
    return () => {
      live = false;
    };
  }, [bitmap, focus, t]);
  const pick = async (e: React.ChangeEvent<HTMLInputElement>) => {
    const f = e.target.files?.[0];
    setError(null);
    if (!f) return;
    try {
      setFocus(50);
      setBitmap(await createImageBitmap(f));
    } catch {
      setError(t('studio.coverUnreadable'));
    }
  };
  const remove = async () => {
    if (!window.confirm(t('studio.coverRemoveConfirm'))) return;
    setBusy(true);
    setError(null);
    try {
      const r = await apiFetch(`/api/v1/courses/${course.id}/cover`, { method: 'DELETE' });
      if (!r.ok) {
        const p = (await r.json().catch(() => ({}))) as { code?: string; detail?: string };
        throw new ApiProblem(r.status, p.code, p.detail);
      }
      await onChanged();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  const upload = async () => {
    if (!blob) return;
    setBusy(true);
    setError(null);
    try {
      const r = await apiFetch(`/api/v1/courses/${course.id}/cover`, {
        method: 'PUT',
        headers: { 'content-type': 'image/jpeg' },
        body: blob,
      });
      if (!r.ok) {
        const p = (await r.json().catch(() => ({}))) as { code?: string; detail?: string };
        throw new ApiProblem(r.status, p.code, p.detail);
      }
      setBitmap(null);
      setBlob(null);
      setUrl(null);
      await onChanged();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  const shown = url ?? course.cover_url;
  return (
    <div className="cover-picker">
      <h2>{t('studio.cover')}</h2>
      <div className="card-cover cover-preview">
        {shown ? <img src={shown} alt={url ? t('studio.coverPreview') : t('studio.coverCurrent')} data-testid="cover-img" /> : <span aria-hidden="true">{course.title.slice(0, 1)}</span>}
      </div>
      <label className="file-label">
        {t('studio.coverPick')}
        <input type="file" name="cover" accept="image/png,image/jpeg,image/webp" onChange={pick} />
      </label>
      <small className="muted">{t('studio.coverHint')}</small>
      {bitmap && excess(bitmap) && (
        <label>
          {excess(bitmap) === 'x' ? t('studio.coverFocusX') : t('studio.coverFocusY')}
          <input type="range" name="cover_focus" min="0" max="100" step="1" value={focus} onChange={(e) => setFocus(Number(e.target.value))} />
        </label>
      )}
      {blob && (
        <button type="button" className="button" onClick={() => void upload()} disabled={busy}>
          {t('studio.coverUpload')}
        </button>
      )}
      {!blob && course.cover_url && (
        <button type="button" className="button button-secondary button-small" onClick={() => void remove()} disabled={busy} data-testid="cover-remove">
          {t('studio.coverRemove')}
        </button>
      )}
      {error && (
        <p className="form-error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
