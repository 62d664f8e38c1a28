import { describe, expect, it } from 'vitest';
import { en } from './en';
import { zhCN } from './zh-CN';
import { formatDuration, formatMoney, pickLocale, translate } from './index';

describe('i18n', () => {
  it('has every English key in Chinese, and no extra one', () => {
    expect(Object.keys(zhCN).sort()).toEqual(Object.keys(en).sort());
    for (const [k, v] of Object.entries(zhCN)) expect(v, k).not.toBe('');
  });

  it('keeps the placeholders of each message in both languages', () => {
    const vars = (s: string) => (s.match(/\{\w+\}/g) ?? []).sort();
    for (const k of Object.keys(en) as (keyof typeof en)[]) expect(vars(zhCN[k]), k).toEqual(vars(en[k]));
  });

  it('picks Chinese for any zh browser language and English otherwise', () => {
    expect(pickLocale(null, ['zh-TW', 'en'])).toBe('zh-CN');
    expect(pickLocale(null, ['fr-FR', 'en-GB'])).toBe('en');
    expect(pickLocale(null, ['fr-FR'])).toBe('en');
    expect(pickLocale('en', ['zh-CN'])).toBe('en');
  });

  it('fills placeholders', () => {
    expect(translate('en', 'course.buy', { price: '¥99.00' })).toBe('Buy for ¥99.00');
    expect(translate('zh-CN', 'course.minutes', { n: 45 })).toBe('45 分钟');
  });

  it('formats money from minor units per locale', () => {
    expect(formatMoney('en', 9900, 'CNY')).toBe('CN¥99.00');
    expect(formatMoney('zh-CN', 9900, 'CNY')).toBe('¥99.00');
    expect(formatMoney('en', 500, 'JPY')).toBe('¥500');
  });

  it('formats durations as a clock', () => {
    expect(formatDuration(5)).toBe('0:05');
    expect(formatDuration(3725)).toBe('1:02:05');
  });
});
