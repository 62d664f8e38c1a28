// The i18n layer: a typed catalogue per language (en is the reference), the language picked from
// the browser and switchable (kept in localStorage), and Intl for dates, times and money.
// Hand-written rather than i18next: 1 KB instead of ~40, and missing keys are compile errors
// (zh-CN.ts is typed against en.ts) as well as test failures (a missing key renders as
// `⟦key⟧`, which the browser tests look for).
import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from 'react';
import { en, type MessageKey } from './en';
import { zhCN } from './zh-CN';

export type Locale = 'en' | 'zh-CN';
export const LOCALES: { id: Locale; label: string }[] = [
  { id: 'zh-CN', label: '简体中文' },
  { id: 'en', label: 'English' },
];
const catalogues: Record<Locale, Record<string, string>> = { en, 'zh-CN': zhCN };

export function pickLocale(stored: string | null, languages: readonly string[]): Locale {
  if (stored === 'en' || stored === 'zh-CN') return stored;
  for (const l of languages) {
    const lower = l.toLowerCase();
    if (lower.startsWith('zh')) return 'zh-CN';
    if (lower.startsWith('en')) return 'en';
  }
  return 'en';
}

export function translate(
  locale: Locale,
  key: MessageKey,
  vars?: Record<string, string | number>,
): string {
  const text = catalogues[locale][key];
  if (text === undefined) return `⟦${key}⟧`;
  return vars ? text.replace(/\{(\w+)\}/g, (m, name: string) => String(vars[name] ?? m)) : text;
}

export interface I18n {
  locale: Locale;
  setLocale(l: Locale): void;
  t(key: MessageKey, vars?: Record<string, string | number>): string;
  dateTime(iso: string | Date, opts?: Intl.DateTimeFormatOptions): string;
  money(amount: number, currency: string): string;
  duration(seconds: number): string;
}

const Ctx = createContext<I18n | null>(null);
const STORAGE_KEY = 'wm.locale';

function safeStorageGet(): string | null {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export function I18nProvider({ children }: { children: ReactNode }) {
  const [locale, setLocaleState] = useState<Locale>(() =>
    pickLocale(safeStorageGet(), navigator.languages ?? [navigator.language]),
  );
  const setLocale = useCallback((l: Locale) => {
    setLocaleState(l);
    try {
      localStorage.setItem(STORAGE_KEY, l);
    } catch {
      /* private mode: the choice lasts for this page */
    }
  }, []);
  const value = useMemo<I18n>(() => {
    document.documentElement.lang = locale;
    return {
      locale,
      setLocale,
      t: (key, vars) => translate(locale, key, vars),
      dateTime: (iso, opts) =>
        new Intl.DateTimeFormat(locale, opts ?? { dateStyle: 'medium', timeStyle: 'short' }).format(
          typeof iso === 'string' ? new Date(iso) : iso,
        ),
      money: (amount, currency) => formatMoney(locale, amount, currency),
      duration: (s) => formatDuration(s),
    };
  }, [locale, setLocale]);
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}

export function useI18n(): I18n {
  const v = useContext(Ctx);
  if (!v) throw new Error('useI18n outside I18nProvider');
  return v;
}

/** Minor units to a localized amount (CNY has 2 decimals; JPY 0: Intl knows). */
export function formatMoney(locale: Locale, amount: number, currency: string): string {
  const fmt = new Intl.NumberFormat(locale, { style: 'currency', currency });
  const digits = fmt.resolvedOptions().maximumFractionDigits ?? 2;
  return fmt.format(amount / 10 ** digits);
}

export function formatDuration(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = String(m).padStart(h ? 2 : 1, '0');
  return `${h ? `${h}:` : ''}${mm}:${String(sec).padStart(2, '0')}`;
}
