#!/usr/bin/env python3
"""Smoke check of scripts/mail-servers.sh: the real Postfix and Dovecot it starts do what franz's email tests need.

    scripts/mail-smoke.py            start a set with scripts/mail-servers.sh, check it, remove it
    scripts/mail-smoke.py DIR/env    check a running set, from the lines mail-servers.sh printed (kept in DIR/env)
    scripts/mail-smoke.py -          the same, with the FRANZ_MAIL_* variables taken from the environment

Checks: mail from customer@ to support@ over SMTP without AUTH lands in support's INBOX (subject and body); IMAP
advertises IDLE and an IDLE session is told of a new mail; AUTH PLAIN as support@ and mail back to customer@;
STARTTLS on SMTP and IMAPS, both verified against FRANZ_MAIL_CA; mail to an unknown user @franz.test brings a
delivery status notification to the sender; mail to another domain is refused without AUTH and bounced after it;
mail sent while Dovecot is down arrives once it is back; restart-imap ends an IDLE session and IMAP answers again
with the mail kept. Python 3 standard library only. Ends with the line 'N passed, N failed'; exit 0 if none failed.
"""

import email
import email.policy
import imaplib
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import uuid
from email.message import EmailMessage

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = os.path.join(HERE, "mail-servers.sh")
DEADLINE = 20.0  # seconds for a mail to arrive

passed = []
failed = []


def check(name, ok, detail=""):
    (passed if ok else failed).append(name)
    print(("ok   " if ok else "FAIL ") + name + (f": {detail}" if detail else ""), flush=True)
    return ok


def parse(lines):
    env = {}
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and key.startswith("FRANZ_MAIL_"):
            env[key] = value
    return env


def hostport(value):
    host, _, port = value.rpartition(":")
    return host, int(port)


class Mail:
    def __init__(self, env):
        self.env = env
        self.dir = env["FRANZ_MAIL_DIR"]
        self.imap = hostport(env["FRANZ_MAIL_IMAP"])
        self.imaps = hostport(env["FRANZ_MAIL_IMAPS"])
        self.smtp = hostport(env["FRANZ_MAIL_SMTP"])
        self.ca = env["FRANZ_MAIL_CA"]
        self.password = env["FRANZ_MAIL_PASSWORD"]
        self.domain = env["FRANZ_MAIL_DOMAIN"]

    def addr(self, user):
        return f"{user}@{self.domain}"

    def tls(self):
        return ssl.create_default_context(cafile=self.ca)

    def send(self, sender, to, subject, body, login=None, starttls=False):
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = ", ".join(to) if isinstance(to, list) else to
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{uuid.uuid4()}@{self.domain}>"
        msg.set_content(body)
        with smtplib.SMTP(*self.smtp, timeout=10) as s:
            s.ehlo("client.franz.test")
            if starttls:
                s.starttls(context=self.tls())
                s.ehlo("client.franz.test")
            if login:
                s.login(login, self.password)
            return s.send_message(msg)

    def login(self, user, tls=False):
        if tls:
            m = imaplib.IMAP4_SSL(*self.imaps, ssl_context=self.tls(), timeout=10)
        else:
            m = imaplib.IMAP4(*self.imap, timeout=10)
        m.login(self.addr(user), self.password)
        return m

    def find(self, user, subject=None, predicate=None, deadline=DEADLINE):
        """Polls user's INBOX until a message matches; returns (message, seconds waited) or (None, deadline)."""
        start = time.monotonic()
        while True:
            try:
                m = self.login(user)
                try:
                    m.select("INBOX", readonly=True)
                    crit = f'(SUBJECT "{subject}")' if subject else "ALL"
                    typ, data = m.search(None, crit)
                    for num in data[0].split():
                        typ, parts = m.fetch(num, "(RFC822)")
                        msg = email.message_from_bytes(parts[0][1], policy=email.policy.default)
                        if predicate is None or predicate(msg):
                            return msg, time.monotonic() - start
                finally:
                    m.logout()
            except (OSError, imaplib.IMAP4.error):
                pass  # a server being restarted
            if time.monotonic() - start > deadline:
                return None, deadline
            time.sleep(0.25)


def body_of(msg):
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content() if part else ""


