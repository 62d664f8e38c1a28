// A payment QR code (Alipay precreate `qr_code`, WeChat Pay Native `code_url`), drawn in the
// page: the qrcode library loads only when a QR payment is started.
import { useEffect, useState } from 'react';

export function QrCode({ text, label }: { text: string; label: string }) {
  const [src, setSrc] = useState<string | null>(null);
  useEffect(() => {
    let cancelled = false;
    void import('qrcode').then((q) =>
      q.toDataURL(text, { margin: 1, width: 220 }).then((url) => !cancelled && setSrc(url)),
    );
    return () => {
      cancelled = true;
    };
  }, [text]);
  return src ? <img className="qr" src={src} width={220} height={220} alt={label} /> : null;
}
