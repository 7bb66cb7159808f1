"""mta's delivery status notifications (mta/dsn.h) read by Python's email package. The helper
tests/make_dsn turns a queue file into the DSN mta would send; each DSN must parse with
email.policy.default as a defect-free multipart/report whose message/delivery-status part says
what happened per recipient, and must return the original message or its header intact -- also
when the diagnostic, the addresses or the message itself are hostile."""

import datetime
import email
import email.parser
import email.policy
import email.utils
import os
import re
import unittest

import harness

HOST = "mx.example.org"
NOW = 1700000600
ARRIVAL = 1700000000
QUEUE_ID = "0LJ8K2M3N4P5Q6R7S8T9"

MESSAGE = (b"Received: from client.example (client.example [192.0.2.1])\r\n"
           b"\tby mx.example.org with ESMTP id 0LJ8K2M3N4P5Q6R7S8T9\r\n"
           b"From: Sender <sender@example.com>\r\n"
           b"To: rcpt@example.net\r\n"
           b"Subject: quarterly numbers\r\n"
           b"Message-ID: <orig@example.com>\r\n"
           b"\r\n"
           b"Hello,\r\n"
           b"\r\n"
           b"the numbers.\r\n")
MESSAGE_HEADER = MESSAGE[:MESSAGE.index(b"\r\n\r\n") + 2]


