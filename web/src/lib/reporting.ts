// Periodic reports that must not be lost when the reader leaves: `send(false)` every
// `everyMs`, and `send(true)` (keepalive: the request outlives the page) when the page is
// hidden or left, and when the caller stops (an effect's cleanup).
export function reportPeriodically(everyMs: number, send: (keepalive: boolean) => void): () => void {
  const timer = setInterval(() => send(false), everyMs);
  const onHide = () => send(true);
  const onVisibility = () => document.visibilityState === 'hidden' && send(true);
  window.addEventListener('pagehide', onHide);
  document.addEventListener('visibilitychange', onVisibility);
  return () => {
    clearInterval(timer);
    window.removeEventListener('pagehide', onHide);
    document.removeEventListener('visibilitychange', onVisibility);
    send(true);
  };
}
