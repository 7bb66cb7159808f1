"""mta's SMTP server driven by real clients: swaks, Python's smtplib and raw sockets, over
plain SMTP, STARTTLS, submission and implicit TLS, the inetd mode (-bs) on pipes and on a
socket, hostile input (relay tricks, SMTP smuggling, shell metacharacters, huge lines, NUL) and
a daemon killed with SIGKILL while clients send. What was accepted is checked in the spool's
queue files with a parser of their own (mta/queue_file.h)."""

import base64
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import harness

USERS = "demo:{PLAIN}demopass\nalice:{PLAIN}alicepass\n"
ALIASES = "# test aliases\nsales: alice, demo\n"
SENDER = "sender@client.example"

# One certificate for the whole module: making an RSA key per test would cost seconds.
CERT = KEY = None


def setUpModule():
    global CERT, KEY
    cert_dir = tempfile.mkdtemp(prefix="mw-cert-")
    unittest.addModuleCleanup(shutil.rmtree, cert_dir, ignore_errors=True)
    os.chmod(cert_dir, 0o755)  # the daemon reads the key as root, but let nobody traverse too
    CERT, KEY = harness.make_certificate(cert_dir)


# --- queue files ------------------------------------------------------------------------------

QUEUE_ID = re.compile(rb"^[0-9A-V]{20}$")
RECIPIENT_KEYS = {b"ORCPT", b"NOTIFY", b"STATE", b"ATTEMPTS", b"NEXT", b"ERROR"}
SINGLE_KEYS = {b"ID", b"TIME", b"FROM", b"BODY", b"SMTPUTF8", b"RET", b"ENVID", b"CLIENT",
               b"HELO", b"AUTHUSER", b"TLSPROTO", b"TLSCIPHER", b"PROTO"}
RECEIVED = re.compile(rb"\AReceived: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*")


def unescape(value):
    """Undoes the %XX escaping of envelope values, refusing what the format forbids."""
    if re.search(rb"%(?![0-9A-F]{2})", value):
        raise ValueError("bad %% escape in %r" % value)
    for c in value:
        if c < 0x20 or c > 0x7E:
            raise ValueError("raw control or 8-bit octet in %r" % value)
    return re.sub(rb"%([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), value).decode(
        "utf-8", "surrogateescape")