def escape(value):
    """The queue file's value escaping: printable ASCII but '%' as is, the rest %XX."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    return b"".join(bytes([c]) if 0x20 <= c <= 0x7E and c != 0x25 else b"%%%02X" % c
                    for c in value)


def rcpt(address, state="failed", error=None, orcpt=None, notify=None):
    return {"address": address, "state": state, "error": error, "orcpt": orcpt,
            "notify": notify}


def queue_file(sender, recipients, message=MESSAGE, envid=None, ret=None, body=None,
               smtputf8=False):
    """A queue file (mta/queue_file.h) as the spool holds it."""
    lines = [b"MWQUEUE 1", b"ID " + QUEUE_ID.encode(), b"TIME %d" % ARRIVAL,
             b"FROM " + escape(sender)]
    if body:
        lines.append(b"BODY " + body.encode())
    if smtputf8:
        lines.append(b"SMTPUTF8 1")
    if ret:
        lines.append(b"RET " + ret.encode())
    if envid:
        lines.append(b"ENVID " + escape(envid))
    for r in recipients:
        lines.append(b"RCPT " + escape(r["address"]))
        if r["orcpt"]:
            lines.append(b"ORCPT " + escape(r["orcpt"]))
        if r["notify"]:
            lines.append(b"NOTIFY " + r["notify"].encode())
        if r["state"] != "pending":
            lines.append(b"STATE " + r["state"].encode())
        if r["error"]:
            lines.append(b"ERROR " + escape(r["error"]))
    lines.append(b"END")
    return b"\n".join(lines) + b"\n" + message


def run_make_dsn(kind, qf, *args):
    tool = os.path.join(harness.BUILD, "tests", "make_dsn")
    env = dict(os.environ, TZ="UTC")
    return harness.run([tool, kind, HOST, str(NOW)] + list(args), stdin=qf, env=env)


def make_dsn(kind, qf, *args):
    proc = run_make_dsn(kind, qf, *args)
    if proc.returncode != 0:
        raise AssertionError("make_dsn exited %d: %s" % (proc.returncode, proc.stderr))
    return proc.stdout


def utc(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc)


class DsnTest(unittest.TestCase):

    def parse(self, raw, utf8=False):
        """Parses a DSN and checks what every DSN must be; returns (message, [3 parts]). With
        utf8 the DSN is parsed as text: email reads bytes as ASCII, and RFC 6532 headers need
        the str parser."""
        # Wire form: CRLF only, no line over 998 octets (RFC 5322 2.1.1).
        self.assertTrue(raw.endswith(b"\r\n"))
        self.assertNotRegex(raw, rb"\r(?!\n)|(?<!\r)\n")
        for line in raw.split(b"\r\n"):
            self.assertLessEqual(len(line), 998)
        if utf8:
            msg = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
        else:
            msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.assertEqual(msg.defects, [])
        self.assertTrue(msg.is_multipart())
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(str(msg["From"]), "Mail Delivery System <MAILER-DAEMON@%s>" % HOST)
        self.assertEqual(msg["Auto-Submitted"], "auto-replied")
        self.assertEqual(msg["MIME-Version"], "1.0")
        self.assertEqual(msg["Date"].datetime, utc(NOW))
        self.assertRegex(msg["Message-ID"], r"^<[A-Za-z0-9._-]+@mx\.example\.org>$")
        boundary = msg.get_boundary()
        self.assertTrue(boundary)
        # The boundary is nowhere but in its own delimiter lines and the Content-Type.
        self.assertEqual(raw.count(boundary.encode()), 5)
        parts = msg.get_payload()
        self.assertEqual(len(parts), 3)
        for part in parts:
            self.assertEqual(part.defects, [])
        self.assertEqual(parts[0].get_content_maintype(), "text")
        self.assertEqual(parts[0].get_content_subtype(), "plain")
        return msg, parts

    def status_blocks(self, msg, parts):
        """The message/delivery-status part as email exposes it: one Message per field block."""
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertEqual(parts[1].get_content_type(), "message/delivery-status")
        blocks = parts[1].get_payload()
        self.assertIsInstance(blocks, list)
        for block in blocks:
            self.assertEqual(block.defects, [])
            self.assertGreater(len(block.keys()), 0)  # no empty block from a stray blank line
        per_message = blocks[0]
        self.assertEqual(per_message["Reporting-MTA"], "dns; " + HOST)
        self.assertEqual(email.utils.parsedate_to_datetime(per_message["Arrival-Date"]),
                         utc(ARRIVAL))
        return per_message, blocks[1:]

    def test_failure_returns_the_message(self):
        qf = queue_file("sender@example.com", [
            rcpt("rcpt@example.net", error="550 5.1.1 <rcpt@example.net>: User unknown",
                 orcpt="rfc822;Rcpt@Example.NET"),
            rcpt("done@example.net", state="delivered"),
            rcpt("later@example.net", state="deferred", error="451 4.4.1 timeout"),
            rcpt("other@example.org", error="552 mailbox full")], envid="QQ314159")
        msg, parts = self.parse(make_dsn("failure", qf, "--remote-mta", "mx.example.net"))
        self.assertEqual(msg["To"].addresses[0].addr_spec, "sender@example.com")
        self.assertEqual(msg["Subject"], "Undelivered Mail Returned to Sender")
        per_message, recipients = self.status_blocks(msg, parts)
        self.assertEqual(per_message["Original-Envelope-Id"], "QQ314159")
        self.assertEqual(len(recipients), 2)  # the failed ones only
        r = recipients[0]
        self.assertEqual(r["Original-Recipient"], "rfc822;Rcpt@Example.NET")
        self.assertEqual(r["Final-Recipient"], "rfc822; rcpt@example.net")
        self.assertEqual(r["Action"], "failed")
        self.assertEqual(r["Status"], "5.1.1")
        self.assertEqual(r["Remote-MTA"], "dns; mx.example.net")
        self.assertEqual(r["Diagnostic-Code"], "smtp; 550 5.1.1 <rcpt@example.net>: User unknown")
        self.assertEqual(email.utils.parsedate_to_datetime(r["Last-Attempt-Date"]), utc(NOW))
        self.assertIsNone(r["Will-Retry-Until"])
        r = recipients[1]
        self.assertEqual(r["Final-Recipient"], "rfc822; other@example.org")
        self.assertEqual(r["Status"], "5.0.0")
        self.assertEqual(r["Diagnostic-Code"], "smtp; 552 mailbox full")
        self.assertIsNone(r["Original-Recipient"])

        text = parts[0].get_content()
        self.assertIn("<rcpt@example.net>: delivery failed.", text)
        self.assertIn("User unknown", text)

        self.assertEqual(parts[2].get_content_type(), "message/rfc822")
        returned = parts[2].get_content()
        self.assertEqual(returned["Subject"], "quarterly numbers")
        self.assertEqual(returned["Message-ID"], "<orig@example.com>")
        self.assertEqual(returned.get_content(), "Hello,\r\n\r\nthe numbers.\r\n")
        self.assertEqual(returned.as_bytes(policy=email.policy.SMTP), MESSAGE)

    def test_ret_hdrs_returns_the_header(self):
        qf = queue_file("sender@example.com", [rcpt("rcpt@example.net", error="550 5.1.1 no")],
                        ret="HDRS")
        msg, parts = self.parse(make_dsn("failure", qf))
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        headers = parts[2].get_payload(decode=True)
        self.assertEqual(headers, MESSAGE_HEADER)
        parsed = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(headers)
        self.assertEqual(parsed["Subject"], "quarterly numbers")

    def test_delay_warning(self):
        qf = queue_file("sender@example.com", [
            rcpt("slow@example.net", state="deferred", error="451 4.4.1 connection timed out"),
            rcpt("failed@example.net", error="550 5.1.1 no")], ret="FULL")
        until = NOW + 5 * 86400
        msg, parts = self.parse(make_dsn("delay", qf, "--retry-until", str(until)))
        self.assertEqual(msg["Subject"], "Delayed Mail (still being retried)")
        _, recipients = self.status_blocks(msg, parts)
        self.assertEqual(len(recipients), 1)
        r = recipients[0]
        self.assertEqual(r["Final-Recipient"], "rfc822; slow@example.net")
        self.assertEqual(r["Action"], "delayed")
        self.assertEqual(r["Status"], "4.4.1")
        self.assertEqual(email.utils.parsedate_to_datetime(r["Will-Retry-Until"]), utc(until))
        # No failure, so the header only, RET=FULL or not (RFC 3461 4.3).
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        self.assertEqual(parts[2].get_payload(decode=True), MESSAGE_HEADER)
        self.assertIn("will keep trying until", " ".join(parts[0].get_content().split()))

    def test_success_only_when_asked(self):
        qf = queue_file("sender@example.com", [
            rcpt("asked@example.net", state="delivered", notify="SUCCESS"),
            rcpt("quiet@example.net", state="delivered"),
            rcpt("never@example.net", state="delivered", notify="NEVER")])
        msg, parts = self.parse(make_dsn("success", qf))
        self.assertEqual(msg["Subject"], "Successful Mail Delivery Report")
        _, recipients = self.status_blocks(msg, parts)
        self.assertEqual([r["Final-Recipient"] for r in recipients], ["rfc822; asked@example.net"])
        self.assertEqual(recipients[0]["Action"], "delivered")
        self.assertEqual(recipients[0]["Status"], "2.0.0")
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")

    def test_no_dsn_when_none_is_due(self):
        # Never bounce a bounce.
        qf = queue_file("", [rcpt("rcpt@example.net", error="550 5.1.1 no")])
        self.assertEqual(run_make_dsn("failure", qf).returncode, 1)
        qf = queue_file("sender@example.com",
                        [rcpt("rcpt@example.net", error="550 5.1.1 no", notify="NEVER")])
        self.assertEqual(run_make_dsn("failure", qf).returncode, 1)
        qf = queue_file("sender@example.com",
                        [rcpt("rcpt@example.net", error="550 5.1.1 no", notify="SUCCESS")])
        self.assertEqual(run_make_dsn("failure", qf).returncode, 1)

    def test_hostile_diagnostic_and_addresses(self):
        # A remote server's reply with line ends, fake delimiters, fake parts and fields; the
        # queue file keeps it in one escaped line, the DSN must keep it in one field.
        evil = ("550-5.1.1 first\r\n550-5.1.1 --=_mw_dsn_0000\r\n\r\nContent-Type: text/html"
                "\r\n\r\n<b>owned</b>\r\n--=_mw_dsn_0000--\r\nAction: delivered\r\n"
                "Final-Recipient: rfc822; evil@example.com\x00\x01\x7f\r\n550 5.1.1 " + "A" * 3000)
        odd = '"odd \\"x\\" <y>, z"@example.net'
        qf = queue_file("sender@example.com\r\nBcc: victim@example.com", [
            rcpt(odd, error=evil, orcpt="rfc822;" + odd),
            rcpt("two@example.net\r\nAction: delivered", error="550 5.1.1 no")])
        msg, parts = self.parse(make_dsn("failure", qf, "--remote-mta",
                                         "mx.example.net\r\nX-Injected: 1"))
        self.assertIsNone(msg["Bcc"])
        self.assertIsNone(msg["X-Injected"])
        per_message, recipients = self.status_blocks(msg, parts)
        self.assertEqual(len(recipients), 2)
        r = recipients[0]
        self.assertEqual(r["Final-Recipient"], "rfc822; " + odd)
        self.assertEqual(r["Original-Recipient"], "rfc822;" + odd)
        self.assertEqual(r.get_all("Action"), ["failed"])
        self.assertIsNone(r["Content-Type"])
        self.assertIsNone(r["X-Injected"])
        code = str(r["Diagnostic-Code"])
        self.assertTrue(code.startswith("smtp; 550-5.1.1 first 550-5.1.1 --=_mw_dsn_0000 "), code)
        self.assertNotRegex(code, r"[\x00-\x1f\x7f]")
        self.assertIn("Action: delivered Final-Recipient: rfc822; evil@example.com???", code)
        self.assertTrue(code.endswith("..."))
        self.assertEqual(r["Remote-MTA"], "dns; mx.example.net X-Injected: 1")
        r = recipients[1]
        self.assertEqual(r["Final-Recipient"], "rfc822; two@example.net Action: delivered")
        self.assertEqual(r.get_all("Action"), ["failed"])
        self.assertEqual(parts[2].get_content().as_bytes(policy=email.policy.SMTP), MESSAGE)

    def test_boundary_in_the_original(self):
        # Whatever delimiters the original holds -- even the one the same DSN got without them --
        # the DSN picks a boundary the original does not contain.
        qf = queue_file("sender@example.com", [rcpt("rcpt@example.net", error="550 5.1.1 no")])
        first = email.message_from_bytes(make_dsn("failure", qf)).get_boundary()
        message = MESSAGE + b"--%s\r\nContent-Type: text/html\r\n\r\nx\r\n--%s--\r\n" % (
            first.encode(), first.encode())
        qf = queue_file("sender@example.com", [rcpt("rcpt@example.net", error="550 5.1.1 no")],
                        message=message)
        msg, parts = self.parse(make_dsn("failure", qf))
        self.assertNotEqual(msg.get_boundary(), first)
        self.assertEqual(parts[2].get_content().as_bytes(policy=email.policy.SMTP), message)

    def test_huge_original_returns_the_header(self):
        body = b"".join(b"line %07d of a long message, long enough to matter\r\n" % i
                        for i in range(50000))
        message = MESSAGE_HEADER + b"\r\n" + body
        self.assertGreater(len(message), 1 << 21)
        qf = queue_file("sender@example.com", [rcpt("rcpt@example.net", error="552 5.3.4 big")],
                        message=message)
        raw = make_dsn("failure", qf)
        self.assertLess(len(raw), 16384)
        _, parts = self.parse(raw)
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        self.assertEqual(parts[2].get_payload(decode=True), MESSAGE_HEADER)
        # A larger max_returned gives it back in full.
        raw = make_dsn("failure", qf, "--max-returned", str(4 << 20))
        _, parts = self.parse(raw)
        self.assertEqual(parts[2].get_content_type(), "message/rfc822")
        self.assertEqual(parts[2].get_content().as_bytes(policy=email.policy.SMTP), message)

    def test_original_without_separator(self):
        for message, header in [
                (b"Subject: no body\r\nFrom: a@example.com\r\n", None),
                (b"Subject: hi\r\nthis is no header field\r\nmore text\r\n", b"Subject: hi\r\n"),
                (b"Subject: unterminated", b"Subject: unterminated\r\n")]:
            with self.subTest(message=message):
                qf = queue_file("sender@example.com",
                                [rcpt("rcpt@example.net", error="550 5.1.1 no")],
                                message=message, ret="HDRS")
                _, parts = self.parse(make_dsn("failure", qf))
                self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
                self.assertEqual(parts[2].get_payload(decode=True), header or message)

    def test_8bit_original(self):
        message = ("From: Zo\u00eb <zoe@example.com>\r\nSubject: caf\u00e9\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\n"
                   "Content-Transfer-Encoding: 8bit\r\n\r\nna\u00efve \u2603\r\n").encode()
        qf = queue_file("zoe@example.com", [rcpt("rcpt@example.net", error="550 5.1.1 no")],
                        message=message, body="8BITMIME")
        msg, parts = self.parse(make_dsn("failure", qf))
        self.assertEqual(msg["Content-Transfer-Encoding"], "8bit")
        self.assertEqual(parts[2].get_content_type(), "message/rfc822")
        self.assertEqual(parts[2]["Content-Transfer-Encoding"], "8bit")
        returned = parts[2].get_content()
        self.assertEqual(returned.get_content(), "na\u00efve \u2603\r\n")
        self.assertEqual(returned.as_bytes(policy=email.policy.SMTP), message)
        # What the DSN says itself stays ASCII.
        self.assertTrue(parts[0].get_payload(decode=True).isascii())

    def test_binary_original_returns_the_header(self):
        message = b"Subject: binary\r\nFrom: a@example.com\r\n\r\n\x00\x01bare\nlf\rcr\r\n"
        qf = queue_file("sender@example.com", [rcpt("rcpt@example.net", error="550 5.1.1 no")],
                        message=message, body="BINARYMIME", ret="FULL")
        _, parts = self.parse(make_dsn("failure", qf))
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        self.assertEqual(parts[2].get_payload(decode=True),
                         b"Subject: binary\r\nFrom: a@example.com\r\n")

    def test_smtputf8_original(self):
        message = ("From: J\u00f6rg <j\u00f6rg@b\u00fccher.example>\r\n"
                   "Subject: Gr\u00fc\u00dfe\r\n\r\nHallo\r\n").encode()
        qf = queue_file("j\u00f6rg@b\u00fccher.example",
                        [rcpt("m\u00fcller@example.net", error="550 5.1.1 unbekannt")],
                        message=message, smtputf8=True, body="8BITMIME")
        raw = make_dsn("failure", qf)
        msg, parts = self.parse(raw, utf8=True)
        self.assertEqual(msg.get_param("report-type"), "global-delivery-status")
        self.assertEqual(msg["To"].addresses[0].addr_spec, "j\u00f6rg@b\u00fccher.example")
        self.assertEqual(parts[0].get_content_charset(), "utf-8")
        # Bodies decode by their charset when parsed from bytes (from str, email would take
        # the 8bit text part for raw-unicode-escape).
        text = email.message_from_bytes(raw, policy=email.policy.default).get_payload()[0]
        self.assertIn("<m\u00fcller@example.net>: delivery failed.", text.get_content())
        self.assertEqual(parts[1].get_content_type(), "message/global-delivery-status")
        # email splits only message/delivery-status into field blocks; a message/global-*
        # part is read as a message: the per-message fields, then the rest as its body.
        [per_message] = parts[1].get_payload()
        self.assertEqual(per_message["Reporting-MTA"], "dns; " + HOST)
        blocks = [email.parser.HeaderParser(policy=email.policy.default).parsestr(b + "\r\n")
                  for b in re.split(r"\r\n\r\n", per_message.get_payload().strip("\r\n"))]
        self.assertEqual(len(blocks), 1)
        self.assertEqual(blocks[0]["Final-Recipient"], "utf-8; m\u00fcller@example.net")
        self.assertEqual(blocks[0]["Action"], "failed")
        self.assertEqual(blocks[0]["Status"], "5.1.1")
        self.assertEqual(parts[2].get_content_type(), "message/global")
        [returned] = parts[2].get_payload()
        self.assertEqual(returned["Subject"], "Gr\u00fc\u00dfe")
        self.assertEqual(returned.as_string(policy=email.policy.SMTPUTF8), message.decode())

if __name__ == "__main__":
    harness.main()
