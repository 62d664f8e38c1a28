// The course cover: pick an image, see it cropped to 16:9 (what the catalogue cards show),
// upload it as a 1280×720 JPEG. Cropping here keeps uploads small and the cards consistent.
import { useEffect, useState } from 'react';
import { apiFetch, ApiProblem } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import type { components } from '../../api/schema';

const W = 1280;
const H = 720;

async function crop16x9(file: File): Promise<Blob> {
  const bitmap = await createImageBitmap(file);
  const scale = Math.max(W / bitmap.width, H / bitmap.height);
  const sw = W / scale;
  const sh = H / scale;
  const canvas = document.createElement('canvas');
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('canvas');
  ctx.drawImage(bitmap, (bitmap.width - sw) / 2, (bitmap.height - sh) / 2, sw, sh, 0, 0, W, H);
  bitmap.close();
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
  const [blob, setBlob] = useState<Blob | null>(null);
  const [url, setUrl] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => () => void (url && URL.revokeObjectURL(url)), [url]);
  const pick = async (e: React.ChangeEvent<HTMLInputElement>) => {
    const f = e.target.files?.[0];
    setError(null);
    if (!f) return;
    try {
      const b = await crop16x9(f);
      setBlob(b);
      setUrl(URL.createObjectURL(b));
    } catch {
      setError(t('studio.coverUnreadable'));
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
      {blob && (
        <button type="button" className="button" onClick={() => void upload()} disabled={busy}>
          {t('studio.coverUpload')}
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
