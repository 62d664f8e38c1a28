// A time chart through uPlot (~50 KB, canvas): bars or lines per day. The canvas is described
// for screen readers by `label` and a visually hidden table of the same numbers.
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Series {
  label: string;
  color: string;
  values: number[];
  /** Bars (default) or a line. */
  line?: boolean;
}

export function DayChart({
  label,
  days,
  series,
  format,
  dateLabel,
  testId,
  pad = 86400,
  xLabel,
}: {
  label: string;
  /** Unix seconds (UTC midnight) per point. */
  days: number[];
  series: Series[];
  format: (v: number) => string;
  dateLabel: (day: number) => string;
  testId?: string;
  /** Room on either side of the x range, in seconds (one day for daily data). */
  pad?: number;
  /** The x values' name in the legend ("Day"). */
  xLabel: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = Math.max(280, el.clientWidth);
    const bars = uPlot.paths.bars?.({ size: [0.6, 40] });
    const plot = new uPlot(
      {
        width,
        height: 220,
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true } },
        axes: [
          // Daily data: ticks on whole days (a week, a month apart as it grows), labelled as dates.
          pad >= 86400 ? { incrs: [86400, 7 * 86400, 30 * 86400], values: (_u, vals) => vals.map((v) => dateLabel(v)), space: 90 } : {},
          { values: (_u, vals) => vals.map((v) => format(v)), size: 80 },
        ],
        series: [
          { label: xLabel, value: (_u, v) => (v == null ? '' : dateLabel(v)) },
          ...series.map((s) => ({
            label: s.label,
            stroke: s.color,
            fill: s.line ? undefined : `${s.color}99`,
            width: s.line ? 2 : 1,
            paths: s.line ? undefined : bars,
            points: { show: days.length < 3 },
            value: (_u: uPlot, v: number | null) => (v == null ? '' : format(v)),
          })),
        ],
      },
      // An empty point on either side keeps one day (or a few) from being spread over years.
      [
        days.length ? [days[0]! - pad, ...days, days[days.length - 1]! + pad] : [],
        ...series.map((s) => (days.length ? [null, ...s.values, null] : [])),
      ],
      el,
    );
    const ro = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 220 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.destroy();
    };
  }, [days, series, format, dateLabel, pad, xLabel]);
  return (
    <figure className="chart" data-testid={testId}>
      <div ref={box} role="img" aria-label={label} />
      <figcaption className="sr-only">
        <table>
          <caption>{label}</caption>
          <tbody>
            {days.map((d, i) => (
              <tr key={d}>
                <th scope="row">{dateLabel(d)}</th>
                {series.map((s) => (
                  <td key={s.label}>{`${s.label}: ${format(s.values[i] ?? 0)}`}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </figcaption>
    </figure>
  );
}
