// Q&A of a live lesson. Students ask (optionally anonymous to classmates — never to the
// teacher, and the form says so) and upvote others' questions; moderators see every author and
// answer, pin, dismiss or reopen. One list for both, in the teacher's queue order.
import { useState } from 'react';
import { useI18n } from '../../lib/i18n';
import type { MessageKey } from '../../lib/i18n/en';
import { useName } from '../../lib/useName';
import type { InteractionClient, InteractionSnapshot, QuestionView } from './client';
import { Refusal, Toast } from './Feedback';
import { useConfirmation, useRefusal } from './hooks';

const MAX_BODY = 500;

function Author({ q, me, moderator }: { q: QuestionView; me: string; moderator: boolean }) {
  const { t } = useI18n();
  const name = useName(q.author_id && q.author_id !== me ? q.author_id : null);
  const who = q.mine || (q.author_id !== null && q.author_id === me) ? t('qa.you') : q.author_id ? name || '…' : t('qa.classmate');
  return (
    <span className="question-author" data-testid="question-author">
      {who}
      {q.anonymous && (moderator || q.mine) && <span className="muted"> · {t('qa.anonymousToClassmates')}</span>}
    </span>
  );
}

function QuestionItem({
  q,
  me,
  moderator,
  client,
}: {
  q: QuestionView;
  me: string;
  moderator: boolean;
  client: InteractionClient;
}) {
  const { t, dateTime } = useI18n();
  const own = q.mine || (q.author_id !== null && q.author_id === me);
  const setState = (s: QuestionView['state']) => client.setQuestionState(q.id, s);
  return (
    <li className={`question question-${q.state}`} data-testid="question" data-question-id={q.id} data-state={q.state}>
      <div className="question-vote">
        {moderator ? (
          <span className="question-count" aria-label={t('qa.votes')}>
            <span aria-hidden="true">▲</span> <span data-testid="question-votes">{q.votes}</span>
          </span>
        ) : (
          <>
            <button
              type="button"
              className={`upvote ${q.voted ? 'upvote-on' : ''}`}
              data-testid="upvote"
              aria-pressed={q.voted}
              disabled={own}
              aria-label={own ? t('qa.ownQuestion') : t('qa.upvoteLabel')}
              title={own ? t('qa.ownQuestion') : t('qa.upvote')}
              onClick={() => client.vote(q.id, !q.voted)}
            >
              ▲
            </button>
            <span data-testid="question-votes" aria-label={t('qa.votes')}>
              {q.votes}
            </span>
          </>
        )}
      </div>
      <div className="question-main">
        <p className="question-body">{q.body}</p>
        <p className="question-meta">
          <span className={`badge badge-q-${q.state}`} data-testid="question-state">
            {t(`qa.state.${q.state}` as MessageKey)}
          </span>{' '}
          <Author q={q} me={me} moderator={moderator} />{' '}
          <time dateTime={q.created_at} className="muted">
            {dateTime(q.created_at, { timeStyle: 'short' })}
          </time>
        </p>
        {moderator && (
          <div className="question-actions actions">
            {(q.state === 'open' || q.state === 'pinned') && (
              <>
                <button type="button" className="button button-small" data-testid="q-answer" onClick={() => setState('answered')}>
                  {t('qa.answer')}
                </button>
                <button
                  type="button"
                  className="button button-small button-secondary"
                  data-testid="q-pin"
                  aria-pressed={q.state === 'pinned'}
                  onClick={() => setState(q.state === 'pinned' ? 'open' : 'pinned')}
                >
                  {q.state === 'pinned' ? t('qa.unpin') : t('qa.pin')}
                </button>
                <button type="button" className="button button-small button-secondary" data-testid="q-dismiss" onClick={() => setState('dismissed')}>
                  {t('qa.dismissAction')}
                </button>
              </>
            )}
            {(q.state === 'answered' || q.state === 'dismissed') && (
              <button type="button" className="button button-small button-secondary" data-testid="q-reopen" onClick={() => setState('open')}>
                {t('qa.reopen')}
              </button>
            )}
          </div>
        )}
      </div>
    </li>
  );
}

export function QuestionsPanel({
  client,
  snap,
  me,
  moderator,
  muted,
}: {
  client: InteractionClient;
  snap: InteractionSnapshot;
  me: string;
  moderator: boolean;
  /** The room is muted for this reader (students cannot ask). */
  muted: boolean;
}) {
  const { t } = useI18n();
  const [text, setText] = useState('');
  const [anonymous, setAnonymous] = useState(false);
  const confirmation = useConfirmation(snap, ['asked']);
  const [refusal, dismiss] = useRefusal(snap, ['ask', 'vote', 'question_state']);
  const submit = (e: { preventDefault(): void }) => {
    e.preventDefault();
    const body = text.trim();
    if (!body) return;
    client.ask(body, moderator ? false : anonymous);
    setText('');
  };
  const cannotAsk = muted && !moderator;

  return (
    <section className="qa" aria-labelledby="qa-title">
      <h2 id="qa-title" className="sr-only">
        {t('qa.title')}
      </h2>
      {cannotAsk ? (
        <p className="muted" role="status">
          {t('qa.muted')}
        </p>
      ) : (
        <form className="ask-form" onSubmit={submit}>
          <label htmlFor="ask-input">{t('qa.ask')}</label>
          <textarea
            id="ask-input"
            data-testid="ask-input"
            value={text}
            maxLength={MAX_BODY}
            rows={2}
            placeholder={t('qa.placeholder')}
            onChange={(e) => setText(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === 'Enter' && !e.shiftKey) submit(e);
            }}
          />
          {!moderator && (
            <>
              <label className="check">
                <input type="checkbox" data-testid="ask-anonymous" checked={anonymous} onChange={(e) => setAnonymous(e.target.checked)} />
                {t('qa.anonymous')}
              </label>
              <p className="muted small ask-hint">{t('qa.anonymousHint')}</p>
            </>
          )}
          <button type="submit" className="button button-small" data-testid="ask-submit" disabled={!text.trim()}>
            {t('qa.submit')}
          </button>
        </form>
      )}
      <Toast confirmation={confirmation} />
      <Refusal error={refusal} onDismiss={dismiss} />
      <ol className="questions" data-testid="questions" aria-live="polite" aria-relevant="additions">
        {snap.asking.map((a) => (
          <li key={a.client_id} className="question question-pending">
            <div className="question-vote" />
            <div className="question-main">
              <p className="question-body">{a.body}</p>
              <p className="question-meta muted">{t('qa.sending')}</p>
            </div>
          </li>
        ))}
        {snap.questions.length === 0 && snap.asking.length === 0 && <li className="muted">{t('qa.empty')}</li>}
        {snap.questions.map((q) => (
          <QuestionItem key={q.id} q={q} me={me} moderator={moderator} client={client} />
        ))}
      </ol>
    </section>
  );
}