def idle_wait(m, want, deadline):
    """Reads an IDLE session until a line contains want; returns that line, b"" at EOF, None at the deadline."""
    end = time.monotonic() + deadline
    buf = getattr(m, "_idle_buf", b"")
    while True:
        lines = buf.split(b"\n")
        for i, line in enumerate(lines[:-1]):
            if want in line:
                m._idle_buf = b"\n".join(lines[i + 1:])
                return line + b"\n"
        left = end - time.monotonic()
        if left <= 0:
            m._idle_buf = buf
            return None
        m.sock.settimeout(left)
        try:
            data = m.sock.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            return b""
        if not data:
            return b""
        buf += data


def start_idle(mail, user):
    m = mail.login(user)
    m.select("INBOX")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    line = m.readline()
    return m, tag, line


def run(mail):
    tag = uuid.uuid4().hex[:8]
    support, customer = mail.addr("support"), mail.addr("customer")

    # IMAP capabilities and login.
    m = mail.login("support")
    caps = m.capabilities
    check("IMAP advertises IDLE", "IDLE" in caps, " ".join(caps))
    m.logout()
    m = imaplib.IMAP4(*mail.imap, timeout=10)
    check("IMAP offers STARTTLS before login", "STARTTLS" in m.capabilities)
    m.starttls(ssl_context=mail.tls())
    m.login("support", mail.password)  # without the domain: auth_default_realm
    check("IMAP STARTTLS verified against FRANZ_MAIL_CA; login without @domain", True)
    m.logout()
    m = mail.login("support", tls=True)
    check("IMAPS verified against FRANZ_MAIL_CA", True)
    m.logout()

    # An IDLE session on support's INBOX, told of the next mail.
    idle, idle_tag, cont = start_idle(mail, "support")
    check("IDLE accepted", cont.startswith(b"+"), cont.decode(errors="replace").strip())

    subject = f"Printer on fire {tag}"
    body = f"Hello support,\nthe printer is on fire ({tag}).\n"
    t0 = time.monotonic()
    refused = mail.send(customer, support, subject, body)
    check("SMTP without AUTH accepts customer -> support", refused == {}, str(refused))
    line = idle_wait(idle, b"EXISTS", DEADLINE)
    check("IDLE session told of the new mail", bool(line), (line or b"nothing").decode().strip()
          + f" after {time.monotonic() - t0:.2f} s")
    idle.send(b"DONE\r\n")
    done = idle_wait(idle, idle_tag + b" OK", 10)
    check("IDLE ended with DONE", bool(done), (done or b"nothing").decode().strip())
    idle.sock.settimeout(10)
    idle.logout()
    msg, waited = mail.find("support", subject)
    check("mail in support's INBOX", msg is not None, f"after {waited:.2f} s")
    if msg is not None:
        check("subject kept", msg["Subject"] == subject, msg["Subject"])
        check("body kept", body_of(msg).replace("\r\n", "\n") == body, repr(body_of(msg)))
        check("From kept", customer in msg["From"], msg["From"])

    # AUTH as support@, STARTTLS first; the reply lands with customer@.
    reply = f"Re: {subject}"
    with smtplib.SMTP(*mail.smtp, timeout=10) as s:
        s.ehlo("client.franz.test")
        auth = s.esmtp_features.get("auth", "")
        check("SMTP offers AUTH PLAIN and LOGIN without TLS", "PLAIN" in auth and "LOGIN" in auth, auth)
        check("SMTP offers STARTTLS", s.has_extn("starttls"))
    refused = mail.send(support, customer, reply, "We are on it.\n", login=support, starttls=True)
    check("SMTP STARTTLS (verified) and AUTH as support@ accepted", refused == {}, str(refused))
    msg, waited = mail.find("customer", reply)
    check("reply in customer's INBOX", msg is not None, f"after {waited:.2f} s")
    t0 = time.monotonic()
    try:
        with smtplib.SMTP(*mail.smtp, timeout=10) as s:
            s.login(support, "wrong")
        check("SMTP AUTH with a wrong password refused", False)
    except smtplib.SMTPAuthenticationError as e:
        check("SMTP AUTH with a wrong password refused", True, f"{e.smtp_code} in {time.monotonic() - t0:.2f} s")
    t0 = time.monotonic()
    try:
        imaplib.IMAP4(*mail.imap, timeout=10).login(support, "wrong")
        check("IMAP LOGIN with a wrong password refused", False)
    except imaplib.IMAP4.error as e:
        check("IMAP LOGIN with a wrong password refused", True, f"{e} in {time.monotonic() - t0:.2f} s")

    # Unknown user in the domain: accepted, then a DSN back to the sender.
    unknown_subject = f"To nobody {tag}"
    t0 = time.monotonic()
    refused = mail.send(customer, mail.addr("nobody"), unknown_subject, "Anyone there?\n")
    check("SMTP accepts nobody@ (unknown user) at RCPT", refused == {}, str(refused))

    def is_dsn_for(subject_text):
        def pred(m):
            if m.get_content_type() != "multipart/report":
                return False
            raw = m.as_string()
            return subject_text in raw and "nobody@" in raw
        return pred

    dsn, waited = mail.find("customer", predicate=is_dsn_for(unknown_subject))
    detail = f"after {time.monotonic() - t0:.2f} s"
    if dsn is not None:
        status = [p for p in dsn.walk() if p.get_content_type() == "message/delivery-status"]
        detail += f"; From: {dsn['From']}; Subject: {dsn['Subject']}; delivery-status part: {bool(status)}"
        text = dsn.as_string()
        for key in ("Status: 5.1.1", "Action: failed"):
            detail += f"; {key!r} {'present' if key in text else 'absent'}"
    check("DSN for nobody@ in customer's INBOX", dsn is not None, detail)

    # Another domain: refused at RCPT, with AUTH or without (nothing ever leaves this machine).
    for login in (None, support):
        name = "mail to another domain refused at RCPT " + ("after AUTH" if login else "without AUTH")
        try:
            mail.send(support if login else customer, "someone@example.com", "outside", "x\n", login=login)
            check(name, False, "accepted")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients["someone@example.com"]
            check(name, code >= 500, f"{code} {text.decode()}")

    # Dovecot down: Postfix keeps the mail and delivers it once Dovecot is back.
    t0 = time.monotonic()
    subprocess.run([SERVERS, "stop-imap", mail.dir], check=True)
    try:
        socket.create_connection(mail.imap, timeout=2).close()
        check("IMAP refuses connections after stop-imap", False)
    except OSError:
        check("IMAP refuses connections after stop-imap", True, f"{time.monotonic() - t0:.2f} s")
    while_down = f"While down {tag}"
    refused = mail.send(customer, support, while_down, "Queued.\n")
    check("SMTP accepts mail while Dovecot is down", refused == {}, str(refused))
    time.sleep(1)
    subprocess.run([SERVERS, "start-imap", mail.dir], check=True)
    msg, waited = mail.find("support", while_down, deadline=30)
    check("mail queued while Dovecot was down arrives after start-imap", msg is not None, f"after {waited:.2f} s")

    # restart-imap mid-IDLE: the session ends, IMAP answers again on the same port with the mail kept.
    idle, idle_tag, cont = start_idle(mail, "support")
    t0 = time.monotonic()
    subprocess.run([SERVERS, "restart-imap", mail.dir], check=True)
    restart = time.monotonic() - t0
    line = idle_wait(idle, b"BYE", 10)
    rest = idle_wait(idle, b"\n", 5) if line else b""  # EOF (b"") after the BYE
    check("restart-imap ends the IDLE session", line is not None,
          f"{(line or b'nothing').decode(errors='replace').strip()!r} then {rest!r}; restart took {restart:.2f} s")
    try:
        idle.shutdown()
    except OSError:
        pass
    try:
        m = mail.login("support")
        m.select("INBOX", readonly=True)
        typ, data = m.search(None, f'(SUBJECT "{subject}")')
        check("IMAP answers again after restart-imap, mail kept", bool(data[0].split()))
        m.logout()
    except (OSError, imaplib.IMAP4.error) as e:
        check("IMAP answers again after restart-imap, mail kept", False, str(e))


def main():
    args = sys.argv[1:]
    started = None
    if args and args[0] == "-":
        env = parse(f"{k}={v}" for k, v in os.environ.items())
    elif args:
        with open(args[0]) as f:
            env = parse(f)
    else:
        t0 = time.monotonic()
        out = subprocess.run([SERVERS], stdout=subprocess.PIPE, text=True)
        if out.returncode != 0:
            print(f"mail-servers.sh exited {out.returncode}", file=sys.stderr)
            return out.returncode
        env = parse(out.stdout.splitlines())
        started = env["FRANZ_MAIL_DIR"]
        print(f"started in {time.monotonic() - t0:.2f} s: {started}", flush=True)
    try:
        run(Mail(env))
    except Exception as e:  # noqa: BLE001 - one unexpected failure is reported like the others
        check("no unexpected error", False, f"{type(e).__name__}: {e}")
    finally:
        if started:
            subprocess.run([SERVERS, "clean", started])
    print(f"{len(passed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
