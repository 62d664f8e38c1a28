// Moderation of a course's chat outside the classroom, from the server's own state
// (GET …/moderation): the room's settings as they are, who is muted in the course channel and
// until when, who is banned from the course's chat and why; per student of the roster, mute and
// ban (or lift them); and the channel's latest messages, which a moderator can remove.
import { useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, must, mustOk } from '../../api/client';
import type { components } from '../../api/schema';
import { useI18n } from '../../lib/i18n';
import { useName } from '../../lib/useName';
import { ErrorMessage, Loading } from '../../components/Status';

type Moderation = components['schemas']['Moderation'];
type Message = components['schemas']['MessageView'];

export function ChatModeration({ courseId }: { courseId: string }) {
  const { t, dateTime } = useI18n();
  const qc = useQueryClient();
  const channel = `course:${courseId}`;
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const state = useQuery({
    queryKey: ['chat-moderation', channel],
    queryFn: async () => must(await api.GET('/api/v1/chat/channels/{channel}/moderation', { params: { path: { channel } } })),
  });
  const roster = useQuery({
    queryKey: ['roster', courseId, 'active'],
    queryFn: async () =>
      must(await api.GET('/api/v1/courses/{id}/enrollments', { params: { path: { id: courseId }, query: { status: 'active', limit: 100 } } })),
  });
  const run = async (f: () => Promise<void>, done: string) => {
    setMsg(null);
    try {
      await f();
      setMsg({ ok: true, text: done });
    } catch (e) {
      setMsg({ ok: false, text: e instanceof Error ? e.message : String(e) });
    }
    await qc.invalidateQueries({ queryKey: ['chat-moderation', channel] });
  };
  const path = (user_id: string) => ({ params: { path: { channel, user_id } } });
  const unmute = (user_id: string, name: string) =>
    void run(async () => mustOk(await api.DELETE('/api/v1/chat/channels/{channel}/mutes/{user_id}', path(user_id))), t('studio.chat.unmutedDone', { name }));
  const unban = (user_id: string, name: string) =>
    void run(async () => mustOk(await api.DELETE('/api/v1/chat/channels/{channel}/bans/{user_id}', path(user_id))), t('studio.chat.unbannedDone', { name }));
  const m = state.data;
  const muted = new Set(m?.mutes.map((x) => x.user_id));
  const banned = new Set(m?.bans.map((x) => x.user_id));
  return (
    <div>
      {state.isPending && <Loading />}
      {state.isError && <ErrorMessage error={state.error} retry={() => void state.refetch()} />}
      {/* Keyed by the server's values, so the form starts from them and again after a change. */}
      {m && <RoomForm key={`${m.muted}-${m.slow_mode_s}`} channel={channel} state={m} run={run} />}
      {msg && (
        <p className={msg.ok ? 'form-ok' : 'form-error'} role={msg.ok ? 'status' : 'alert'} data-testid="moderation-result">
          {msg.text}
        </p>
      )}
      {m && (
        <section aria-labelledby="mod-muted">
          <h2 id="mod-muted">{t('studio.chat.mutedNow')}</h2>
          {m.mutes.length === 0 ? (
            <p className="muted">{t('studio.chat.noneMuted')}</p>
          ) : (
            <ListTable testId="mutes" head={[t('studio.chat.who'), t('studio.chat.until')]}>
              {m.mutes.map((x) => (
                <tr key={x.user_id}>
                  <td>{x.display_name}</td>
                  <td>{x.until ? <time dateTime={x.until}>{dateTime(x.until)}</time> : t('studio.chat.untilLifted')}</td>
                  <td className="actions">
                    <button type="button" className="button button-small button-secondary" onClick={() => unmute(x.user_id, x.display_name)}>
                      {t('studio.chat.unmute')}
                    </button>
                  </td>
                </tr>
              ))}
            </ListTable>
          )}
          <h2>{t('studio.chat.bannedNow')}</h2>
          {m.bans.length === 0 ? (
            <p className="muted">{t('studio.chat.noneBanned')}</p>
          ) : (
            <ListTable testId="bans" head={[t('studio.chat.who'), t('studio.chat.reason'), t('studio.chat.since')]}>
              {m.bans.map((x) => (
                <tr key={x.user_id}>
                  <td>{x.display_name}</td>
                  <td>{x.reason || '—'}</td>
                  <td>
                    <time dateTime={x.banned_at}>{dateTime(x.banned_at)}</time>
                  </td>
                  <td className="actions">
                    <button type="button" className="button button-small button-secondary" onClick={() => unban(x.user_id, x.display_name)}>
                      {t('studio.chat.unban')}
                    </button>
                  </td>
                </tr>
              ))}
            </ListTable>
          )}
        </section>
      )}
      <h2>{t('studio.chat.students')}</h2>
      {roster.isPending && <Loading />}
      {roster.isError && <ErrorMessage error={roster.error} retry={() => void roster.refetch()} />}
      {roster.data && roster.data.items.length === 0 && <p>{t('studio.roster.empty')}</p>}
      {roster.data && roster.data.items.length > 0 && (
        <div className="table-wrap">
          <table data-testid="moderation">
            <tbody>
              {roster.data.items.map((r) => (
                <tr key={r.user_id}>
                  <td>
                    {r.display_name}
                    {muted.has(r.user_id) && <span className="badge">{t('studio.chat.isMuted')}</span>}
                    {banned.has(r.user_id) && <span className="badge badge-failed">{t('studio.chat.isBanned')}</span>}
                  </td>
                  <td className="actions">
                    {muted.has(r.user_id) ? (
                      <button type="button" className="button button-small button-secondary" onClick={() => unmute(r.user_id, r.display_name)}>
                        {t('studio.chat.unmute')}
                      </button>
                    ) : (
                      <button
                        type="button"
                        className="button button-small button-secondary"
                        onClick={() =>
                          void run(
                            async () => mustOk(await api.PUT('/api/v1/chat/channels/{channel}/mutes/{user_id}', { ...path(r.user_id), body: { duration_s: 600 } })),
                            t('studio.chat.mutedDone', { name: r.display_name }),
                          )
                        }
                      >
                        {t('chat.mute')}
                      </button>
                    )}
                    {banned.has(r.user_id) ? (
                      <button type="button" className="button button-small button-secondary" onClick={() => unban(r.user_id, r.display_name)}>
                        {t('studio.chat.unban')}
                      </button>
                    ) : (
                      <button
                        type="button"
                        className="button button-small button-danger"
                        onClick={() =>
                          void run(async () => {
                            const reason = window.prompt(t('studio.chat.banReason'));
                            if (reason === null) throw new Error(t('studio.chat.banCancelled'));
                            mustOk(await api.PUT('/api/v1/chat/channels/{channel}/bans/{user_id}', { ...path(r.user_id), body: { reason } }));
                          }, t('studio.chat.bannedDone', { name: r.display_name }))
                        }
                      >
                        {t('studio.chat.ban')}
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <RecentMessages channel={channel} run={run} />
    </div>
  );
}

/** A list of people with columns `head` and a last column of actions. */
function ListTable({ testId, head, children }: { testId: string; head: string[]; children: React.ReactNode }) {
  const { t } = useI18n();
  return (
    <div className="table-wrap">
      <table data-testid={testId}>
        <thead>
          <tr>
            {head.map((h) => (
              <th key={h} scope="col">
                {h}
              </th>
            ))}
            <th scope="col">
              <span className="sr-only">{t('studio.chat.actions')}</span>
            </th>
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}

function RoomForm({ channel, state, run }: { channel: string; state: Moderation; run: (f: () => Promise<void>, done: string) => Promise<void> }) {
  const { t } = useI18n();
  const [muted, setMuted] = useState(state.muted);
  const [slow, setSlow] = useState(String(state.slow_mode_s));
  return (
    <form
      className="form panel"
      onSubmit={(e) => {
        e.preventDefault();
        void run(async () => {
          must(await api.PATCH('/api/v1/chat/channels/{channel}/room', { params: { path: { channel } }, body: { muted, slow_mode_s: Number(slow) || 0 } }));
        }, t('studio.chat.roomSaved'));
      }}
    >
      <h2>{t('studio.chat.room')}</h2>
      <label className="check">
        <input type="checkbox" name="room_muted" checked={muted} onChange={(e) => setMuted(e.target.checked)} />
        {t('studio.chat.onlyTeachers')}
      </label>
      <label>
        {t('studio.chat.slowMode')}
        <input name="slow_mode" type="number" min="0" max="3600" value={slow} onChange={(e) => setSlow(e.target.value)} />
      </label>
      <button type="submit" className="button">
        {t('studio.chat.apply')}
      </button>
    </form>
  );
}

/** The channel's newest messages, newest first, each removable by the moderator. */
function RecentMessages({ channel, run }: { channel: string; run: (f: () => Promise<void>, done: string) => Promise<void> }) {
  const { t } = useI18n();
  const qc = useQueryClient();
  const page = useQuery({
    queryKey: ['chat-history', channel, 'moderation'],
    queryFn: async () => must(await api.GET('/api/v1/chat/channels/{channel}/messages', { params: { path: { channel }, query: { limit: 50 } } })),
  });
  const shown = (page.data?.items ?? []).filter((x) => x.kind === 'text').reverse();
  return (
    <section aria-labelledby="mod-messages">
      <h2 id="mod-messages">{t('studio.chat.messages')}</h2>
      {page.isPending && <Loading />}
      {page.isError && <ErrorMessage error={page.error} retry={() => void page.refetch()} />}
      {page.data && shown.length === 0 && <p className="muted">{t('studio.chat.noMessages')}</p>}
      {shown.length > 0 && (
        <ul className="mod-messages" data-testid="channel-messages">
          {shown.map((x) => (
            <MessageRow
              key={x.id}
              message={x}
              remove={() =>
                void run(async () => {
                  must(await api.DELETE('/api/v1/chat/messages/{id}', { params: { path: { id: x.id } } }));
                  await qc.invalidateQueries({ queryKey: ['chat-history', channel, 'moderation'] });
                }, t('studio.chat.removedDone'))
              }
            />
          ))}
        </ul>
      )}
    </section>
  );
}

function MessageRow({ message, remove }: { message: Message; remove: () => void }) {
  const { t, dateTime } = useI18n();
  const name = useName(message.sender_id);
  return (
    <li data-testid="channel-message">
      <div>
        <strong>{name || '…'}</strong>{' '}
        <time className="muted small" dateTime={message.created_at}>
          {dateTime(message.created_at)}
        </time>
      </div>
      {message.deleted ? <p className="muted">{t('studio.chat.removed')}</p> : <p>{message.body}</p>}
      {!message.deleted && (
        <button type="button" className="button button-small button-danger" onClick={remove}>
          {t('studio.chat.remove')}
        </button>
      )}
    </li>
  );
}