class QueueFile:
    """A parsed queue file: singleton fields, recipients, and the message after END."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        with open(path, "rb") as f:
            data = f.read()
        self.fields = {}
        self.recipients = []
        pos = 0
        first = True
        while True:
            lf = data.find(b"\n", pos)
            if lf < 0:
                raise ValueError("%s: truncated envelope (no END line)" % self.name)
            line = data[pos:lf]
            pos = lf + 1
            if b"\r" in line:
                raise ValueError("%s: CR in envelope line %r" % (self.name, line))
            if first:
                if line != b"MWQUEUE 1":
                    raise ValueError("%s: first line %r" % (self.name, line))
                first = False
                continue
            if line == b"END":
                break
            key, sp, value = line.partition(b" ")
            if not sp:
                raise ValueError("%s: line without value %r" % (self.name, line))
            if key == b"RCPT":
                self.recipients.append({"RCPT": unescape(value)})
            elif key in RECIPIENT_KEYS:
                if not self.recipients or key.decode() in self.recipients[-1]:
                    raise ValueError("%s: misplaced %r" % (self.name, key))
                self.recipients[-1][key.decode()] = unescape(value)
            elif key in SINGLE_KEYS:
                if key.decode() in self.fields:
                    raise ValueError("%s: %r twice" % (self.name, key))
                self.fields[key.decode()] = unescape(value)
            else:
                raise ValueError("%s: unknown key %r" % (self.name, key))
        for key in ("ID", "TIME", "FROM"):
            if key not in self.fields:
                raise ValueError("%s: no %s line" % (self.name, key))
        if not self.recipients:
            raise ValueError("%s: no RCPT line" % self.name)
        self.content = data[pos:]
        m = RECEIVED.match(self.content)
        if not m:
            raise ValueError("%s: message does not start with our Received field" % self.name)
        self.received = m.group(0)
        self.message = self.content[m.end():]

    def get(self, key, default=None):
        return self.fields.get(key, default)

    @property
    def sender(self):
        return self.fields["FROM"]

    @property
    def rcpts(self):
        return [r["RCPT"] for r in self.recipients]


def make_message(token, lines=3, extra=b""):
    """A message in wire form (CRLF) that names token in Subject, Message-ID and body."""
    t = token.encode()
    head = (b"From: <%s>\r\nTo: <demo@example.org>\r\nSubject: test %s\r\n"
            b"Message-ID: <%s@client.example>\r\n\r\n" % (SENDER.encode(), t, t))
    body = b"".join(b"%s line %05d of the body\r\n" % (t, i) for i in range(lines))
    return head + body + extra


# --- the daemon -------------------------------------------------------------------------------

class MtaServer:
    """mta -bD in a sandbox: its config, spool and log file; stopped by PID. Readiness is read
    from the log rather than probed with a connection, which would count as a session (and
    against max_sessions_per_address) and could race with a test's own connections."""

    def __init__(self, box, name="mta", extra="", relay=True):
        self.box = box
        self.name = name
        self.port = harness.free_port()
        self.submission_port = harness.free_port()
        self.smtps_port = harness.free_port()
        self.spool = box.path(name + "-spool")
        config = (f"listen = 127.0.0.1:{self.port}\n"
                  f"listen_submission = 127.0.0.1:{self.submission_port}\n"
                  f"listen_smtps = 127.0.0.1:{self.smtps_port}\n"
                  f"tls_certificate = {CERT}\ntls_key = {KEY}\n"
                  f"spool_dir = {self.spool}\n"
                  "local_domains = example.org\n"
                  f"accounts = file\naccount_file = {box.users}\n"
                  f"aliases = {box.path('etc', 'aliases')}\n"
                  "run_as = nobody\nspool_reserve = 1M\nhostname = mx.example.org\n"
                  "failed_login_delay = 0\n"
                  # These tests look at what the receiving side queued: nothing is delivered
                  # (test_delivery.py and test_remote.py test delivery).
                  "delivery_mode = queue\nqueue_rescan = 1d\n")
        if relay:
            config += "relay_networks = 127.0.0.0/8\n"
        self.config = box.write(f"etc/{name}.conf", config + extra)
        self.log_path = box.path(name + ".log")
        self.proc = None
        self.start()

    def start(self, timeout=10.0):
        """Starts the daemon and waits (bounded) for its "ready" log line."""
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "ab") as log:
            self.proc = harness.Process([harness.binary("mta"), "-bD", "-v", "-C", self.config],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_since(offset).find(" ready") >= 0:
                return
            if self.proc.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.proc.stop()
        raise RuntimeError("mta did not start (status %s):\n%s"
                           % (self.proc.proc.returncode, self.log_since(offset)[-3000:]))

    def log_since(self, offset=0):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def log(self):
        return self.log_since(0)

    def kill(self):
        """SIGKILL by PID: no chance to clean anything up."""
        if self.proc.proc.poll() is None:
            os.kill(self.proc.proc.pid, signal.SIGKILL)
        self.proc.proc.wait(timeout=10)

    def stop(self):
        if self.proc is not None:
            self.proc.stop()

    def dir(self, sub):
        return os.path.join(self.spool, sub)

    def names(self, sub):
        d = self.dir(sub)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def queue(self):
        return [QueueFile(os.path.join(self.dir("queue"), n)) for n in self.names("queue")]

    def queue_file(self, queue_id):
        return QueueFile(os.path.join(self.dir("queue"), queue_id))


# --- clients ----------------------------------------------------------------------------------

class RawClient:
    """A plain socket and its reader; every read bounded by the socket's timeout."""

    def __init__(self, port, timeout=20, greet=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        if greet:
            code, lines = self.reply()
            if code != 220:
                raise AssertionError("greeting %r" % lines)

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """One reply, multi-line or not: (code, [lines])."""
        lines = []
        while True:
            line = self.file.readline(100_000)
            if not line:
                raise EOFError("connection closed after %r" % lines)
            if not line.endswith(b"\r\n") or len(line) < 5 or not line[:3].isdigit():
                raise AssertionError("malformed reply line %r" % line)
            lines.append(line[:-2])
            if line[3:4] == b" ":
                return int(line[:3]), lines
            if line[3:4] != b"-":
                raise AssertionError("malformed reply line %r" % line)

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def codes(self, n):
        return [code for code, _ in self.replies(n)]

    def cmd(self, line):
        self.send(line + b"\r\n")
        return self.reply()

    def at_eof(self):
        """True when the server closed the connection (bounded by the timeout)."""
        try:
            return self.file.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.file.close()
        self.sock.close()


def queued_id(text):
    m = re.search(r"queued as ([0-9A-V]{20})", text if isinstance(text, str) else text.decode())
    if not m:
        raise AssertionError("no queue id in %r" % text)
    return m.group(1)


def swaks_has_tls():
    if not shutil.which("swaks"):
        return False
    r = subprocess.run(["swaks", "--support"], capture_output=True, timeout=30)
    return re.search(rb"^=== TLS supported", r.stdout + r.stderr, re.M) is not None


def tls_context():
    return ssl.create_default_context(cafile=CERT)


class MtaTestCase(unittest.TestCase):
    EXTRA = ""
    RELAY = True

    def setUp(self):
        self.box = harness.Sandbox()
        self.addCleanup(self.box.cleanup)
        self.box.write("etc/users", USERS)
        self.box.write("etc/aliases", ALIASES)
        self.servers = []
        self.server = self.start_server(extra=self.EXTRA, relay=self.RELAY)

    def start_server(self, name="mta", extra="", relay=True):
        server = MtaServer(self.box, name=name, extra=extra, relay=relay)
        self.servers.append(server)
        self.addCleanup(server.stop)
        return server

    def tearDown(self):
        # Every test's spool must hold only well-formed queue files named by their ID line.
        for server in self.servers:
            self.assert_spool_consistent(server)

    def assert_spool_consistent(self, server):
        for name in server.names("queue"):
            self.assertRegex(name.encode(), QUEUE_ID)
            qf = server.queue_file(name)
            self.assertEqual(qf.get("ID"), name, "queue file name and ID line differ")
            self.assertTrue(qf.content.endswith(b"\r\n"), name)
        self.assertEqual(server.names("corrupt"), [])

    def raw(self, port=None, **kw):
        client = RawClient(port or self.server.port, **kw)
        self.addCleanup(client.close)
        return client

    def smtp(self, port=None):
        return smtplib.SMTP("127.0.0.1", port or self.server.port, timeout=20,
                            local_hostname="client.example")

    def send(self, client, rcpts, message, sender=SENDER):
        """One transaction over smtplib; returns the queue id from the 250."""
        client.ehlo_or_helo_if_needed()
        code, text = client.mail(sender)
        self.assertEqual(code, 250, text)
        for r in rcpts:
            code, text = client.rcpt(r)
            self.assertEqual(code, 250, (r, text))
        code, text = client.data(message)
        self.assertEqual(code, 250, text)
        return queued_id(text)

    def ehlo(self, client):
        code, lines = client.cmd(b"EHLO client.example")
        self.assertEqual(code, 250, lines)
        return [l[4:] for l in lines]


# --- plain SMTP: swaks, pipelining, BDAT, what the envelope holds -----------------------------

class PlainSmtp(MtaTestCase):
    @unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
    def test_swaks_to_a_local_user(self):
        # swaks ends the data with CRLF "." CRLF itself: a final newline would be an empty line.
        data = self.box.write("data.txt", "Subject: from swaks\n\nfirst line\n.leading dot\n"
                                          "last line")
        r = harness.run(["swaks", "--server", "127.0.0.1", "--port", str(self.server.port),
                         "--helo", "client.example", "--from", SENDER,
                         "--to", "demo@example.org", "--data", "@" + data], timeout=30)
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        qf = self.server.queue_file(queued_id(out))
        self.assertEqual(qf.sender, SENDER)
        self.assertEqual(qf.rcpts, ["demo@example.org"])
        self.assertEqual(qf.get("CLIENT"), "127.0.0.1")
        self.assertEqual(qf.get("HELO"), "client.example")
        self.assertEqual(qf.get("PROTO"), "ESMTP")
        self.assertIsNone(qf.get("AUTHUSER"))
        self.assertIsNone(qf.get("TLSPROTO"))
        self.assertRegex(qf.received, rb"^Received: from client\.example \(\[127\.0\.0\.1\]\)\r\n"
                                      rb"\tby mx\.example\.org \(Mailwright\) with ESMTP id "
                                      + qf.name.encode() + rb"\r\n\tfor <demo@example\.org>; ")
        # The body exactly as sent, with CRLF line ends and the dot-stuffing undone.
        self.assertEqual(qf.message, b"Subject: from swaks\r\n\r\nfirst line\r\n.leading dot\r\n"
                                     b"last line\r\n")
        self.assertEqual(self.server.names("incoming"), [])

    def test_pipelined_transactions_are_answered_in_order(self):
        c = self.raw()
        self.assertIn(b"PIPELINING", self.ehlo(c))
        c.send(b"MAIL FROM:<p1@client.example>\r\nRCPT TO:<demo@example.org>\r\n"
               b"RCPT TO:<ghost@example.org>\r\nRCPT TO:<sales@example.org>\r\nDATA\r\n")
        self.assertEqual(c.codes(5), [250, 250, 550, 250, 354])
        bodies = [b"Subject: one\r\n\r\n.dot stuffed\r\nMAIL FROM:<inside@x>\r\n",
                  b"Subject: two\r\n\r\ntwo\r\n",
                  b"Subject: three\r\n\r\n" + b"three\r\n" * 5000]
        batch = b"Subject: one\r\n\r\n..dot stuffed\r\nMAIL FROM:<inside@x>\r\n.\r\n"
        for i, body in enumerate(bodies[1:], 2):
            batch += (b"MAIL FROM:<p%d@client.example>\r\nRCPT TO:<demo@example.org>\r\nDATA\r\n"
                      % i + body + b".\r\n")
        c.send(batch + b"NOOP\r\nQUIT\r\n")
        replies = c.replies(10)
        self.assertEqual([code for code, _ in replies],
                         [250, 250, 250, 354, 250, 250, 250, 354, 250, 250])
        ids = [queued_id(replies[i][1][0]) for i in (0, 4, 8)]
        self.assertEqual(c.reply()[0], 221)
        self.assertTrue(c.at_eof())
        self.assertEqual(sorted(ids), ids)  # ids sort by arrival
        self.assertEqual(self.server.names("queue"), ids)
        q = [self.server.queue_file(i) for i in ids]
        self.assertEqual(q[0].rcpts, ["demo@example.org", "sales@example.org"])
        self.assertEqual([f.sender for f in q], ["p1@client.example", "p2@client.example",
                                                 "p3@client.example"])
        self.assertEqual([f.message for f in q], bodies)

    def test_bdat_chunks_are_stored_as_sent(self):
        c = self.raw()
        self.assertIn(b"CHUNKING", self.ehlo(c))
        # No dot-unstuffing and no end marker in BDAT; a CR ending one chunk and the LF
        # starting the next are one line end.
        part1 = b"Subject: chunks\r\n\r\n..first\r\n.\r"
        part2 = b"\nQUIT\r\nsecond\r\n"
        c.send(b"MAIL FROM:<b@client.example>\r\nRCPT TO:<demo@example.org>\r\n"
               b"BDAT %d\r\n%sBDAT %d LAST\r\n%s" % (len(part1), part1, len(part2), part2))
        replies = c.replies(4)
        self.assertEqual([code for code, _ in replies], [250, 250, 250, 250], replies)
        qf = self.server.queue_file(queued_id(replies[3][1][0]))
        self.assertEqual(qf.message, part1 + part2)
        self.assertEqual(c.cmd(b"NOOP")[0], 250)

    def test_utf8_and_dsn_parameters_are_escaped_in_the_envelope(self):
        c = self.raw()
        self.assertIn(b"SMTPUTF8", self.ehlo(c))
        sender = "jörg@bücher.example".encode()
        self.assertGreaterEqual(c.cmd(b"MAIL FROM:<%s>" % sender)[0], 500)  # no SMTPUTF8
        c.send(b"MAIL FROM:<%s> SMTPUTF8 ENVID=a+2Bb%%25 RET=HDRS\r\n"
               b"RCPT TO:<demo@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x+2By@example.org\r\n"
               b"DATA\r\n" % sender)
        self.assertEqual(c.codes(3), [250, 250, 354])
        code, lines = c.cmd("Subject: grüße\r\n\r\nü\r\n.".encode())
        self.assertEqual(code, 250, lines)
        qf = self.server.queue_file(queued_id(lines[0]))
        with open(qf.path, "rb") as f:
            envelope = f.read().split(b"\nEND\n")[0]
        self.assertIn(b"\nFROM j%C3%B6rg@b%C3%BCcher.example\n", envelope)
        self.assertTrue(all(32 <= b < 127 or b == 10 for b in envelope))
        self.assertEqual((qf.sender, qf.get("SMTPUTF8"), qf.get("PROTO")),
                         ("jörg@bücher.example", "1", "UTF8SMTP"))
        # xtext "+2B" is '+'; a '%' stands for itself in xtext and is escaped in the envelope.
        self.assertIn(b"\nENVID a+b%2525\n", envelope)
        self.assertEqual((qf.get("ENVID"), qf.get("RET")), ("a+b%25", "HDRS"))
        self.assertEqual(qf.recipients, [{"RCPT": "demo@example.org", "NOTIFY": "FAILURE,DELAY",
                                          "ORCPT": "rfc822;x+y@example.org"}])
        self.assertEqual(qf.message, "Subject: grüße\r\n\r\nü\r\n".encode())

    def test_several_messages_in_one_smtplib_connection(self):
        with self.smtp() as s:
            ids = [self.send(s, ["demo@example.org"], make_message("multi%d" % i, lines=50 * i))
                   for i in range(5)]
        self.assertEqual(len(set(ids)), 5)
        self.assertEqual(self.server.names("queue"), sorted(ids))
        for i, qid in enumerate(ids):
            self.assertEqual(self.server.queue_file(qid).message,
                             make_message("multi%d" % i, lines=50 * i))
        self.assertEqual(self.server.names("incoming"), [])

    def test_queue_file_names_match_their_id_lines(self):
        with self.smtp() as s:
            for i in range(3):
                self.send(s, ["demo@example.org", "alice@example.org"], make_message("n%d" % i))
        files = self.server.queue()
        self.assertEqual(len(files), 3)
        self.assertEqual([f.name for f in files], [f.get("ID") for f in files])
        self.assertEqual(len({f.get("ID") for f in files}), 3)
        for f in files:
            self.assertEqual(f.rcpts, ["demo@example.org", "alice@example.org"])
            self.assertIsNotNone(re.fullmatch(r"[1-9][0-9]*", f.get("TIME")))


# --- STARTTLS, AUTH, submission, implicit TLS -------------------------------------------------

class TlsAndAuth(MtaTestCase):
    def test_starttls_then_auth_plain_with_smtplib(self):
        with self.smtp() as s:
            s.ehlo()
            self.assertTrue(s.has_extn("starttls"))
            self.assertFalse(s.has_extn("auth"), "AUTH offered before TLS")
            code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0demo\0demopass").decode())
            self.assertEqual(code, 538, text)
            s.starttls(context=tls_context())
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            self.assertIn("PLAIN", s.esmtp_features.get("auth", "").upper())
            s.user, s.password = "demo", "demopass"
            code, text = s.auth("PLAIN", s.auth_plain)
            self.assertEqual(code, 235, text)
            qid = self.send(s, ["demo@example.org"], make_message("tlsauth"))
        qf = self.server.queue_file(qid)
        self.assertEqual(qf.get("AUTHUSER"), "demo")
        self.assertEqual(qf.get("PROTO"), "ESMTPSA")
        self.assertRegex(qf.get("TLSPROTO", ""), r"^TLSv1\.[23]$")
        self.assertTrue(qf.get("TLSCIPHER"))
        self.assertIn(b"with ESMTPSA id " + qid.encode(), qf.received)
        self.assertIn(b"(using " + qf.get("TLSPROTO").encode(), qf.received)
        self.assertEqual(qf.message, make_message("tlsauth"))

    def test_wrong_password_and_unknown_user_get_535(self):
        for user, password in (("demo", "wrong"), ("nosuchuser", "demopass")):
            with self.smtp() as s:
                s.starttls(context=tls_context())
                s.ehlo()
                s.user, s.password = user, password
                with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                    s.auth("PLAIN", s.auth_plain)
                self.assertEqual(cm.exception.smtp_code, 535)
                # Not authenticated: relaying is still only what relay_networks allows, and
                # the session goes on.
                self.assertEqual(s.noop()[0], 250)

    def test_auth_login_with_and_without_initial_response(self):
        for initial in (True, False):
            with self.smtp() as s:
                s.starttls(context=tls_context())
                s.ehlo()
                s.user, s.password = "alice", "alicepass"
                code, text = s.auth("LOGIN", s.auth_login, initial_response_ok=initial)
                self.assertEqual(code, 235, text)
                qid = self.send(s, ["demo@example.org"], make_message("login"))
            self.assertEqual(self.server.queue_file(qid).get("AUTHUSER"), "alice")

    @unittest.skipUnless(swaks_has_tls(), "swaks without TLS support (needs Net::SSLeay)")
    def test_swaks_starttls_auth_plain(self):
        r = harness.run(["swaks", "--server", "127.0.0.1", "--port", str(self.server.port),
                         "--helo", "client.example", "--from", SENDER, "--to", "demo@example.org",
                         "--tls", "--auth", "PLAIN", "--auth-user", "demo",
                         "--auth-password", "demopass", "--data",
                         "Subject: swaks tls\n\nover tls"], timeout=30)
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        qf = self.server.queue_file(queued_id(out))
        self.assertEqual((qf.get("AUTHUSER"), qf.get("PROTO")), ("demo", "ESMTPSA"))
        self.assertTrue(qf.get("TLSPROTO", "").startswith("TLSv1."))
        self.assertEqual(qf.message, b"Subject: swaks tls\r\n\r\nover tls\r\n")

    def test_plaintext_after_starttls_is_discarded(self):
        c = self.raw()
        self.ehlo(c)
        # Commands injected behind STARTTLS in the same packet (CVE-2011-0411).
        c.send(b"STARTTLS\r\nMAIL FROM:<injected@client.example>\r\n")
        self.assertEqual(c.reply()[0], 220)
        tls = tls_context().wrap_socket(c.sock, server_hostname="localhost")
        f = tls.makefile("rb")
        try:
            tls.sendall(b"RCPT TO:<demo@example.org>\r\n")
            # Had MAIL been kept from before TLS, RCPT would be accepted (nor was EHLO sent).
            self.assertTrue(f.readline().startswith(b"503 "))
        finally:
            f.close()
            tls.close()

    def test_submission_needs_auth_and_then_relays(self):
        with self.smtp(self.server.submission_port) as s:
            s.ehlo()
            code, text = s.mail(SENDER)
            self.assertEqual(code, 530, text)
            s.rset()
            s.starttls(context=tls_context())
            s.ehlo()
            code, text = s.mail(SENDER)
            self.assertEqual(code, 530, text)
            s.rset()
            s.login("demo", "demopass")
            qid = self.send(s, ["friend@remote.example", "demo@example.org"],
                            make_message("submission"), sender="demo@example.org")
        qf = self.server.queue_file(qid)
        self.assertEqual(qf.rcpts, ["friend@remote.example", "demo@example.org"])
        self.assertEqual((qf.get("AUTHUSER"), qf.get("PROTO")), ("demo", "ESMTPSA"))

    def test_submission_without_auth_cannot_relay_even_from_relay_networks(self):
        c = self.raw(self.server.submission_port)
        self.ehlo(c)
        self.assertEqual(c.cmd(b"MAIL FROM:<x@client.example>")[0], 530)
        self.assertEqual(c.cmd(b"RCPT TO:<friend@remote.example>")[0], 503)
        self.assertEqual(self.server.names("queue"), [])

    def test_implicit_tls_port_with_auth(self):
        ctx = tls_context()
        with smtplib.SMTP_SSL("127.0.0.1", self.server.smtps_port, timeout=20, context=ctx,
                              local_hostname="client.example") as s:
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            self.assertTrue(s.has_extn("auth"))
            code, text = s.mail(SENDER)
            self.assertEqual(code, 530, text)
            s.rset()
            s.login("demo", "demopass")
            qid = self.send(s, ["friend@remote.example"], make_message("smtps"),
                            sender="demo@example.org")
        qf = self.server.queue_file(qid)
        self.assertEqual(qf.get("PROTO"), "ESMTPSA")
        self.assertEqual(qf.get("AUTHUSER"), "demo")
        # The real protocol version, not a placeholder.
        self.assertRegex(qf.get("TLSPROTO", ""), r"^TLSv1\.[23]$")


# --- relaying ---------------------------------------------------------------------------------

class RelayDenied(MtaTestCase):
    RELAY = False

    TRICKS = [b"<user@remote.example>",
              b"<user%remote.example@example.org>",
              b"<remote.example!user@example.org>",
              b"<\"user@remote.example\"@example.org>",
              b"<@example.org:user@remote.example>",
              b"<@example.org,@mx.example.org:user@remote.example>",
              b"<user@[192.0.2.1]>",
              b"<demo@[127.0.0.1]>",
              b"<user@remote.example.>",
              b"<user@example.org.remote.example>"]

    def test_relay_tricks_are_refused_and_nothing_is_queued(self):
        c = self.raw()
        self.ehlo(c)
        self.assertEqual(c.cmd(b"MAIL FROM:<x@client.example>")[0], 250)
        for rcpt in self.TRICKS:
            code, lines = c.cmd(b"RCPT TO:" + rcpt)
            self.assertTrue(500 <= code < 600, (rcpt, lines))
        code, lines = c.cmd(b"RCPT TO:<user@remote.example>")
        self.assertEqual(code, 554)
        self.assertTrue(lines[0].startswith(b"554 5.7.1"), lines)
        self.assertEqual(c.cmd(b"DATA")[0], 554)  # no valid recipients
        self.assertEqual(c.cmd(b"QUIT")[0], 221)
        self.assertEqual(self.server.names("queue"), [])
        self.assertEqual(self.server.names("incoming"), [])

    def test_local_recipients_are_accepted(self):
        c = self.raw()
        self.ehlo(c)
        self.assertEqual(c.cmd(b"MAIL FROM:<x@remote.example>")[0], 250)
        code, lines = c.cmd(b"RCPT TO:<ghost@example.org>")
        self.assertEqual(code, 550)
        self.assertTrue(lines[0].startswith(b"550 5.1.1"), lines)
        for rcpt in (b"<demo@example.org>", b"<sales@example.org>", b"<postmaster>",
                     b"<Alice@EXAMPLE.ORG>", b"<demo@mx.example.org>"):
            code, lines = c.cmd(b"RCPT TO:" + rcpt)
            self.assertEqual(code, 250, (rcpt, lines))
        self.assertEqual(c.cmd(b"RCPT TO:<friend@remote.example>")[0], 554)
        self.assertEqual(c.cmd(b"DATA")[0], 354)
        c.send(b"Subject: inbound\r\n\r\nhello\r\n.\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250, lines)
        qf = self.server.queue_file(queued_id(lines[0]))
        self.assertEqual(len(qf.rcpts), 5)
        self.assertEqual(qf.rcpts[:3], ["demo@example.org", "sales@example.org", "postmaster"])
        self.assertNotIn("friend@remote.example", qf.rcpts)
        self.assertNotIn("ghost@example.org", qf.rcpts)

    def test_authenticated_client_may_relay(self):
        with self.smtp() as s:
            s.starttls(context=tls_context())
            s.ehlo()
            self.assertEqual(s.mail(SENDER)[0], 250)
            self.assertEqual(s.rcpt("friend@remote.example")[0], 554)
            s.rset()
            s.login("demo", "demopass")
            qid = self.send(s, ["friend@remote.example"], make_message("authrelay"))
        self.assertEqual(self.server.queue_file(qid).rcpts, ["friend@remote.example"])


# --- SMTP smuggling ---------------------------------------------------------------------------

SMUGGLED = (b"MAIL FROM:<evil@x>\r\nRCPT TO:<demo@example.org>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled")
# Each line end that a lax server might take as the end of the data. The smuggled transaction
# after it ends with the real CRLF.CRLF, which ends the outer message.
SMUGGLING_MARKERS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\r", b"\r\n.\n", b"\r\r\n.\r\r\n",
                     b"\r\n\x00.\r\n", b"\r\n.\r\r\n"]


class SmugglingCase(MtaTestCase):
    def smuggle(self, marker):
        """One message with marker inside; returns the replies up to the 221 to QUIT."""
        c = self.raw()
        self.ehlo(c)
        c.send(b"MAIL FROM:<outer@client.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        self.assertEqual(c.codes(3), [250, 250, 354])
        c.send(b"Subject: outer\r\n\r\nbefore" + marker + SMUGGLED + b"\r\n.\r\nQUIT\r\n")
        replies = []
        while True:
            code, lines = c.reply()
            replies.append((code, lines))
            if code == 221 or len(replies) > 6:
                break
        self.assertTrue(c.at_eof())
        c.close()
        return replies

    def check(self, normalize):
        for marker in SMUGGLING_MARKERS:
            before = self.server.names("queue")
            replies = self.smuggle(marker)
            codes = [code for code, _ in replies]
            after = self.server.names("queue")
            new = [n for n in after if n not in before]
            pure_lf = b"\x00" not in marker and re.search(rb"\r(?!\n)", marker) is None
            if normalize and pure_lf:
                self.assertEqual(codes, [250, 221], (marker, replies))
                self.assertEqual(len(new), 1, marker)
                qf = self.server.queue_file(new[0])
                self.assertEqual(qf.sender, "outer@client.example")
                self.assertEqual(qf.rcpts, ["alice@example.org"])
                # The would-be commands are text inside the one message.
                self.assertIn(b"MAIL FROM:<evil@x>\r\n", qf.message)
                self.assertTrue(qf.message.endswith(b"\r\nsmuggled\r\n"), qf.message)
                self.assertNotIn(b"\r\r", qf.message)
            else:
                self.assertEqual(codes, [550, 221], (marker, replies))
                self.assertTrue(replies[0][1][0].startswith(b"550 5.6.0"), replies)
                self.assertEqual(new, [], marker)
        for qf in self.server.queue():
            self.assertNotEqual(qf.sender, "evil@x")
        self.assertEqual(self.server.names("incoming"), [])


class SmugglingReject(SmugglingCase):
    def test_no_marker_variant_ends_the_message_under_reject(self):
        self.check(normalize=False)


class SmugglingNormalize(SmugglingCase):
    EXTRA = "bare_line_ends = normalize\n"

    def test_no_marker_variant_ends_the_message_under_normalize(self):
        self.check(normalize=True)


# --- hostile input ----------------------------------------------------------------------------

class HostileInput(MtaTestCase):
    def test_shell_metacharacters_are_refused_or_stored_literally(self):
        pwned = self.box.path("pwned")
        senders = [f"`touch {pwned}`@example.org",
                   f"$(touch {pwned})@example.org",
                   f";touch {pwned};@example.org",
                   f"|touch {pwned}@example.org",
                   "`touch${IFS}%s`@example.org" % pwned,
                   "|touch${IFS}%s@example.org" % pwned,
                   "$(touch${IFS}%s)@example.org" % pwned,
                   f"\"|touch {pwned}\"@example.org",
                   f"\"`touch {pwned}`;$(touch {pwned})\"@example.org"]
        stored = 0
        for sender in senders:
            c = self.raw()
            code, lines = c.cmd(b"EHLO `touch${IFS}%s`" % pwned.encode())
            helo_ok = code == 250
            code, lines = c.cmd(b"MAIL FROM:<%s>" % sender.encode())
            if code != 250:
                self.assertTrue(500 <= code < 600, (sender, lines))
                c.close()
                continue
            for rcpt in (f"\"|touch {pwned}\"@example.org", "|touch${IFS}%s@example.org" % pwned,
                         f"`touch {pwned}`@example.org"):
                code, lines = c.cmd(b"RCPT TO:<%s>" % rcpt.encode())
                self.assertTrue(500 <= code < 600, (rcpt, lines))
            self.assertEqual(c.cmd(b"RCPT TO:<demo@example.org>")[0], 250)
            self.assertEqual(c.cmd(b"DATA")[0], 354)
            code, lines = c.cmd(b"Subject: $(touch %s)\r\n\r\n`touch %s`\r\n." % (
                pwned.encode(), pwned.encode()))
            self.assertEqual(code, 250, lines)
            qf = self.server.queue_file(queued_id(lines[0]))
            self.assertEqual(qf.sender, sender)
            if helo_ok:
                self.assertEqual(qf.get("HELO"), "`touch${IFS}%s`" % pwned)
            stored += 1
            c.close()
        self.assertGreater(stored, 0, "no sender was stored: the literal check never ran")
        time.sleep(0.2)
        self.assertFalse(os.path.exists(pwned))

    def test_line_ends_smuggled_into_envelope_parameters_are_refused(self):
        # xtext can spell any octet: a decoded CR or LF would start a new envelope line
        # (the Exim and OpenSMTPD spool injections).
        c = self.raw()
        self.ehlo(c)
        for line in (b"MAIL FROM:<x@client.example> ENVID=a+0ARCPT+20evil@remote.example",
                     b"MAIL FROM:<x@client.example> ENVID=a+0D+0AEND+0A"):
            self.assertGreaterEqual(c.cmd(line)[0], 500, line)
        self.assertEqual(c.cmd(b"MAIL FROM:<x@client.example>")[0], 250)
        for line in (b"RCPT TO:<demo@example.org> ORCPT=rfc822;a+0ARCPT+20evil@remote.example",
                     b"RCPT TO:<demo@example.org> ORCPT=rfc822;a+00b@example.org"):
            self.assertGreaterEqual(c.cmd(line)[0], 500, line)
        self.assertEqual(c.cmd(b"RCPT TO:<alice@example.org>")[0], 250)
        self.assertEqual(c.cmd(b"DATA")[0], 354)
        code, lines = c.cmd(b"Subject: x\r\n\r\nx\r\n.")
        self.assertEqual(code, 250, lines)
        qf = self.server.queue_file(queued_id(lines[0]))
        self.assertEqual(qf.rcpts, ["alice@example.org"])
        self.assertIsNone(qf.get("ENVID"))

    def test_megabyte_line_in_data_is_refused_and_the_session_goes_on(self):
        c = self.raw()
        self.ehlo(c)
        c.send(b"MAIL FROM:<x@client.example>\r\nRCPT TO:<demo@example.org>\r\nDATA\r\n")
        self.assertEqual(c.codes(3), [250, 250, 354])
        c.send(b"Subject: long\r\n\r\n" + b"a" * 1_000_000 + b"\r\nend\r\n.\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 500, lines)
        self.assertTrue(lines[0].startswith(b"500 5.5.2"), lines)
        self.assertEqual(self.server.names("queue"), [])
        self.assertEqual(c.cmd(b"NOOP")[0], 250)
        # A line of exactly max_line_length (1000 with CRLF) is fine.
        c.send(b"MAIL FROM:<x@client.example>\r\nRCPT TO:<demo@example.org>\r\nDATA\r\n")
        self.assertEqual(c.codes(3), [250, 250, 354])
        c.send(b"Subject: ok\r\n\r\n" + b"b" * 998 + b"\r\n.\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250, lines)
        self.assertEqual(self.server.queue_file(queued_id(lines[0])).message,
                         b"Subject: ok\r\n\r\n" + b"b" * 998 + b"\r\n")
        self.assertEqual(self.server.names("incoming"), [])

    def test_megabyte_command_line_is_refused_and_the_session_goes_on(self):
        c = self.raw()
        self.ehlo(c)
        c.send(b"NOOP " + b"x" * 1_000_000 + b"\r\nNOOP\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 500, lines)
        self.assertTrue(lines[0].startswith(b"500 5.5.2"), lines)
        self.assertEqual(c.reply()[0], 250)  # exactly one error for the long line
        c.send(b"MAIL FROM:<x@client.example> " + b"y" * 100_000 + b"\r\n")
        self.assertEqual(c.reply()[0], 500)
        self.assertEqual(c.cmd(b"MAIL FROM:<x@client.example>")[0], 250)

    def test_nul_and_controls_in_commands(self):
        c = self.raw()
        self.ehlo(c)
        for line in (b"NOOP\x00", b"MAIL FROM:<a\x00b@client.example>", b"HELO a\x00b",
                     b"RSET\rNOOP", b"MAIL FROM:<a@client.example>\x1b"):
            code, lines = c.cmd(line)
            self.assertEqual(code, 500, (line, lines))
        c.send(b"NOOP\n")  # bare LF ends no command
        self.assertEqual(c.reply()[0], 500)
        self.assertEqual(c.cmd(b"MAIL FROM:<a@client.example>")[0], 250)
        self.assertEqual(c.cmd(b"RCPT TO:<demo@example.org>")[0], 250)
        self.assertEqual(c.cmd(b"DATA")[0], 354)
        c.send(b"Subject: nul\r\n\r\nbefore\x00after\r\n.\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 550, lines)
        self.assertTrue(lines[0].startswith(b"550 5.6.0"), lines)
        self.assertEqual(c.cmd(b"NOOP")[0], 250)
        self.assertEqual(self.server.names("queue"), [])
        self.assertEqual(self.server.names("incoming"), [])


# --- limits and timeouts ----------------------------------------------------------------------

class Limits(MtaTestCase):
    EXTRA = "max_recipients = 3\nmax_message_size = 102400\n"

    def test_too_many_recipients(self):
        c = self.raw()
        self.ehlo(c)
        self.assertEqual(c.cmd(b"MAIL FROM:<x@client.example>")[0], 250)
        for rcpt in (b"demo", b"alice", b"sales"):
            self.assertEqual(c.cmd(b"RCPT TO:<%s@example.org>" % rcpt)[0], 250)
        code, lines = c.cmd(b"RCPT TO:<postmaster@example.org>")
        self.assertEqual(code, 452)
        self.assertTrue(lines[0].startswith(b"452 4.5.3"), lines)
        self.assertEqual(c.cmd(b"DATA")[0], 354)
        code, lines = c.cmd(b"Subject: three\r\n\r\nx\r\n.")
        self.assertEqual(code, 250, lines)
        self.assertEqual(self.server.queue_file(queued_id(lines[0])).rcpts,
                         ["demo@example.org", "alice@example.org", "sales@example.org"])

    def test_size_limits(self):
        c = self.raw()
        ehlo = self.ehlo(c)
        self.assertIn(b"SIZE 102400", ehlo)
        code, lines = c.cmd(b"MAIL FROM:<x@client.example> SIZE=102401")
        self.assertEqual(code, 552)
        self.assertTrue(lines[0].startswith(b"552 5.3.4"), lines)
        self.assertEqual(c.cmd(b"MAIL FROM:<x@client.example> SIZE=1000")[0], 250)
        self.assertEqual(c.cmd(b"RCPT TO:<demo@example.org>")[0], 250)
        self.assertEqual(c.cmd(b"DATA")[0], 354)
        # The declared SIZE was a lie: the limit applies to what comes.
        c.send(b"Subject: big\r\n\r\n" + b"z" * 70 + b"\r\n" + (b"z" * 70 + b"\r\n") * 2000
               + b".\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 552, lines)
        self.assertTrue(lines[0].startswith(b"552 5.3.4"), lines)
        self.assertEqual(self.server.names("queue"), [])
        self.assertEqual(c.cmd(b"NOOP")[0], 250)
        msg = b"Subject: fits\r\n\r\n" + (b"y" * 998 + b"\r\n") * 100
        self.assertLessEqual(len(msg), 102400)
        with self.smtp() as s:
            qid = self.send(s, ["demo@example.org"], msg)
        self.assertEqual(self.server.queue_file(qid).message, msg)
        self.assertEqual(self.server.names("incoming"), [])

    def test_slow_client_mid_data_does_not_hold_up_others(self):
        slow = self.raw()
        self.ehlo(slow)
        slow.send(b"MAIL FROM:<slow@client.example>\r\nRCPT TO:<demo@example.org>\r\nDATA\r\n")
        self.assertEqual(slow.codes(3), [250, 250, 354])
        slow.send(b"Subject: slow\r\n\r\npart one\r\n")
        idle = self.raw()  # a second client that says nothing at all
        start = time.monotonic()
        ids = []
        for i in range(3):
            with self.smtp() as s:
                ids.append(self.send(s, ["demo@example.org"], make_message("fast%d" % i)))
        elapsed = time.monotonic() - start
        self.assertLess(elapsed, 5.0, "other clients waited for the slow one")
        self.assertEqual(len(self.server.names("incoming")), 1)  # the slow one's message
        slow.send(b"part two\r\n.\r\n")
        code, lines = slow.reply()
        self.assertEqual(code, 250, lines)
        qf = self.server.queue_file(queued_id(lines[0]))
        self.assertEqual(qf.message, b"Subject: slow\r\n\r\npart one\r\npart two\r\n")
        self.assertEqual(self.server.names("queue"), sorted(ids + [qf.name]))
        self.assertEqual(idle.cmd(b"NOOP")[0], 250)

    def test_sessions_per_address_and_max_errors(self):
        server = self.start_server("limited", "max_sessions_per_address = 2\nmax_errors = 3\n")
        a = self.raw(server.port)
        b = self.raw(server.port)
        c = self.raw(server.port, greet=False)
        code, lines = c.reply()
        self.assertEqual(code, 421, lines)
        self.assertTrue(c.at_eof())
        self.assertEqual(a.cmd(b"QUIT")[0], 221)
        self.assertTrue(a.at_eof())
        # The slot is released once the server has seen the close: bounded retry.
        deadline = time.monotonic() + 5
        while True:
            d = RawClient(server.port, greet=False)
            self.addCleanup(d.close)
            code, _ = d.reply()
            if code == 220 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(code, 220)
        self.assertEqual(d.cmd(b"BOGUS")[0], 500)
        self.assertEqual(d.cmd(b"MAIL FROM:<x@client.example>")[0], 503)  # no EHLO yet
        d.send(b"ALSO BOGUS\r\nNOOP\r\n")
        self.assertEqual(d.codes(2), [500, 421])
        self.assertTrue(d.at_eof())
        self.assertEqual(b.cmd(b"NOOP")[0], 250)


class GreetingDelay(MtaTestCase):
    # command_timeout shorter than the delay: the client's time starts with the greeting.
    EXTRA = "greeting_delay = 2s\ncommand_timeout = 1s\n"

    def test_early_talker_is_refused_and_a_patient_client_served(self):
        start = time.monotonic()
        early = self.raw(greet=False, timeout=10)
        patient = self.raw(greet=False, timeout=10)
        early.send(b"EHLO early.example\r\n")
        code, lines = early.reply()
        self.assertEqual(code, 554, lines)
        self.assertTrue(early.at_eof())
        code, lines = patient.reply()
        self.assertEqual(code, 220, lines)
        self.assertGreater(time.monotonic() - start, 1.8)
        self.assertEqual(patient.cmd(b"EHLO patient.example")[0], 250)
        code, lines = patient.reply()  # then silence: dropped after command_timeout
        self.assertTrue(lines[0].startswith(b"421 4.4.2"), lines)
        self.assertTrue(patient.at_eof())
        self.assertLess(time.monotonic() - start, 8)


class Timeouts(MtaTestCase):
    EXTRA = "command_timeout = 1s\ndata_timeout = 1s\n"

    def test_idle_clients_are_dropped(self):
        idle = self.raw(timeout=10)
        self.assertEqual(idle.cmd(b"EHLO idle.example")[0], 250)
        mid_data = self.raw(timeout=10)
        self.ehlo(mid_data)
        mid_data.send(b"MAIL FROM:<x@client.example>\r\nRCPT TO:<demo@example.org>\r\nDATA\r\n")
        self.assertEqual(mid_data.codes(3), [250, 250, 354])
        mid_data.send(b"Subject: stalled\r\n\r\npart")
        start = time.monotonic()
        for client in (idle, mid_data):
            code, lines = client.reply()
            self.assertEqual(code, 421, lines)
            self.assertTrue(lines[0].startswith(b"421 4.4.2"), lines)
            self.assertTrue(client.at_eof())
        self.assertLess(time.monotonic() - start, 5)
        # The stalled message is thrown away, not queued.
        deadline = time.monotonic() + 5
        while self.server.names("incoming") and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.server.names("incoming"), [])
        self.assertEqual(self.server.names("queue"), [])


# --- inetd mode (-bs) -------------------------------------------------------------------------

class InetdMode(MtaTestCase):
    def test_session_on_pipes(self):
        dialogue = (b"EHLO local.example\r\nMAIL FROM:<cron@localhost>\r\n"
                    b"RCPT TO:<demo@example.org>\r\nRCPT TO:<friend@remote.example>\r\nDATA\r\n"
                    b"Subject: via -bs\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n")
        with open(self.box.path("bs.log"), "wb") as log:
            proc = harness.Process([harness.binary("mta"), "-bs", "-C", self.server.config],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self.addCleanup(proc.stop)
        out, _ = proc.proc.communicate(dialogue, timeout=20)
        with open(self.box.path("bs.log")) as log:
            self.assertEqual(proc.proc.returncode, 0, log.read())
        lines = out.split(b"\r\n")
        self.assertEqual(lines[-1], b"")
        finals = [l for l in lines if l[3:4] == b" "]
        self.assertEqual([l[:3] for l in finals],
                         [b"220", b"250", b"250", b"250", b"250", b"354", b"250", b"221"], out)
        self.assertNotIn(b"STARTTLS", out)
        self.assertNotIn(b"AUTH", out)
        qf = self.server.queue_file(queued_id(finals[6]))
        self.assertEqual(qf.sender, "cron@localhost")
        self.assertEqual(qf.rcpts, ["demo@example.org", "friend@remote.example"])
        self.assertEqual(qf.get("PROTO"), "ESMTP")
        self.assertIn(qf.get("CLIENT"), (None, "local"))
        self.assertIn(b"(local)", qf.received)
        self.assertEqual(qf.message, b"Subject: via -bs\r\n\r\n.dot\r\nbody\r\n")

    def test_session_on_a_socket_with_starttls(self):
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        with open(self.box.path("bs-socket.log"), "wb") as log:
            proc = harness.Process([harness.binary("mta"), "-bs", "-C", self.server.config],
                                   stdin=theirs, stdout=theirs, stderr=log)
        self.addCleanup(proc.stop)
        theirs.close()
        ours.settimeout(20)
        client = smtplib.SMTP(local_hostname="client.example", timeout=20)
        client.sock = ours
        client._host = "localhost"  # the name starttls() checks the certificate against
        self.addCleanup(client.close)
        self.assertEqual(client.getreply()[0], 220)
        client.ehlo()
        self.assertTrue(client.has_extn("starttls"))
        client.starttls(context=tls_context())
        client.ehlo()
        client.login("demo", "demopass")
        qid = self.send(client, ["demo@example.org"], make_message("socket"))
        client.quit()
        client.close()
        self.assertEqual(proc.proc.wait(timeout=10), 0)
        qf = self.server.queue_file(qid)
        self.assertEqual(qf.get("PROTO"), "ESMTPSA")
        self.assertEqual(qf.get("AUTHUSER"), "demo")
        self.assertIn(qf.get("CLIENT"), (None, "local"))


# --- SIGKILL while clients send ---------------------------------------------------------------

class CrashRecovery(MtaTestCase):
    THREADS = 4
    MESSAGES = 240
    TIME_LIMIT = 30.0

    def test_sigkill_never_loses_or_duplicates_acknowledged_mail(self):
        # The seed is in every failure message; MW_CRASH_SEED=N repeats a run's choices.
        seed = int(os.environ.get("MW_CRASH_SEED", str(int(time.time()))))
        rng = random.Random(seed)
        lock = threading.Lock()
        acked, refused = set(), set()
        unexpected = []  # exceptions that ended a client thread
        sent = {}
        counter = [0]
        stop = threading.Event()
        deadline = time.monotonic() + self.TIME_LIMIT
        port = self.server.port

        def next_token(worker):
            with lock:
                if counter[0] >= self.MESSAGES:
                    return None
                counter[0] += 1
                n = counter[0]
            token = "w%dm%03d" % (worker, n)
            # Mostly small messages, some large ones.
            size = 2000 if n % 5 == 0 else 20
            sent[token] = make_message(token, lines=size)
            return token

        def expect(code_text, want):
            if code_text[0] != want:
                raise smtplib.SMTPResponseException(*code_text)

        def deliver(client, message, slow, wrng):
            """sendmail, or the same by hand with the message trickled in pieces, so that
            many kills land while a message is being received (no line starts with a dot)."""
            if not slow:
                client.sendmail(SENDER, ["demo@example.org"], message)
                return
            expect(client.mail(SENDER), 250)
            expect(client.rcpt("demo@example.org"), 250)
            expect(client.docmd("DATA"), 354)
            step = len(message) // 4 + 1
            for i in range(0, len(message), step):
                client.sock.sendall(message[i:i + step])
                time.sleep(wrng.uniform(0.01, 0.05))
            client.sock.sendall(b".\r\n")
            expect(client.getreply(), 250)

        def worker(number):
            try:
                send_until_done(number)
            except BaseException as e:  # reported by the main thread
                unexpected.append(repr(e))

        def send_until_done(number):
            wrng = random.Random(seed * 10 + number)
            client = None
            while not stop.is_set() and time.monotonic() < deadline:
                if client is None:
                    try:
                        client = smtplib.SMTP("127.0.0.1", port, timeout=5,
                                              local_hostname="crash.example")
                        client.ehlo()
                    except (OSError, smtplib.SMTPException):
                        if client is not None:
                            client.close()
                        client = None
                        time.sleep(0.05)
                        continue
                token = next_token(number)
                if token is None:
                    break
                try:
                    deliver(client, sent[token], wrng.random() < 0.5, wrng)
                    with lock:
                        acked.add(token)
                except (OSError, smtplib.SMTPException):
                    with lock:
                        refused.add(token)
                    client.close()
                    client = None
                if wrng.random() < 0.3 and client is not None:
                    try:
                        client.quit()
                    except (OSError, smtplib.SMTPException):
                        pass
                    client.close()
                    client = None
                time.sleep(wrng.uniform(0, 0.1))
            if client is not None:
                client.close()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True)
                   for i in range(self.THREADS)]
        for t in threads:
            t.start()
        kills = 0
        try:
            while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
                time.sleep(rng.uniform(0.3, 1.0))
                if not any(t.is_alive() for t in threads):
                    break
                self.server.kill()
                kills += 1
                self.server.start()
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=15)
        self.assertFalse(any(t.is_alive() for t in threads), "client threads did not finish")
        self.assertEqual(unexpected, [])
        note = "seed %d, %d kills, %d acknowledged, %d failed" % (seed, kills, len(acked),
                                                                 len(refused))
        self.assertGreaterEqual(kills, 3, note)
        self.assertGreater(len(acked), self.MESSAGES // 3, note)

        # A message left half received for sure, then a last crash and a restart: recovery.
        half = self.raw()
        self.ehlo(half)
        half.send(b"MAIL FROM:<half@client.example>\r\nRCPT TO:<demo@example.org>\r\nDATA\r\n")
        self.assertEqual(half.codes(3), [250, 250, 354])
        half.send(b"Subject: never finished\r\n\r\nhalf\r\n")
        wait_until = time.monotonic() + 5
        while not self.server.names("incoming") and time.monotonic() < wait_until:
            time.sleep(0.02)
        self.assertTrue(self.server.names("incoming"), "no incoming file to recover")
        self.server.kill()
        half.close()
        offset = os.path.getsize(self.server.log_path)
        self.server.start()
        self.assertEqual(self.server.names("incoming"), [], "recovery left incoming/ files")
        self.server.stop()

        counts = {}
        files = self.server.queue()  # raises on any truncated or malformed envelope
        for qf in files:
            self.assertEqual(qf.get("ID"), qf.name)
            m = re.search(rb"^Subject: test (\S+)\r\n", qf.message, re.M)
            self.assertIsNotNone(m, qf.name)
            token = m.group(1).decode()
            counts[token] = counts.get(token, 0) + 1
            # Not truncated: exactly what the client sent.
            self.assertEqual(qf.message, sent[token], "%s: %s" % (qf.name, note))
            self.assertNotIn(b"never finished", qf.message)
        self.assertEqual([t for t, n in counts.items() if n > 1], [], "duplicates; " + note)
        self.assertEqual(sorted(acked - set(counts)), [], "acknowledged but lost; " + note)
        self.assertEqual(sorted(set(counts) - acked - refused), [], note)
        self.assertEqual(self.server.names("corrupt"), [])
        m = re.search(r"spool \S+: (\d+) messages queued", self.server.log_since(offset))
        self.assertIsNotNone(m)
        self.assertEqual(int(m.group(1)), len(files))


if __name__ == "__main__":
    harness.main()
