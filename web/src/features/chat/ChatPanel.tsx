// The lesson's chat: history, live messages, own-message recall (moderators: any message, and
// mute a student), reactions, an unread marker, and reconnect-and-resume through ChatClient.
// The page may hand over the room's client (its socket also carries the lesson's questions and
// polls); without one the panel opens its own.
import { useEffect, useMemo, useRef, useState, useSyncExternalStore, type FormEvent } from 'react';
import { apiFetch } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { cachedName, lookupName } from '../../lib/profiles';
import type { ChatClient } from './client';
import { channelClient } from './socket';
import { Attachment, uploadAttachment, type AttachmentData } from './Attachment';

const QUICK_REACTIONS = ['👍', '❤️', '😂', '🎉'];

function useName(id: string | null): string {
  const [name, setName] = useState(() => (id ? (cachedName(id) ?? '') : ''));
  useEffect(() => {
    if (id && !name) void lookupName(id).then((n) => n && setName(n));
  }, [id, name]);
  return name;
}

function Sender({ id, me }: { id: string | null; me: string }) {
  const { t } = useI18n();
  const name = useName(id);
  return <strong className="chat-sender">{id === me ? t('chat.you') : name || '…'}</strong>;
}

export function ChatPanel({
  channel,
  me,
  moderate,
  client: shared,
  compact = false,
}: {
  channel: string;
  me: string;
  moderate: boolean;
  /** The room's client, started and stopped by its owner. */
  client?: ChatClient;
  /** Inside tabs: the tab names the panel, the heading is for screen readers only. */
  compact?: boolean;
}) {
  const { t, dateTime } = useI18n();
  const own = useMemo(() => (shared ? null : channelClient(channel, 50)), [channel, shared]);
  const client = shared ?? own!;
  useEffect(() => {
    if (!own) return;
    void own.start();
    return () => own.stop();
  }, [own]);
  const snap = useSyncExternalStore(
    (l) => client.subscribe(l),
    () => client.getSnapshot(),
  );
  const [text, setText] = useState('');
  const [uploading, setUploading] = useState(false);
  const [uploadError, setUploadError] = useState<string | null>(null);
  const attach = async (file: File | undefined) => {
    if (!file) return;
    setUploading(true);
    setUploadError(null);
    try {
      client.send(text.trim(), await uploadAttachment(file));
      setText('');
    } catch (e) {
      setUploadError(e instanceof Error ? e.message : String(e));
    } finally {
      setUploading(false);
    }
  };
  const list = useRef<HTMLOListElement>(null);
  const visible = snap.messages.filter((m) => m.kind === 'text' || m.kind === 'notice');
  // Follow the newest message unless the reader scrolled up.
  useEffect(() => {
    const el = list.current;
    if (el && el.scrollHeight - el.scrollTop - el.clientHeight < 120) el.scrollTop = el.scrollHeight;
  }, [visible.length, snap.pending.length]);
  useEffect(() => {
    const onFocus = () => client.markRead();
    window.addEventListener('focus', onFocus);
    return () => window.removeEventListener('focus', onFocus);
  }, [client]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const body = text.trim();
    if (!body) return;
    client.send(body);
    setText('');
  };
  const mute = async (userId: string) => {
    await apiFetch(`/api/v1/chat/channels/${encodeURIComponent(channel)}/mutes/${userId}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ duration_s: 600 }),
    });
  };
  const firstUnread = visible.find((m) => m.seq > snap.readSeq && m.sender_id !== me);

  return (
    <section className="chat" aria-labelledby="chat-title" data-status={snap.status}>
      <h2 id="chat-title" className={compact ? 'sr-only' : undefined}>
        {t('chat.title')}
      </h2>
      {snap.status !== 'subscribed' && (
        <p className="chat-status" role="status">
          {snap.status === 'closed' && snap.error === 'access_revoked'
            ? t('chat.revoked')
            : snap.status === 'resuming'
              ? t('chat.reconnecting')
              : t('chat.connecting')}
        </p>
      )}
      <ol className="chat-list" ref={list} aria-live="polite" aria-relevant="additions" data-testid="chat-list">
        {visible.length === 0 && snap.pending.length === 0 && <li className="muted">{t('chat.empty')}</li>}
        {visible.map((m) => {
          const mine = m.sender_id === me;
          return (
            <li key={m.id} className={`chat-msg ${mine ? 'chat-mine' : ''}`} data-seq={m.seq}>
              {m === firstUnread && <div className="chat-unread">{t('chat.unread')}</div>}
              <div className="chat-meta">
                <Sender id={m.sender_id} me={me} />
                <time dateTime={m.created_at}>{dateTime(m.created_at, { timeStyle: 'short' })}</time>
              </div>
              {m.deleted ? (
                <p className="muted">{t('chat.removed')}</p>
              ) : (
                <>
                  <div className="chat-body" dangerouslySetInnerHTML={{ __html: m.html }} />
                  {(m.data as { attachment?: AttachmentData } | null)?.attachment && (
                    <Attachment a={(m.data as { attachment: AttachmentData }).attachment} />
                  )}
                </>
              )}
              {!m.deleted && m.kind === 'text' && (
                <div className="chat-actions">
                  {QUICK_REACTIONS.map((emoji) => {
                    const r = m.reactions?.find((x) => x.emoji === emoji);
                    return (
                      <button
                        key={emoji}
                        type="button"
                        className={`reaction ${r?.me ? 'reaction-on' : ''}`}
                        aria-label={t('chat.react', { emoji })}
                        aria-pressed={Boolean(r?.me)}
                        onClick={() => client.react(m.id, emoji, !r?.me)}
                      >
                        {emoji}
                        {r && r.count > 0 ? ` ${r.count}` : ''}
                      </button>
                    );
                  })}
                  {(mine || moderate) && (
                    <button type="button" className="link-button" onClick={() => client.recall(m.id)}>
                      {t('chat.recall')}
                    </button>
                  )}
                  {moderate && !mine && m.sender_id && (
                    <button type="button" className="link-button" onClick={() => void mute(m.sender_id!)}>
                      {t('chat.mute')}
                    </button>
                  )}
                </div>
              )}
            </li>
          );
        })}
        {snap.pending.map((p) => (
          <li key={p.client_id} className="chat-msg chat-mine chat-pending">
            <div className="chat-meta">
              <strong>{t('chat.you')}</strong> <span className="muted">{t('chat.sending')}</span>
            </div>
            <p>{p.body}</p>
          </li>
        ))}
      </ol>
      {snap.muted ? (
        <p className="muted" role="status">
          {t('chat.muted')}
        </p>
      ) : (
        <form className="chat-form" onSubmit={submit}>
          <label className="sr-only" htmlFor={`chat-input-${channel}`}>
            {t('chat.placeholder')}
          </label>
          <input
            id={`chat-input-${channel}`}
            value={text}
            maxLength={2000}
            placeholder={t('chat.placeholder')}
            onChange={(e) => setText(e.target.value)}
            onFocus={() => client.markRead()}
            autoComplete="off"
          />
          <label className="icon-button attach" title={t('chat.attach')}>
            <span aria-hidden="true">📎</span>
            <span className="sr-only">{t('chat.attach')}</span>
            <input
              type="file"
              className="sr-only"
              disabled={uploading}
              onChange={(e) => {
                void attach(e.target.files?.[0]);
                e.target.value = '';
              }}
            />
          </label>
          <button type="submit" className="button" disabled={uploading}>
            {uploading ? t('chat.sending') : t('chat.send')}
          </button>
        </form>
      )}
      {uploadError && (
        <p className="form-error" role="alert">
          {t('chat.failed', { detail: uploadError })}
        </p>
      )}
      {snap.error && snap.error !== 'signed_out' && snap.error !== 'access_revoked' && (
        <p className="form-error" role="alert">
          {t('chat.failed', { detail: snap.error })}
        </p>
      )}
    </section>
  );
}
