// Reading the Prometheus text format of /metrics (enough for the console's key numbers).

/** Sum of every sample of a metric family (all label sets) in Prometheus text. */
export function metricSum(text: string, name: string): number | null {
  let sum = 0;
  let seen = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/);
    if (m && m[1] === name) {
      const v = Number(m[3]);
      if (Number.isFinite(v)) {
        sum += v;
        seen = true;
      }
    }
  }
  return seen ? sum : null;
}
