// Polls and quizzes of a live lesson. Students answer the open poll (and may change their
// answer until it closes), see a countdown when it has a timer, and the results once the
// teacher shows them (with the correct answer of a quiz). Moderators open a poll, follow the
// results live, close it and show or hide the results.
import { useState, type FormEvent } from 'react';
import { formatDuration, useI18n } from '../../lib/i18n';
import type { InteractionClient, InteractionSnapshot, PollView } from './client';
import { Refusal, Toast } from './Feedback';
import { useConfirmation, useNow, useRefusal } from './hooks';
import type { PollResults } from './types';

const MIN_OPTIONS = 2;
const MAX_OPTIONS = 10;
const MAX_OPTION_CHARS = 200;

function sameChoices(a: readonly number[], b: readonly number[]): boolean {
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** Seconds left before `closes_at` (null without a timer), ticking. */
function useSecondsLeft(poll: PollView): number | null {
  const ticking = Boolean(poll.closes_at) && !poll.closed;
  const now = useNow(1000, ticking);
  if (!poll.closes_at) return null;
  return Math.max(0, (Date.parse(poll.closes_at) - now) / 1000);
}

function PollHeader({ poll, left }: { poll: PollView; left: number | null }) {
  const { t } = useI18n();
  return (
    <div className="poll-header">
      <h3 className="poll-question" id={`poll-q-${poll.id}`}>
        {poll.question}
      </h3>
      <p className="poll-badges">
        {poll.quiz && <span className="badge badge-quiz">{t('poll.quiz')}</span>}{' '}
        <span className={`badge ${poll.closed ? 'badge-ended' : 'badge-open'}`}>{poll.closed ? t('poll.closed') : t('poll.open')}</span>{' '}
        {left !== null && !poll.closed && (
          <span className="poll-timer" data-testid="poll-timer" role="timer" aria-live="off">
            {t('poll.closesIn', { time: formatDuration(left) })}
          </span>
        )}
      </p>
    </div>
  );
}

export function Results({ poll, results, mine }: { poll: PollView; results: PollResults; mine: number[] | null }) {
  const { t } = useI18n();
  const answered = results.answered;
  return (
    <div className="poll-results" data-testid="poll-results">
      <h4 className="sr-only">{t('poll.results')}</h4>
      <p className="poll-answered" data-testid="poll-answered" data-answered={answered}>
        {t('poll.answeredCount', { n: answered })}
      </p>
      <ol className="bars">
        {poll.options.map((option, i) => {
          const count = results.counts[i] ?? 0;
          const pct = answered ? Math.round((count / answered) * 100) : 0;
          const correct = poll.correct?.includes(i) ?? false;
          const chosen = mine?.includes(i) ?? false;
          return (
            <li key={i} className={`bar ${correct ? 'bar-correct' : ''} ${chosen ? 'bar-mine' : ''}`} data-option={i}>
              <div className="bar-label">
                <span className="bar-text">
                  {option}
                  {correct && <span className="badge badge-correct"> ✓ {t('poll.correct')}</span>}
                  {chosen && <span className="muted small"> · {t('poll.yourChoice')}</span>}
                </span>
                <span className="bar-numbers">
                  <span className="bar-count" data-testid="poll-count">
                    {count}
                  </span>
                  <span className="muted small"> · {pct} %</span>
                </span>
              </div>
              <div className="bar-track" aria-hidden="true">
                <div className="bar-fill" style={{ width: `${pct}%` }} />
              </div>
            </li>
          );
        })}
      </ol>
    </div>
  );
}

function StudentPoll({ poll, client }: { poll: PollView; client: InteractionClient }) {
  const { t } = useI18n();
  // The reader's pick before answering (the view is keyed by poll: a new poll starts afresh).
  const [selected, setSelected] = useState<number[] | null>(null);
  const left = useSecondsLeft(poll);
  const over = poll.closed || left === 0;
  const chosen = selected ?? poll.myChoices ?? [];
  const unchanged = poll.myChoices !== null && sameChoices(chosen, poll.myChoices);
  const toggle = (i: number, on: boolean) => {
    if (!poll.multiple) setSelected([i]);
    else setSelected(on ? [...new Set([...chosen, i])].sort((a, b) => a - b) : chosen.filter((x) => x !== i));
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (chosen.length === 0 || over) return;
    client.answerPoll(poll.id, chosen);
  };
  const showResults = poll.results_shown && poll.results !== null;
  const right = poll.correct && poll.myChoices ? sameChoices(poll.correct, poll.myChoices) : null;

  return (
    <div
      className="poll"
      data-testid="poll"
      data-poll-id={poll.id}
      data-closed={String(poll.closed)}
      data-answer={poll.myChoices?.join(',') ?? ''}
      data-pending={String(poll.answerPending)}
    >
      <PollHeader poll={poll} left={left} />
      <form onSubmit={submit}>
        <fieldset className="poll-choices" disabled={over}>
          <legend className="muted small">{poll.multiple ? t('poll.multiple') : t('poll.single')}</legend>
          {poll.options.map((option, i) => (
            <label key={i} className="radio poll-choice">
              <input
                type={poll.multiple ? 'checkbox' : 'radio'}
                name={`poll-${poll.id}`}
                value={i}
                data-testid="poll-choice"
                checked={chosen.includes(i)}
                onChange={(e) => toggle(i, e.target.checked)}
              />
              {option}
            </label>
          ))}
        </fieldset>
        {!over && (
          <div className="poll-submit">
            <button type="submit" className="button button-small" data-testid="poll-answer" disabled={chosen.length === 0 || unchanged || poll.answerPending}>
              {poll.myChoices ? t('poll.changeAnswer') : t('poll.answer')}
            </button>
            <p className="muted small">
              {poll.answerPending ? t('poll.sending') : poll.myChoices ? `${t('poll.answered')} ${t('poll.canChange')}` : t('poll.canChange')}
            </p>
          </div>
        )}
      </form>
      {showResults ? (
        <>
          {right !== null && (
            <p className={right ? 'form-ok' : 'form-error'} data-testid="poll-verdict">
              {right ? t('poll.youWereRight') : t('poll.youWereWrong')}
            </p>
          )}
          <Results poll={poll} results={poll.results!} mine={poll.myChoices} />
        </>
      ) : (
        over && <p className="muted">{t('poll.resultsHidden')}</p>
      )}
    </div>
  );
}

function ModeratorPoll({ poll, client }: { poll: PollView; client: InteractionClient }) {
  const { t } = useI18n();
  const left = useSecondsLeft(poll);
  const results = poll.results ?? { counts: poll.options.map(() => 0), answered: 0, rev: 0 };
  return (
    <div className="poll" data-testid="poll" data-poll-id={poll.id} data-closed={String(poll.closed)}>
      <PollHeader poll={poll} left={left} />
      <Results poll={poll} results={results} mine={null} />
      <div className="actions">
        {!poll.closed && (
          <button type="button" className="button button-small button-danger" data-testid="poll-close" onClick={() => client.closePoll(poll.id)}>
            {t('poll.close')}
          </button>
        )}
        <button
          type="button"
          className="button button-small button-secondary"
          data-testid="poll-show"
          aria-pressed={poll.results_shown}
          onClick={() => client.showResults(poll.id, !poll.results_shown)}
        >
          {poll.results_shown ? t('poll.hide') : t('poll.show')}
        </button>
      </div>
      {poll.results_shown && <p className="muted small">{t('poll.shownToStudents')}</p>}
    </div>
  );
}

function PollForm({ client, replaces }: { client: InteractionClient; replaces: boolean }) {
  const { t } = useI18n();
  const [question, setQuestion] = useState('');
  const [options, setOptions] = useState<string[]>(['', '']);
  const [multiple, setMultiple] = useState(false);
  const [correct, setCorrect] = useState<number[]>([]);
  const [timer, setTimer] = useState('');
  const [invalid, setInvalid] = useState(false);

  const setOption = (i: number, v: string) => setOptions(options.map((o, j) => (j === i ? v : o)));
  const removeOption = (i: number) => {
    setOptions(options.filter((_, j) => j !== i));
    setCorrect(correct.filter((c) => c !== i).map((c) => (c > i ? c - 1 : c)));
  };
  const toggleCorrect = (i: number, on: boolean) => {
    if (!on) setCorrect(correct.filter((c) => c !== i));
    else setCorrect(multiple ? [...correct, i].sort((a, b) => a - b) : [i]);
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const q = question.trim();
    const kept = options.map((text, i) => ({ text: text.trim(), correct: correct.includes(i) })).filter((o) => o.text);
    const seconds = timer.trim() ? Math.round(Number(timer)) : null;
    const ok =
      q.length > 0 &&
      kept.length >= MIN_OPTIONS &&
      kept.length <= MAX_OPTIONS &&
      kept.every((o) => o.text.length <= MAX_OPTION_CHARS) &&
      (seconds === null || (Number.isFinite(seconds) && seconds >= 5 && seconds <= 3600));
    setInvalid(!ok);
    if (!ok) return;
    const right = kept.flatMap((o, i) => (o.correct ? [i] : []));
    client.openPoll({
      question: q,
      options: kept.map((o) => o.text),
      multiple,
      ...(right.length ? { correct: multiple ? right : right.slice(0, 1) } : {}),
      ...(seconds !== null ? { duration_s: seconds } : {}),
    });
    setQuestion('');
    setOptions(['', '']);
    setCorrect([]);
    setTimer('');
  };

  return (
    <form className="form poll-form" data-testid="poll-open-form" onSubmit={submit}>
      <h3>{t('poll.new')}</h3>
      <label>
        {t('poll.question')}
        <input data-testid="poll-question" value={question} maxLength={500} onChange={(e) => setQuestion(e.target.value)} />
      </label>
      <ol className="poll-options">
        {options.map((o, i) => (
          <li key={i} className="poll-option-row">
            <label className="sr-only" htmlFor={`poll-option-${i}`}>
              {t('poll.option', { n: i + 1 })}
            </label>
            <input
              id={`poll-option-${i}`}
              data-testid="poll-option-input"
              value={o}
              maxLength={MAX_OPTION_CHARS}
              placeholder={t('poll.option', { n: i + 1 })}
              onChange={(e) => setOption(i, e.target.value)}
            />
            <label className="check small" title={t('poll.isCorrect', { n: i + 1 })}>
              <input
                type="checkbox"
                aria-label={t('poll.isCorrect', { n: i + 1 })}
                checked={correct.includes(i)}
                onChange={(e) => toggleCorrect(i, e.target.checked)}
              />
              <span aria-hidden="true">✓</span>
            </label>
            {options.length > MIN_OPTIONS && (
              <button type="button" className="icon-button" aria-label={t('poll.removeOption', { n: i + 1 })} onClick={() => removeOption(i)}>
                ×
              </button>
            )}
          </li>
        ))}
      </ol>
      {options.length < MAX_OPTIONS && (
        <button type="button" className="button button-small button-secondary" data-testid="poll-add-option" onClick={() => setOptions([...options, ''])}>
          {t('poll.addOption')}
        </button>
      )}
      <label className="check">
        <input
          type="checkbox"
          checked={multiple}
          onChange={(e) => {
            setMultiple(e.target.checked);
            if (!e.target.checked) setCorrect(correct.slice(0, 1));
          }}
        />
        {t('poll.allowMultiple')}
      </label>
      <label>
        {t('poll.timer')}
        <input type="number" inputMode="numeric" min={5} max={3600} value={timer} onChange={(e) => setTimer(e.target.value)} />
      </label>
      {invalid && (
        <p className="form-error" role="alert">
          {t('poll.invalid')}
        </p>
      )}
      {replaces && <p className="muted small">{t('poll.replaces')}</p>}
      <button type="submit" className="button" data-testid="poll-submit">
        {t('poll.submit')}
      </button>
    </form>
  );
}

export function PollPanel({ client, snap, moderator }: { client: InteractionClient; snap: InteractionSnapshot; moderator: boolean }) {
  const { t } = useI18n();
  const poll = snap.poll;
  const confirmation = useConfirmation(snap, ['answered']);
  const [refusal, dismiss] = useRefusal(snap, ['poll_open', 'poll_answer', 'poll_close', 'poll_show']);
  return (
    <section className="poll-panel" aria-labelledby="poll-title">
      <h2 id="poll-title" className="sr-only">
        {t('poll.title')}
      </h2>
      <Refusal error={refusal} onDismiss={dismiss} />
      {poll ? (
        moderator ? (
          <ModeratorPoll key={poll.id} poll={poll} client={client} />
        ) : (
          <StudentPoll key={poll.id} poll={poll} client={client} />
        )
      ) : (
        <p className="muted">{t('poll.none')}</p>
      )}
      {!moderator && <Toast confirmation={confirmation} />}
      {moderator && <PollForm client={client} replaces={Boolean(poll && !poll.closed)} />}
    </section>
  );
}
