"""The SMTP server of the integration tests (aiosmtpd, started by scripts/test).

Every message it receives is written to --dir as one file: `X-MailFrom:` and `X-RcptTo:` lines
(the envelope), then the message exactly as received. Files appear atomically (written under a
dot name, then renamed), so a test never reads half a mail.
"""
import argparse
import asyncio
import os
import time
import uuid

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, directory):
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):
        name = f"{time.time_ns()}-{uuid.uuid4().hex}.eml"
        tmp = os.path.join(self.directory, "." + name)
        with open(tmp, "wb") as f:
            f.write(f"X-MailFrom: {envelope.mail_from}\r\n".encode())
            f.write(f"X-RcptTo: {', '.join(envelope.rcpt_tos)}\r\n".encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.directory, name))
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    args = p.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Handler(args.dir), hostname="127.0.0.1", port=args.port)
    controller.start()
    print(f"SMTP test server on 127.0.0.1:{args.port}, mail in {args.dir}", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
