// A chat attachment: the file is behind an authenticated redirect to a short-lived presigned
// URL, so the page fetches it with the access token and shows it from a blob URL.
import { useEffect, useState } from 'react';
import { apiFetch } from '../../api/client';

export interface AttachmentData {
  id: string;
  name: string;
  content_type: string;
  size_bytes: number;
  url: string;
  thumbnail_url: string | null;
}

async function blobUrl(url: string): Promise<string | null> {
  const r = await apiFetch(url);
  return r.ok ? URL.createObjectURL(await r.blob()) : null;
}

function size(n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(0)} KB` : `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function Attachment({ a }: { a: AttachmentData }) {
  const [thumb, setThumb] = useState<string | null>(null);
  useEffect(() => {
    if (!a.thumbnail_url) return;
    let url: string | null = null;
    void blobUrl(a.thumbnail_url).then((u) => {
      url = u;
      setThumb(u);
    });
    return () => {
      if (url) URL.revokeObjectURL(url);
    };
  }, [a.thumbnail_url]);
  const open = async () => {
    const u = await blobUrl(a.url);
    if (!u) return;
    const link = document.createElement('a');
    link.href = u;
    link.download = a.name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(u), 10_000);
  };
  return (
    <button type="button" className="attachment" onClick={() => void open()}>
      {thumb && <img src={thumb} alt="" />}
      <span>
        📎 {a.name} <span className="muted">({size(a.size_bytes)})</span>
      </span>
    </button>
  );
}

/** Upload a file for a chat message: reserve, PUT to the presigned URL, answer its id. */
export async function uploadAttachment(file: File): Promise<string> {
  const r = await apiFetch('/api/v1/chat/uploads', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: file.name, content_type: file.type || 'application/octet-stream', size_bytes: file.size }),
  });
  if (r.status !== 201) {
    const p = (await r.json().catch(() => ({}))) as { detail?: string };
    throw new Error(p.detail ?? `upload: HTTP ${r.status}`);
  }
  const up = (await r.json()) as { id: string; upload_url: string; method: string };
  const put = await fetch(up.upload_url, {
    method: up.method || 'PUT',
    headers: { 'content-type': file.type || 'application/octet-stream' },
    body: file,
  });
  if (!put.ok) throw new Error(`upload: HTTP ${put.status}`);
  return up.id;
}
