#!/usr/bin/env python3
"""A real SMTP server for Herald's email tests, built on aiosmtpd.

It listens on 127.0.0.1 on a port the OS picks, prints `READY <port>` on stdout once it accepts
connections, and writes every accepted message to --out as NNNN.eml (the raw bytes received)
plus NNNN.json: the envelope (mail_from, rcpt_tos, auth_user) and "parsed", the message as
Python's own email parser reads it, so the tests check the MIME structure independently of
lettre. Files appear before the final 250 reply, so a client that saw 250 can read them.

Modes: plain, starttls (STARTTLS offered and required), smtps (implicit TLS). With --user and
--password, AUTH PLAIN/LOGIN is required and any other credentials get 535.

The test drives it through stdin, one command a line, each answered by `ok` on stdout:
  fail <code> <count>    answer the next <count> DATA commands with <code> instead of 250
  stall <seconds> <count> wait that long before answering the next <count> DATA commands
End of stdin (the test process went away) stops the server.

Needs Python 3.8+ and `pip install aiosmtpd`.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import ssl
import sys
import threading

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    sys.stderr.write("smtp_sink.py: the aiosmtpd module is missing; run: python3 -m pip install aiosmtpd\n")
    sys.exit(3)


class Script:
    """Scripted answers for upcoming DATA commands, changed from the stdin thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.fail_code, self.fail_count = 0, 0
        self.stall_seconds, self.stall_count = 0.0, 0

    def take(self):
        with self.lock:
            stall = 0.0
            if self.stall_count > 0:
                self.stall_count -= 1
                stall = self.stall_seconds
            code = 0
            if self.fail_count > 0:
                self.fail_count -= 1
                code = self.fail_code
            return stall, code


class Sink:
    """The aiosmtpd handler: records messages, applies the script."""

    def __init__(self, out_dir, script):
        self.out_dir = out_dir
        self.script = script
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        stall, code = self.script.take()
        if stall:
            await asyncio.sleep(stall)
        if code:
            reason = "scripted temporary failure" if code < 500 else "scripted permanent failure"
            return f"{code} {code // 100}.0.0 {reason}"
        self.count += 1
        base = os.path.join(self.out_dir, f"{self.count:04d}")
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "auth_user": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
            "parsed": parse(envelope.original_content),
        }
        write_atomic(base + ".json", json.dumps(meta).encode())
        write_atomic(base + ".eml", envelope.original_content)
        return "250 2.0.0 queued as " + os.path.basename(base)


def parse(raw):
    """The message as Python's own MIME parser reads it: decoded headers, and each leaf part."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    headers = {k.lower(): str(v) for k, v in msg.items()}
    parts = [
        {"type": p.get_content_type(), "charset": p.get_content_charset(), "text": p.get_content()}
        for p in msg.walk()
        if not p.is_multipart()
    ]
    return {"content_type": msg.get_content_type(), "headers": headers, "parts": parts}


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def authenticator_for(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        # handled=False: aiosmtpd then answers 535 itself on failure.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticate


def read_commands(script, loop, stop):
    for line in sys.stdin:
        words = line.split()
        if len(words) == 3 and words[0] == "fail":
            with script.lock:
                script.fail_code, script.fail_count = int(words[1]), int(words[2])
        elif len(words) == 3 and words[0] == "stall":
            with script.lock:
                script.stall_seconds, script.stall_count = float(words[1]), int(words[2])
        else:
            print(f"error unknown command {line.strip()!r}", flush=True)
            continue
        print("ok", flush=True)
    loop.call_soon_threadsafe(stop.set)


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=["plain", "starttls", "smtps"], default="plain")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    args = p.parse_args()

    context = None
    if args.mode != "plain":
        if not (args.cert and args.key):
            p.error("--cert and --key are required for TLS modes")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    script = Script()
    handler = Sink(args.out, script)
    auth = dict(auth_required=False)
    if args.user is not None:
        auth = dict(
            authenticator=authenticator_for(args.user, args.password or ""),
            auth_required=True,
            # Plain mode tests AUTH without TLS; smtps is TLS from the first byte, which
            # aiosmtpd does not count as "TLS" for this check.
            auth_require_tls=args.mode == "starttls",
        )

    def factory():
        if args.mode == "starttls":
            return SMTP(handler, hostname="sink.test", tls_context=context, require_starttls=True, **auth)
        return SMTP(handler, hostname="sink.test", **auth)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, host="127.0.0.1", port=0, ssl=context if args.mode == "smtps" else None
    )
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    threading.Thread(target=read_commands, args=(script, loop, stop), daemon=True).start()
    print(f"READY {port}", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
