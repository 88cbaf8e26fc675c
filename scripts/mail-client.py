#!/usr/bin/env python3
"""A mail client other than franz, for franz's email tests: sends as a customer would and looks into a mailbox.

    mail-client.py send SMTP_HOST:PORT FROM TO < message    send the raw message on standard input (no AUTH)
    mail-client.py list IMAP_HOST:PORT USER PASSWORD [BOX]   print the mails of BOX (INBOX) as JSON lines:
                                                             {"uid", "seen", "subject", "message_id", "from",
                                                              "in_reply_to", "references", "auto_submitted", "text"}
    mail-client.py unsee IMAP_HOST:PORT USER PASSWORD        take the \\Seen flag off every mail in INBOX
    mail-client.py create IMAP_HOST:PORT USER PASSWORD BOX   create the folder BOX
    mail-client.py append IMAP_HOST:PORT USER PASSWORD BOX < message   put the raw message in BOX (unread), as
                                                             another client or a mail server without limits would
    mail-client.py append-many IMAP_HOST:PORT USER PASSWORD COUNT PREFIX [BYTES]   put COUNT mails from
                                                             customer@franz.test in INBOX (Message-ID <PREFIX-N@franz.test>),
                                                             each with a text of about BYTES (default: one line)
    mail-client.py count IMAP_HOST:PORT USER PASSWORD [BOX]  print {"exists", "unseen"} of BOX (INBOX) as JSON
    mail-client.py delete IMAP_HOST:PORT USER PASSWORD MESSAGE_ID   delete (flag and expunge) the INBOX mails with
                                                             that Message-ID

Python 3 standard library only (smtplib, imaplib, email).
"""

import email
import email.policy
import imaplib
import json
import smtplib
import sys


def hostport(value):
    host, _, port = value.rpartition(":")
    return host, int(port)


def send(server, sender, recipient):
    raw = sys.stdin.buffer.read()
    with smtplib.SMTP(*hostport(server), timeout=30) as smtp:
        smtp.sendmail(sender, [recipient], raw)


def session(server, user, password, box="INBOX"):
    imap = imaplib.IMAP4(*hostport(server), timeout=30)
    imap.login(user, password)
    imap.select(box)
    return imap


def listing(server, user, password, box="INBOX"):
    imap = session(server, user, password, box)
    _, data = imap.uid("SEARCH", None, "ALL")
    for uid in data[0].split():
        _, parts = imap.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
        # The answer can carry the server's news of other mails (franz marking one read meanwhile: an untagged
        # FETCH of its flags, plain bytes) beside the mail's own (a tuple of its header and body); a mail gone
        # meanwhile has none.
        found = [part for part in parts if isinstance(part, tuple)]
        if not found:
            continue
        flags = imaplib.ParseFlags(found[0][0])
        mail = email.message_from_bytes(found[0][1], policy=email.policy.default)
        body = mail.get_body(preferencelist=("plain",))
        print(json.dumps({
            "uid": int(uid),
            "seen": b"\\Seen" in flags,
            "subject": str(mail.get("Subject", "")),
            "message_id": str(mail.get("Message-ID", "")),
            "from": str(mail.get("From", "")),
            "in_reply_to": str(mail.get("In-Reply-To", "")),
            "references": str(mail.get("References", "")),
            "auto_submitted": str(mail.get("Auto-Submitted", "")),
            "text": body.get_content() if body is not None else "",
        }))
    imap.logout()


def unsee(server, user, password):
    imap = session(server, user, password)
    imap.uid("STORE", "1:*", "-FLAGS.SILENT", "(\\Seen)")
    imap.logout()


def create(server, user, password, box):
    imap = session(server, user, password)
    status, answer = imap.create(box)
    if status != "OK":
        sys.exit(f"CREATE {box}: {answer}")
    imap.logout()


def append(server, user, password, box):
    raw = sys.stdin.buffer.read()
    imap = session(server, user, password)
    status, answer = imap.append(box, None, None, raw)
    if status != "OK":
        sys.exit(f"APPEND {box}: {answer}")
    imap.logout()


def append_many(server, user, password, count, prefix, size="0"):
    imap = session(server, user, password)
    line = "Hello, the export stops at 80 percent and says nothing; what can I do about it?\r\n"
    text = line * (int(size) // len(line))
    for n in range(int(count)):
        raw = (f"From: customer@franz.test\r\nTo: support@franz.test\r\nSubject: {prefix} {n}\r\n"
               f"Message-ID: <{prefix}-{n}@franz.test>\r\n\r\nmail {n}\r\n{text}").encode()
        status, answer = imap.append("INBOX", None, None, raw)
        if status != "OK":
            sys.exit(f"APPEND: {answer}")
    imap.logout()


def count(server, user, password, box="INBOX"):
    imap = session(server, user, password, box)
    _, everything = imap.uid("SEARCH", None, "ALL")
    _, unseen = imap.uid("SEARCH", None, "UNSEEN")
    print(json.dumps({"exists": len(everything[0].split()), "unseen": len(unseen[0].split())}))
    imap.logout()


def delete(server, user, password, message_id):
    imap = session(server, user, password)
    _, found = imap.uid("SEARCH", None, "HEADER", "Message-ID", message_id)
    for uid in found[0].split():
        imap.uid("STORE", uid, "+FLAGS.SILENT", "(\\Deleted)")
    imap.expunge()
    imap.logout()


def main():
    command, *args = sys.argv[1:] or ["help"]
    commands = {"send": send, "list": listing, "unsee": unsee, "create": create, "append": append,
                "append-many": append_many, "count": count, "delete": delete}
    if command not in commands:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    commands[command](*args)


if __name__ == "__main__":
    main()
