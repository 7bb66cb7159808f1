"""Remote delivery end to end: two mta daemons on their own loopback addresses (A for
cs.example on 127.0.0.2, B for yahoo.example on 127.0.0.3, both on the same port, which is also
their smtp_port), a real DNS server (dnsmasq) that holds the MX records, B's mda and pop3d, and
small fake SMTP servers in Python for the destinations that misbehave. A resolves MX records
with c-ares, tries the exchangers in order, skips itself, uses STARTTLS when offered, retries,
warns and bounces on schedule; every bounce goes to alice@cs.example, who is local to A, so
notifications end in A's mailboxes and are read back with the email package.

Addresses (all on the module's port SMTP_PORT):
  127.0.0.2  A (mx.cs.example)            127.0.0.6  fake: 451 to every RCPT
  127.0.0.3  B (mx.yahoo.example)         127.0.0.7  fake: no STARTTLS, takes everything
  127.0.0.4  nothing listens              127.0.0.8  fake: 2 s before answering the final dot
  127.0.0.5  fake: "421 busy" greeting

The daemons run as root with run_as = nobody (as in test_delivery.py)."""

import email
import email.policy
import os
import poplib
import re
import shutil
import signal
import smtplib
import socket
import socketserver
import subprocess
import threading
import time
import types
import unittest

import harness
from test_delivery import dsn_parts, mbox_messages, queued_id, read_state, wait_for
from test_mx_resolver import Dnsmasq

A_ADDR = "127.0.0.2"
B_ADDR = "127.0.0.3"
DEAD_ADDR = "127.0.0.4"
BUSY_ADDR = "127.0.0.5"
LATER_ADDR = "127.0.0.6"
NOTLS_ADDR = "127.0.0.7"
SLOW_ADDR = "127.0.0.8"
ALL_ADDRS = (A_ADDR, B_ADDR, DEAD_ADDR, BUSY_ADDR, LATER_ADDR, NOTLS_ADDR, SLOW_ADDR)

ALICE = "alice@cs.example"
A_HOST = "mx.cs.example"
B_HOST = "mx.yahoo.example"
# Every domain B takes as its own: those whose MX (or A record, or route at A) leads to B.
B_DOMAINS = ("yahoo.example", "pref.example", "busy.example", "implicit.example",
             "elsewhere.example", "table.example", "tls.example", "backup.example")

# --local=/example/: dnsmasq answers every other name under example with NXDOMAIN (and NODATA
# for a known name without the type asked) and never asks anyone else.
RECORDS = [
    "--local=/example/",
    "--mx-host=cs.example,mx.cs.example,10",
    "--host-record=mx.cs.example,%s" % A_ADDR,
    "--mx-host=yahoo.example,mx.yahoo.example,10",
    "--host-record=mx.yahoo.example,%s" % B_ADDR,
    # 2. preference order and fallback
    "--mx-host=pref.example,mx1.pref.example,10",
    "--mx-host=pref.example,mx.yahoo.example,20",
    "--host-record=mx1.pref.example,%s" % DEAD_ADDR,
    "--mx-host=busy.example,mx1.busy.example,10",
    "--mx-host=busy.example,mx.yahoo.example,20",
    "--host-record=mx1.busy.example,%s" % BUSY_ADDR,
    # 3. no MX, only an address
    "--host-record=implicit.example,%s" % B_ADDR,
    # 4. null MX (RFC 7505)
    "--mx-host=null.example,.,0",
    # 6. a destination that always says 451
    "--mx-host=later.example,mx.later.example,10",
    "--host-record=mx.later.example,%s" % LATER_ADDR,
    # 9. loops: A by name, and A's address under another name
    "--mx-host=loop.example,mx.cs.example,10",
    "--mx-host=loopip.example,other.loopip.example,10",
    "--host-record=other.loopip.example,%s" % A_ADDR,
    # ... and A as a backup MX (B preferred: goes there) or as the primary (nowhere to go)
    "--mx-host=backup.example,mx.yahoo.example,10",
    "--mx-host=backup.example,mx.cs.example,20",
    "--mx-host=primary.example,mx.cs.example,10",
    "--mx-host=primary.example,mx.yahoo.example,20",
    # 10. STARTTLS required: at B (offers it) and at a server that does not
    "--mx-host=tls.example,mx.yahoo.example,10",
    "--mx-host=notls.example,mx.notls.example,10",
    "--host-record=mx.notls.example,%s" % NOTLS_ADDR,
    # 11. a slow server
    "--mx-host=slow.example,mx.slow.example,10",
    "--host-record=mx.slow.example,%s" % SLOW_ADDR,
]

