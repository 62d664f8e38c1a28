// Moderation of a course's chat channel outside the classroom: the room (only teachers post;
// slow mode) and, per student of the roster, mute (for a while or until lifted) and ban.
// The API keeps no list of who is muted to show here; each action reports its outcome.
import { useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { api, must, mustOk } from '../../api/client';
import { useI18n } from '../../lib/i18n';
import { ErrorMessage, Loading } from '../../components/Status';

export function ChatModeration({ courseId }: { courseId: string }) {
  const { t } = useI18n();
  const channel = `course:${courseId}`;
  const [muted, setMuted] = useState(false);
  const [slow, setSlow] = useState('0');
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
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
  };
  const path = (user_id: string) => ({ params: { path: { channel, user_id } } });
  return (
    <div>
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
      {msg && (
        <p className={msg.ok ? 'form-ok' : 'form-error'} role={msg.ok ? 'status' : 'alert'} data-testid="moderation-result">
          {msg.text}
        </p>
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
                  <td>{r.display_name}</td>
                  <td className="actions">
                    <button
                      type="button"
                      className="button button-small button-secondary"
                      onClick={() =>
                        void run(async () => mustOk(await api.PUT('/api/v1/chat/channels/{channel}/mutes/{user_id}', { ...path(r.user_id), body: { duration_s: 600 } })), t('studio.chat.mutedDone', { name: r.display_name }))
                      }
                    >
                      {t('chat.mute')}
                    </button>
                    <button
                      type="button"
                      className="button button-small button-secondary"
                      onClick={() => void run(async () => mustOk(await api.DELETE('/api/v1/chat/channels/{channel}/mutes/{user_id}', path(r.user_id))), t('studio.chat.unmutedDone', { name: r.display_name }))}
                    >
                      {t('studio.chat.unmute')}
                    </button>
                    <button
                      type="button"
                      className="button button-small button-danger"
                      onClick={() =>
                        void run(async () => {
                          const reason = window.prompt(t('studio.chat.banReason')) ?? '';
                          mustOk(await api.PUT('/api/v1/chat/channels/{channel}/bans/{user_id}', { ...path(r.user_id), body: { reason } }));
                        }, t('studio.chat.bannedDone', { name: r.display_name }))
                      }
                    >
                      {t('studio.chat.ban')}
                    </button>
                    <button
                      type="button"
                      className="button button-small button-secondary"
                      onClick={() => void run(async () => mustOk(await api.DELETE('/api/v1/chat/channels/{channel}/bans/{user_id}', path(r.user_id))), t('studio.chat.unbannedDone', { name: r.display_name }))}
                    >
                      {t('studio.chat.unban')}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