BOX = DNS = CERT = KEY = None
SMTP_PORT = None


def pick_port():
    """One port free on every address of the plan: MX hosts are all reached on smtp_port."""
    for _ in range(50):
        port = harness.free_port()
        socks = []
        try:
            for addr in ALL_ADDRS:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((addr, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no port free on all of %s" % (ALL_ADDRS,))


def setUpModule():
    global BOX, DNS, CERT, KEY, SMTP_PORT
    BOX = harness.Sandbox(prefix="mw-rmt-mod-")
    unittest.addModuleCleanup(BOX.cleanup)
    SMTP_PORT = pick_port()
    DNS = Dnsmasq(BOX, RECORDS)
    unittest.addModuleCleanup(DNS.stop)
    cert_dir = BOX.path("cert")
    os.mkdir(cert_dir)
    os.chmod(cert_dir, 0o755)
    CERT, KEY = harness.make_certificate(cert_dir, name=B_HOST)


def dns_log():
    with open(DNS.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def make_message(token, sender=ALICE, to="bob@yahoo.example"):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: test %s\r\nMessage-ID: <%s@cs.example>\r\n"
            "\r\n%s body line one\r\n.%s leading dot\r\n" % (sender, to, token, token, token,
                                                             token)).encode()


def subject_token(raw):
    m = re.search(rb"^Subject: test (\S+)$", raw, re.M)
    return m.group(1).decode() if m else None


def received_fields(raw):
    """The Received fields of a stored message (LF line ends), unfolded, top first."""
    head = raw.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    return [re.sub(r"\s+", " ", m) for m in
            re.findall(r"^Received: ((?:[^\n]*)(?:\n[ \t][^\n]*)*)", head, re.M)]


# --- the daemons --------------------------------------------------------------------------------

class Node:
    """One mta with its own spool, mail spool, users, aliases, mda.conf and log."""

    def __init__(self, box, name, addr, hostname, domains, users, extra=""):
        self.box = box
        self.name = name
        self.addr = addr
        self.mail = box.path(name + "-mail")
        tmp = box.path(name + "-tmp")
        for d in (self.mail, tmp):
            os.mkdir(d)
        self.spool = box.path(name + "-spool")
        self.users = box.write("etc/%s-users" % name,
                               "".join("%s:{PLAIN}%spw\n" % (u, u) for u in users))
        aliases = box.write("etc/%s-aliases" % name, "postmaster: %s\n" % users[0])
        self.mda_config = box.write(
            "etc/%s-mda.conf" % name,
            f"mail_spool = {self.mail}\naccounts = file\naccount_file = {self.users}\n"
            f"temp_dir = {tmp}\nmail_group =\n")
        self.config = box.write(
            "etc/%s.conf" % name,
            f"hostname = {hostname}\nlocal_domains = {', '.join(domains)}\n"
            f"listen = {addr}:{SMTP_PORT}\nsmtp_port = {SMTP_PORT}\n"
            f"dns_servers = {DNS.server()}\nrelay_networks = 127.0.0.0/8\n"
            f"spool_dir = {self.spool}\nspool_reserve = 1M\nrun_as = nobody\n"
            f"accounts = file\naccount_file = {self.users}\naliases = {aliases}\n"
            f"mda = {harness.binary('mda')}\nmda_config = {self.mda_config}\n" + extra)
        self.log_path = box.path(name + ".log")
        open(self.log_path, "ab").close()
        self.proc = None

    def start(self, timeout=10.0):
        offset = os.path.getsize(self.log_path)
        with open(self.log_path, "ab") as log:
            self.proc = harness.Process([harness.binary("mta"), "-bD", "-v", "-C", self.config],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready" in self.log_since(offset):
                return
            if self.proc.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.proc.stop()
        raise RuntimeError("mta %s did not start (status %s):\n%s"
                           % (self.name, self.proc.proc.returncode, self.log_since(offset)[-3000:]))

    def kill(self):
        if self.proc.proc.poll() is None:
            os.kill(self.proc.proc.pid, signal.SIGKILL)
        self.proc.proc.wait(timeout=10)

    def stop(self):
        if self.proc is not None:
            self.proc.stop()

    def log_since(self, offset=0):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def log(self):
        return self.log_since(0)

    def names(self, sub):
        d = os.path.join(self.spool, sub)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def queue_empty(self):
        return not self.names("queue") and not self.names("state") and not self.names("incoming")

    def state(self, queue_id):
        try:
            return read_state(os.path.join(self.spool, "state", queue_id))
        except (FileNotFoundError, ValueError):
            return None

    def mailbox(self, user):
        return mbox_messages(types.SimpleNamespace(mail=self.mail), user)


class FakeSmtp:
    """A scripted SMTP server on addr:SMTP_PORT in threads. greeting: the first reply (a 4xx
    one ends the session); rcpt_reply: the answer to every RCPT; final_delay: seconds before
    the 250 to the end of the message. Counts sessions, commands and complete messages."""

    def __init__(self, addr, name, greeting=None, rcpt_reply=b"250 2.1.5 ok", final_delay=0.0):
        self.name = name
        self.greeting = greeting or b"220 %s ESMTP fake" % name.encode()
        self.rcpt_reply = rcpt_reply
        self.final_delay = final_delay
        self.lock = threading.Lock()
        self.sessions = 0
        self.commands = []
        self.messages = []
        self.message_seen = threading.Event()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 20

            def handle(self):
                try:
                    outer.session(self.rfile, self.wfile)
                except OSError:
                    pass  # the client went away (killed): nothing to answer

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True
            block_on_close = False

        self.server = Server((addr, SMTP_PORT), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def verbs(self):
        with self.lock:
            return [c.split(b" ")[0].split(b":")[0].upper() for c in self.commands]

    def session(self, rfile, wfile):
        with self.lock:
            self.sessions += 1

        def say(line):
            wfile.write(line + b"\r\n")
            wfile.flush()

        say(self.greeting)
        if not self.greeting.startswith(b"220"):
            return
        rcpts = 0
        while True:
            line = rfile.readline(4096)
            if not line:
                return
            command = line.rstrip(b"\r\n")
            with self.lock:
                self.commands.append(command)
            verb = command[:4].upper()
            if verb == b"EHLO":
                say(b"250-%s\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES" % self.name.encode())
            elif verb == b"HELO":
                say(b"250 " + self.name.encode())
            elif verb == b"MAIL":
                rcpts = 0
                say(b"250 2.1.0 ok")
            elif verb == b"RCPT":
                if self.rcpt_reply.startswith(b"2"):
                    rcpts += 1
                say(self.rcpt_reply)
            elif verb == b"DATA":
                if rcpts == 0:
                    say(b"554 5.5.1 no valid recipients")
                    continue
                say(b"354 go ahead")
                data = []
                while True:
                    l = rfile.readline(65536)
                    if not l:
                        return  # torn: not a message
                    if l == b".\r\n":
                        break
                    data.append(l)
                with self.lock:
                    self.messages.append(b"".join(data))
                self.message_seen.set()
                time.sleep(self.final_delay)
                say(b"250 2.0.0 queued")
            elif verb in (b"RSET", b"NOOP"):
                say(b"250 2.0.0 ok")
            elif verb == b"QUIT":
                say(b"221 2.0.0 bye")
                return
            else:
                say(b"502 5.5.2 not here")


class Pop3d:
    """pop3d for B's mailboxes: the same mail_spool and users as B's mda."""

    def __init__(self, node):
        self.port = harness.free_port(B_ADDR)
        self.config = node.box.write("etc/pop3d.conf", (
            f"mail_spool = {node.mail}\naccounts = file\naccount_file = {node.users}\n"
            f"mail_group =\nlisten = {B_ADDR}:{self.port}\nfailed_login_delay = 0\n"))
        self.log_path = node.box.path("pop3d.log")
        with open(self.log_path, "wb") as log:
            self.proc = harness.Process([harness.binary("pop3d"), "-d", "-f", "-C", self.config],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        harness.wait_for_port(self.port, host=B_ADDR, proc=self.proc.proc)

    def stop(self):
        return self.proc.stop()


class RemoteTestCase(unittest.TestCase):
    B_TLS = False

    def a_extra(self):
        return ""

    def b_extra(self):
        return ""

    def setUp(self):
        self.box = harness.Sandbox(prefix="mw-rmt-")
        self.addCleanup(self.box.cleanup)
        self.a = Node(self.box, "a", A_ADDR, A_HOST, ["cs.example"], ["alice", "carol"],
                      self.a_extra())
        b_extra = self.b_extra()
        if self.B_TLS:
            b_extra += f"tls_certificate = {CERT}\ntls_key = {KEY}\n"
        self.b = Node(self.box, "b", B_ADDR, B_HOST, B_DOMAINS, ["bob", "dora"], b_extra)
        self.b.start()
        self.addCleanup(self.b.stop)
        self.a.start()
        self.addCleanup(self.a.stop)

    def fake(self, addr, name, **kw):
        server = FakeSmtp(addr, name, **kw)
        self.addCleanup(server.stop)
        return server

    def logs(self):
        return "\n--- A log:\n%s\n--- B log:\n%s" % (self.a.log()[-4000:], self.b.log()[-2000:])

    def send(self, rcpt, token, sender=ALICE):
        """One transaction with A over smtplib (from 127.0.0.1, a relay network); the queue
        id."""
        with smtplib.SMTP(A_ADDR, SMTP_PORT, timeout=20, local_hostname="client.example") as c:
            c.ehlo()
            code, text = c.mail(sender)
            self.assertEqual(code, 250, text)
            code, text = c.rcpt(rcpt)
            self.assertEqual(code, 250, text)
            code, text = c.data(make_message(token, sender, rcpt))
            self.assertEqual(code, 250, text)
            return queued_id(text)

    def wait_mail(self, node, user, count, timeout=10.0):
        """mail/USER of node once it holds count messages and mda has let go of it."""
        lock = os.path.join(node.mail, user + ".lock")

        def ready():
            if os.path.exists(lock):
                return None
            got = node.mailbox(user)
            return got if len(got) >= count and not os.path.exists(lock) else None
        return wait_for(ready, timeout, lambda: "%d messages for %s at %s;%s"
                        % (count, user, node.name, self.logs()))

    def wait_queue_empty(self, node, timeout=10.0):
        wait_for(node.queue_empty, timeout, lambda: "an empty queue at %s: %r %r;%s"
                 % (node.name, node.names("queue"), node.names("state"), self.logs()))

    def assert_delivered_to_b(self, domain, token, qid, relay=B_HOST):
        [raw] = self.wait_mail(self.b, "bob", 1)
        self.assertEqual(subject_token(raw), token)
        self.assertTrue(raw.startswith(b"Return-Path: <alice@cs.example>\n"), raw[:200])
        received = received_fields(raw)
        self.assertRegex(received[0], r"^from mx\.cs\.example \(\[127\.0\.0\.\d+\]\) "
                                      r"by mx\.yahoo\.example \(Mailwright\) with ESMTPS? id "
                                      r"[0-9A-V]{20} (\(using [^)]*\) )?for <bob@%s>; "
                                      % re.escape(domain))
        self.assertRegex(received[1], r"^from client\.example \(\[127\.0\.0\.1\]\) "
                                      r"by mx\.cs\.example \(Mailwright\) with ESMTP id %s " % qid)
        self.assertIn(b"\n.%s leading dot\n" % token.encode(), raw)  # dot-stuffing undone
        self.wait_queue_empty(self.a)
        self.wait_queue_empty(self.b)
        # relay=NAME[ADDRESS], or only the address when that is all A had (a [literal]).
        where = relay if relay == B_ADDR else "%s[%s]" % (relay, B_ADDR)
        self.assertRegex(self.a.log(), r"%s: to=<bob@%s> relay=%s status=sent dsn=2\.0\.0"
                         % (qid, re.escape(domain), re.escape(where)))
        self.assertEqual(self.a.mailbox("alice"), [], "no notification expected")
        return raw

    def bounce(self, qid, rcpt, status, timeout=10.0):
        """The one failure notification in alice's mailbox at A about rcpt; its recipient
        fields. A's queue ends empty."""
        [raw] = self.wait_mail(self.a, "alice", 1, timeout)
        msg, groups, returned = dsn_parts(raw)
        self.assertTrue(raw.startswith(b"Return-Path: <>\n"), raw[:100])
        self.assertEqual(msg["To"].addresses[0].addr_spec, ALICE)
        [fields] = groups[1:]
        self.assertEqual(fields["action"], "failed")
        self.assertEqual(fields["final-recipient"], "rfc822; " + rcpt)
        self.assertRegex(fields["status"], status)
        self.assertEqual(groups[0]["reporting-mta"], "dns; " + A_HOST)
        self.assertIsNotNone(returned)
        self.assertIn(rcpt.encode(), returned.as_bytes())
        self.wait_queue_empty(self.a)
        self.assertRegex(self.a.log(), r"%s: sender notification \(failure\)" % qid)
        self.assertRegex(self.a.log(), r"%s: removed" % qid)
        self.assertEqual(self.b.mailbox("bob"), [])
        return fields


# --- 1. the scenario: swaks -> A -> MX -> B -> mda -> pop3d -> poplib ---------------------------

class EndToEnd(RemoteTestCase):
    @unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
    def test_swaks_to_a_then_mx_to_b_then_pop3(self):
        pop = Pop3d(self.b)
        self.addCleanup(pop.stop)
        data = self.box.write("data.txt", "From: Alice <alice@cs.example>\n"
                                          "To: Bob <bob@yahoo.example>\nSubject: test hello\n\n"
                                          "Hi Bob,\n.a line with a leading dot\nbye")
        r = harness.run(["swaks", "--server", A_ADDR, "--port", str(SMTP_PORT),
                         "--helo", "client.example", "--from", ALICE,
                         "--to", "bob@yahoo.example", "--data", "@" + data], timeout=30)
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        qid = queued_id(out)
        self.wait_mail(self.b, "bob", 1)
        self.wait_queue_empty(self.a)
        self.wait_queue_empty(self.b)

        p = poplib.POP3(B_ADDR, pop.port, timeout=20)
        try:
            p.user("bob")
            p.pass_("bobpw")
            self.assertEqual(p.stat()[0], 1)
            resp, lines, octets = p.retr(1)
            p.quit()
        finally:
            p.close()
        raw = b"\n".join(lines) + b"\n"
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.assertEqual(msg["Subject"], "test hello")
        self.assertEqual(msg["Return-Path"], "<alice@cs.example>")
        self.assertEqual(msg.get_content(), "Hi Bob,\n.a line with a leading dot\nbye\n")
        received = [re.sub(r"\s+", " ", str(v)) for v in msg.get_all("Received")]
        self.assertEqual(len(received), 2, received)
        # Newest first: B's hop (from A), then A's (from the client).
        self.assertRegex(received[0], r"^from mx\.cs\.example \(\[127\.0\.0\.\d+\]\) "
                                      r"by mx\.yahoo\.example \(Mailwright\) with ESMTP id "
                                      r"[0-9A-V]{20} for <bob@yahoo\.example>; ")
        self.assertRegex(received[1], r"^from client\.example \(\[127\.0\.0\.1\]\) "
                                      r"by mx\.cs\.example \(Mailwright\) with ESMTP id %s "
                                      r"for <bob@yahoo\.example>; " % qid)
        # A found B through the MX record.
        self.assertRegex(dns_log(), r"query\[MX\] yahoo\.example from 127\.0\.0\.1")
        self.assertRegex(dns_log(), r"query\[A\] mx\.yahoo\.example from 127\.0\.0\.1")
        self.assertRegex(self.a.log(), r"%s: to=<bob@yahoo\.example> relay=mx\.yahoo\.example"
                                       r"\[127\.0\.0\.3\] status=sent dsn=2\.0\.0" % qid)
        self.assertEqual(self.a.mailbox("alice"), [])


# --- 2./3. MX preference, fallback, implicit MX -------------------------------------------------

class MxChoice(RemoteTestCase):
    def test_first_mx_unreachable_second_takes_it(self):
        qid = self.send("bob@pref.example", "pref")
        self.assert_delivered_to_b("pref.example", "pref", qid)
        self.assertRegex(dns_log(), r"query\[A\] mx1\.pref\.example")

    def test_first_mx_busy_421_second_takes_it(self):
        busy = self.fake(BUSY_ADDR, "mx1.busy.example", greeting=b"421 4.3.2 busy, try later")
        qid = self.send("bob@busy.example", "busy")
        self.assert_delivered_to_b("busy.example", "busy", qid)
        self.assertEqual(busy.sessions, 1)  # tried first, once, and left at its greeting
        self.assertEqual(busy.commands, [])

    def test_implicit_mx_is_the_domain_itself(self):
        qid = self.send("bob@implicit.example", "implicit")
        self.assert_delivered_to_b("implicit.example", "implicit", qid, relay="implicit.example")
        self.assertRegex(dns_log(), r"query\[MX\] implicit\.example")


# --- 4./5. null MX, NXDOMAIN --------------------------------------------------------------------

class DnsBounces(RemoteTestCase):
    def test_null_mx_bounces_at_once(self):
        start = time.monotonic()
        qid = self.send("bob@null.example", "nullmx")
        fields = self.bounce(qid, "bob@null.example", r"^5\.1\.10$", timeout=5)
        self.assertLess(time.monotonic() - start, 5)
        self.assertIn("null.example", fields["diagnostic-code"])
        self.assertNotIn("remote-mta", fields)
        self.assertNotRegex(self.a.log(), r"%s: .*deferred" % qid)

    def test_nxdomain_bounces(self):
        qid = self.send("bob@nosuch.example", "nxdomain")
        fields = self.bounce(qid, "bob@nosuch.example", r"^5\.\d+\.\d+$", timeout=5)
        self.assertEqual(fields["status"], "5.1.2")
        self.assertIn("nosuch.example", fields["diagnostic-code"])
        self.assertNotRegex(self.a.log(), r"%s: .*deferred" % qid)


# --- 6. 451 to RCPT: retried on schedule, warned, bounced ----------------------------------------

class RetrySchedule(RemoteTestCase):
    def a_extra(self):
        return ("retry_interval = 1s\nmax_retry_interval = 2s\ndelay_warning = 2s\n"
                "max_queue_lifetime = 6s\n")

    def test_deferred_warned_then_bounced(self):
        later = self.fake(LATER_ADDR, "mx.later.example", rcpt_reply=b"451 4.3.0 try later")
        start = time.monotonic()
        qid = self.send("bob@later.example", "later")
        seen = []

        def attempts():
            s = self.a.state(qid)
            if s:
                n = int(s[0].get("ATTEMPTS", "0"))
                if not seen or seen[-1][0] != n:
                    seen.append((n, s[0]))
            return seen and seen[-1][0] >= 3
        wait_for(attempts, 8, lambda: "three attempts on %s: %r;%s" % (qid, seen, self.logs()),
                 step=0.02)
        numbers = [n for n, _ in seen]
        self.assertEqual(numbers, sorted(numbers))
        self.assertGreaterEqual(len(numbers), 2, seen)
        state = seen[-1][1]
        self.assertEqual(state["STATE"], "deferred")
        self.assertIn("451", state["ERROR"])
        self.assertIn("try later", state["ERROR"])

        got = self.wait_mail(self.a, "alice", 2, timeout=12)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 5, "bounced before max_queue_lifetime")
        actions = []
        for raw in got:
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            self.assertEqual(msg.get_content_type(), "multipart/report")
            self.assertEqual(msg.get_param("report-type"), "delivery-status")
            msg, groups, returned = dsn_parts(raw)
            self.assertEqual(msg["To"].addresses[0].addr_spec, ALICE)
            [fields] = groups[1:]
            self.assertEqual(fields["final-recipient"], "rfc822; bob@later.example")
            self.assertIn("451", fields["diagnostic-code"])
            self.assertIn("mx.later.example", fields.get("remote-mta", ""))
            # A delay notice returns the header; a failure (RET unspecified) the whole message.
            self.assertIn(b"Subject: test later", returned.as_bytes())
            actions.append((fields, returned.get_content_type(), returned.as_bytes()))
        self.assertEqual([f["action"] for f, _, _ in actions], ["delayed", "failed"])
        self.assertRegex(actions[0][0]["status"], r"^4\.")
        self.assertIn("will-retry-until", actions[0][0])
        self.assertEqual(actions[0][1], "text/rfc822-headers")
        self.assertNotIn(b"later body line one", actions[0][2])
        self.assertRegex(actions[1][0]["status"], r"^[45]\.")
        self.assertEqual(actions[1][1], "message/rfc822")
        self.assertIn(b"later body line one", actions[1][2])
        self.wait_queue_empty(self.a)
        log = self.a.log()
        self.assertRegex(log, r"%s: sender notification \(delay\)" % qid)
        self.assertRegex(log, r"%s: sender notification \(failure\)" % qid)
        # One attempt after 0, 1, 3, 5 and 7 s or so: the schedule, not a busy loop.
        tries = later.verbs().count(b"RCPT")
        self.assertGreaterEqual(tries, 4, later.commands)
        self.assertLessEqual(tries, 6, later.commands)
        self.assertEqual(later.messages, [])
        self.assertEqual(self.b.mailbox("bob"), [])


# --- 7. smart host ------------------------------------------------------------------------------

class SmartHost(RemoteTestCase):
    def a_extra(self):
        return "relayhost = [%s]:%d\n" % (B_ADDR, SMTP_PORT)

    def test_relayhost_without_dns(self):
        qid = self.send("bob@elsewhere.example", "smarthost")
        self.assert_delivered_to_b("elsewhere.example", "smarthost", qid, relay=B_ADDR)
        self.assertNotIn("elsewhere.example", dns_log())


class MisspelledRelayhost(RemoteTestCase):
    def a_extra(self):
        return "relayhost = [nosuch-relay.example]:%d\n" % SMTP_PORT

    def test_a_relayhost_that_does_not_resolve_defers(self):
        # A mistake in this host's configuration: the mail waits for it to be mended.
        qid = self.send("bob@elsewhere.example", "badrelay")
        wait_for(lambda: (self.a.state(qid) or [{}])[0].get("STATE") == "deferred", 5,
                 lambda: "a deferral of %s;%s" % (qid, self.logs()))
        state = self.a.state(qid)[0]
        self.assertIn("4.4.3", state["ERROR"])
        self.assertIn("a configured next hop", state["ERROR"])
        self.assertEqual(self.a.mailbox("alice"), [])


# --- 8. transport table -------------------------------------------------------------------------

class TransportTable(RemoteTestCase):
    def a_extra(self):
        table = self.box.write("etc/transports", (
            "# test routes\n"
            "gone.example   error:5.1.2 this domain is gone\n"
            "table.example  smtp:[%s]:%d\n" % (B_ADDR, SMTP_PORT)))
        return "transports = %s\n" % table

    def test_error_entry_bounces_with_its_text(self):
        qid = self.send("bob@gone.example", "gone")
        fields = self.bounce(qid, "bob@gone.example", r"^5\.1\.2$", timeout=5)
        self.assertIn("this domain is gone", fields["diagnostic-code"])
        self.assertNotIn("gone.example", dns_log())

    def test_smtp_entry_delivers_there(self):
        qid = self.send("bob@table.example", "table")
        self.assert_delivered_to_b("table.example", "table", qid, relay=B_ADDR)
        self.assertNotIn("table.example", dns_log())


# --- 9. mail loops ------------------------------------------------------------------------------

class MailLoop(RemoteTestCase):
    def check_loop(self, domain, token):
        qid = self.send("bob@" + domain, token)
        fields = self.bounce(qid, "bob@" + domain, r"^5\.4\.6$", timeout=5)
        self.assertIn("loops back to myself", fields["diagnostic-code"])
        time.sleep(0.5)  # a loop would show by now: more mail, more notifications
        self.assertEqual(len(self.a.mailbox("alice")), 1)
        self.assertTrue(self.a.queue_empty())
        # One attempt, decided before any connection: A never spoke SMTP to itself.
        log = self.a.log()
        self.assertEqual(re.findall(r"%s: to=<bob@%s> (.*)" % (qid, re.escape(domain)), log),
                         ["relay=none failed: x-mailwright; mail for %s loops back to myself"
                          % domain], log)
        self.assertNotIn("connected to", log)
        self.assertEqual(len(re.findall(r"connect from", log)), 1, log)  # the test's client

    def test_mx_naming_us(self):
        self.check_loop("loop.example", "loopname")

    def test_mx_with_our_address(self):
        self.check_loop("loopip.example", "loopaddr")

    def test_we_are_the_best_mx_of_a_domain_not_ours(self):
        # RFC 5321 5.1: only exchangers preferred over us may take it; there are none.
        self.check_loop("primary.example", "primary")

    def test_we_are_a_backup_mx_the_preferred_one_takes_it(self):
        qid = self.send("bob@backup.example", "backup")
        self.assert_delivered_to_b("backup.example", "backup", qid)


# --- 10. STARTTLS between the hops --------------------------------------------------------------

class StartTls(RemoteTestCase):
    B_TLS = True

    def a_extra(self):
        return "tls_required_domains = notls.example, tls.example\n"

    def test_opportunistic_starttls(self):
        qid = self.send("bob@yahoo.example", "tls")
        raw = self.assert_delivered_to_b("yahoo.example", "tls", qid)
        self.assertRegex(received_fields(raw)[0], r" by mx\.yahoo\.example \(Mailwright\) "
                                                  r"with ESMTPS id ")
        self.assertRegex(self.a.log(), r"%s: TLS with mx\.yahoo\.example\[127\.0\.0\.3\]" % qid)

    def test_required_and_offered(self):
        qid = self.send("bob@tls.example", "tlsreq")
        raw = self.assert_delivered_to_b("tls.example", "tlsreq", qid)
        self.assertRegex(received_fields(raw)[0], r" with ESMTPS id ")

    def test_required_but_not_offered_stays_deferred(self):
        plain = self.fake(NOTLS_ADDR, "mx.notls.example")
        qid = self.send("bob@notls.example", "notls")

        def deferred():
            s = self.a.state(qid)
            return s if s and s[0].get("STATE") == "deferred" else None
        [state] = wait_for(deferred, 8, lambda: "a deferred " + qid + self.logs())
        self.assertEqual(state["ATTEMPTS"], "1")
        self.assertIn("4.7.4", state["ERROR"])
        self.assertIn("TLS is required", state["ERROR"])
        self.assertIn("mx.notls.example", state["ERROR"])
        time.sleep(0.3)
        self.assertEqual(self.a.names("queue"), [qid])
        self.assertEqual(plain.messages, [])
        self.assertNotIn(b"MAIL", plain.verbs())
        self.assertEqual(self.a.mailbox("alice"), [])


# --- 11. SIGKILL while the destination holds the final dot --------------------------------------

class KilledDuringDelivery(RemoteTestCase):
    def test_at_most_twice_at_least_once(self):
        slow = self.fake(SLOW_ADDR, "mx.slow.example", final_delay=2.0)
        qid = self.send("bob@slow.example", "slow")
        if not slow.message_seen.wait(10):
            self.fail("the slow server never got the message;" + self.logs())
        self.a.kill()
        self.assertEqual(self.a.names("queue"), [qid])
        slow.message_seen.clear()
        self.a.start()
        self.wait_queue_empty(self.a, timeout=15)
        time.sleep(0.3)
        self.assertGreaterEqual(len(slow.messages), 1)
        self.assertLessEqual(len(slow.messages), 2)
        for m in slow.messages:
            self.assertIn(b"Subject: test slow\r\n", m)
            self.assertTrue(m.endswith(b"slow body line one\r\n..slow leading dot\r\n"), m)
        self.assertRegex(self.a.log(), r"%s: to=<bob@slow\.example> relay=mx\.slow\.example"
                                       r"\[127\.0\.0\.8\] status=sent" % qid)
        self.assertRegex(self.a.log(), r"%s: removed" % qid)
        self.assertEqual(self.a.mailbox("alice"), [])


if __name__ == "__main__":
    harness.main()
