"""Local delivery end to end: mta accepts a message (SMTP to the daemon, or `mta -bs` on
pipes), its queue manager expands aliases and hands the message to a real `mda -l` over LMTP,
and the result is read back from the mbox files with Python's mailbox module. Covers the
daemon and cron-style `mta -q`, the mail queue listing, retries with delay warnings and
bounces (RFC 3464 reports parsed with the email package), double bounces to the postmaster,
SIGKILL of the daemon while it delivers, and messages queued by another process.

The daemon runs as root with run_as = nobody, so mda is started by the root launcher and
writes the mailboxes as root. Remote delivery is not tested: every sender whose mail may
bounce is a local user, so notifications end in a mailbox here too."""

import email
import email.policy
import mailbox
import os
import re
import signal
import smtplib
import subprocess
import time
import unittest

import harness

USERS = "".join("%s:{PLAIN}%spw\n" % (u, u)
                for u in ("alice", "bob", "carol", "dave", "erin", "frank", "zed"))
# loop1/loop2 are no users: their loop ends in the mailbox loop1, which mda does not know.
ALIASES = """# delivery tests
postmaster: alice
sales: alice, bob
solo: bob
team: :include:{include}
ghost: nosuchuser
erin: frank
frank: erin
loop1: loop2
loop2: loop1
gone: nosuchuser
brokenlist: alice, nosuchuser
"""
INCLUDED = "# the team\ncarol,\ndave\n"
REMOTE_SENDER = "sender@client.example"


def queued_id(text):
    m = re.search(r"queued as ([0-9A-V]{20})", text if isinstance(text, str) else text.decode())
    if not m:
        raise AssertionError("no queue id in %r" % text)
    return m.group(1)


def make_message(token, sender=REMOTE_SENDER, to="someone@example.org"):
    """A small message in wire form that names token in its Subject and body."""
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: test %s\r\nMessage-ID: <%s@client.example>\r\n"
            "\r\n%s body line one\r\n%s body line two\r\n"
            % (sender, to, token, token, token, token)).encode()


def read_state(path):
    """state/ID (queue_file.h): a list of per-recipient dicts."""
    with open(path, "rb") as f:
        lines = f.read().decode("ascii").split("\n")
    if lines[0] != "MWSTATE 1" or "END" not in lines:
        raise ValueError("%s: not a complete state file: %r" % (path, lines))
    recipients = []
    for line in lines[1:lines.index("END")]:
        key, _, value = line.partition(" ")
        if key == "RCPT":
            recipients.append({"RCPT": int(value)})
        elif key != "ID":
            recipients[-1][key] = value
    return recipients


def wait_for(predicate, timeout, what, step=0.05):
    """Polls predicate until it returns something true; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what() if callable(what) else what))
        time.sleep(step)


def dsn_parts(raw):
    """A delivery status notification: (message, [per-message fields, per-recipient...],
    returned part). Asserts the RFC 3464/6522 structure on the way."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    if msg.get_content_type() != "multipart/report":
        raise AssertionError("not a multipart/report: %s" % msg.get_content_type())
    if msg.get_param("report-type") != "delivery-status":
        raise AssertionError("report-type %r" % msg.get_param("report-type"))
    parts = list(msg.iter_parts())
    if [p.get_content_type() for p in parts[:2]] != ["text/plain", "message/delivery-status"]:
        raise AssertionError("parts %r" % [p.get_content_type() for p in parts])
    # message/delivery-status holds header blocks: the email package gives them as sub-parts.
    groups = [dict((k.lower(), str(v)) for k, v in g.items()) for g in parts[1].get_payload()]
    return msg, groups, parts[2] if len(parts) > 2 else None


class Mta:
    """An mta config in a sandbox with its spool, its mda.conf and its log files; the daemon
    (mta -bD) when started, and the one-shot modes (-bs, -q, -bp) as child processes."""

    def __init__(self, box, extra="", mda_extra="", name="mta"):
        self.box = box
        self.name = name
        self.port = harness.free_port()
        self.spool = box.path(name + "-spool")
        self.mda_config = box.write(
            f"etc/{name}-mda.conf",
            f"mail_spool = {box.mail}\naccounts = file\naccount_file = {box.users}\n"
            f"temp_dir = {box.tmp}\nmail_group =\n{mda_extra}")
        self.config = box.write(
            f"etc/{name}.conf",
            f"listen = 127.0.0.1:{self.port}\nspool_dir = {self.spool}\n"
            "local_domains = example.org\n"
            f"accounts = file\naccount_file = {box.users}\n"
            f"aliases = {box.path('etc', 'aliases')}\n"
            "run_as = nobody\nspool_reserve = 1M\nhostname = mx.example.org\n"
            f"mda = {harness.binary('mda')}\nmda_config = {self.mda_config}\n" + extra)
        self.log_path = box.path(name + ".log")
        open(self.log_path, "ab").close()
        self.proc = None

    # --- the daemon ---

    def start(self, timeout=10.0):
        """Starts mta -bD and waits (bounded) for its "ready" log line."""
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
        raise RuntimeError("mta did not start (status %s):\n%s"
                           % (self.proc.proc.returncode, self.log_since(offset)[-3000:]))

    def kill(self):
        """SIGKILL by PID: the daemon gets no chance to finish anything."""
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

    # --- one-shot modes ---

    def command(self, *args, stdin=b"", timeout=20):
        """mta with this config and args, bounded in time; stderr goes to a log file too."""
        r = harness.run([harness.binary("mta"), *args, "-C", self.config], stdin=stdin,
                        timeout=timeout)
        with open(self.box.path(self.name + "-commands.log"), "ab") as log:
            log.write(b"$ mta %s\n%s%s" % (" ".join(args).encode(), r.stdout, r.stderr))
        return r

    def submit_bs(self, sender, rcpts, message):
        """One SMTP transaction through mta -bs on pipes (as inetd would run it); returns the
        queue id."""
        dialogue = b"EHLO local.example\r\nMAIL FROM:<%s>\r\n" % sender.encode()
        dialogue += b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts)
        dialogue += b"DATA\r\n" + message + b".\r\nQUIT\r\n"
        r = self.command("-bs", stdin=dialogue)
        if r.returncode != 0:
            raise AssertionError("mta -bs: status %d: %r %r" % (r.returncode, r.stdout, r.stderr))
        finals = [l for l in r.stdout.split(b"\r\n") if l[3:4] == b" "]
        codes = [l[:3] for l in finals]
        if codes != [b"220", b"250", b"250"] + [b"250"] * len(rcpts) + [b"354", b"250", b"221"]:
            raise AssertionError("mta -bs dialogue: %r" % r.stdout)
        return queued_id(finals[-2])

    def mailq(self):
        r = self.command("-bp")
        if r.returncode != 0:
            raise AssertionError("mta -bp: status %d: %r" % (r.returncode, r.stderr))
        return r.stdout.decode("utf-8", "replace")

    # --- the spool ---

    def names(self, sub):
        d = os.path.join(self.spool, sub)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def queue_empty(self):
        return not self.names("queue") and not self.names("state") and not self.names("incoming")

    def state(self, queue_id):
        path = os.path.join(self.spool, "state", queue_id)
        try:
            return read_state(path)
        except (FileNotFoundError, ValueError):
            return None


def mbox_messages(box, user):
    """The messages in mail/USER as raw bytes, in order; [] when there is no mailbox."""
    path = os.path.join(box.mail, user)
    if not os.path.exists(path):
        return []
    mb = mailbox.mbox(path, create=False)
    try:
        return [mb.get_bytes(key) for key in mb.keys()]
    finally:
        mb.close()


def subject_token(raw):
    m = re.search(rb"^Subject: test (\S+)$", raw, re.M)
    return m.group(1).decode() if m else None


class DeliveryTestCase(unittest.TestCase):
    EXTRA = ""
    MDA_EXTRA = ""
    START = True

    def setUp(self):
        self.box = harness.Sandbox(prefix="mw-dlv-")
        self.addCleanup(self.box.cleanup)
        self.box.write("etc/users", USERS)
        include = self.box.write("etc/team.list", INCLUDED)
        self.box.write("etc/aliases", ALIASES.format(include=include))
        self.mta = Mta(self.box, self.EXTRA, self.MDA_EXTRA)
        self.addCleanup(self.mta.stop)
        if self.START:
            self.mta.start()

    def smtp(self):
        return smtplib.SMTP("127.0.0.1", self.mta.port, timeout=20,
                            local_hostname="client.example")

    def send(self, rcpts, message, sender=REMOTE_SENDER, rcpt_options=()):
        """One transaction over smtplib; returns the queue id."""
        with self.smtp() as client:
            client.ehlo()
            code, text = client.mail(sender)
            self.assertEqual(code, 250, text)
            for r in rcpts:
                code, text = client.rcpt(r, list(rcpt_options))
                self.assertEqual(code, 250, (r, text))
            code, text = client.data(message)
            self.assertEqual(code, 250, text)
            return queued_id(text)

    def mailbox(self, user):
        return mbox_messages(self.box, user)

    def wait_mail(self, user, count, timeout=5.0):
        """Waits until mail/USER holds at least count messages and mda is not writing to it
        (its dotlock mail/USER.lock is gone); returns them."""
        lock = os.path.join(self.box.mail, user + ".lock")

        def ready():
            if os.path.exists(lock):
                return None
            got = self.mailbox(user)
            return got if len(got) >= count and not os.path.exists(lock) else None
        return wait_for(ready, timeout, lambda: "%d messages for %s; log:\n%s"
                        % (count, user, self.mta.log()[-3000:]))

    def wait_queue_empty(self, timeout=5.0):
        wait_for(self.mta.queue_empty, timeout, lambda: "an empty queue; left %r %r; log:\n%s"
                 % (self.mta.names("queue"), self.mta.names("state"), self.mta.log()[-3000:]))

    def with_token(self, messages, token):
        return [m for m in messages if token.encode() in m]

    def assert_no_leftovers(self):
        self.assertEqual(self.mta.names("queue"), [])
        self.assertEqual(self.mta.names("state"), [])
        self.assertEqual(self.mta.names("incoming"), [])
        self.assertEqual(self.mta.names("corrupt"), [])


# --- 1. SMTP in, mbox out -----------------------------------------------------------------------

class SmtpToMbox(DeliveryTestCase):
    def test_message_to_a_local_user_lands_in_the_mbox(self):
        message = make_message("mbox1", to="alice@example.org")
        qid = self.send(["alice@example.org"], message)
        [raw] = self.wait_mail("alice", 1)
        # mda's Return-Path first, then our Received, then the message as sent (LF line ends).
        self.assertTrue(raw.startswith(b"Return-Path: <sender@client.example>\n"), raw[:200])
        received = re.match(rb"Return-Path: [^\n]*\n(Received: [^\n]*\n(?:[ \t][^\n]*\n)*)", raw)
        self.assertIsNotNone(received, raw[:400])
        self.assertRegex(received.group(1),
                         rb"^Received: from client\.example \(\[127\.0\.0\.1\]\)\n"
                         rb"\tby mx\.example\.org \(Mailwright\) with ESMTP id "
                         + qid.encode() + rb"\n\tfor <alice@example\.org>; ")
        self.assertTrue(raw.endswith(message.replace(b"\r\n", b"\n")), raw)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.assertEqual(msg["Subject"], "test mbox1")
        self.assertEqual(msg["Return-Path"], "<sender@client.example>")
        mb = mailbox.mbox(os.path.join(self.box.mail, "alice"), create=False)
        self.assertTrue(mb[0].get_from().startswith("sender@client.example "), mb[0].get_from())
        mb.close()
        self.wait_queue_empty()
        self.assert_no_leftovers()
        log = self.mta.log()
        self.assertRegex(log, r"%s: to=<alice@example\.org> local user=alice delivered" % qid)
        self.assertRegex(log, r"%s: removed" % qid)
        self.assertEqual(self.mailbox("bob"), [])


# --- 2. aliases ---------------------------------------------------------------------------------

class Aliases(DeliveryTestCase):
    def test_list_single_include_and_loop(self):
        sales = self.send(["sales@example.org"], make_message("sales"))
        solo = self.send(["solo@example.org"], make_message("solo"))
        team = self.send(["team@example.org"], make_message("team"))
        loop = self.send(["erin@example.org"], make_message("erinloop"))
        for user, tokens in (("alice", ["sales"]), ("bob", ["sales", "solo"]),
                             ("carol", ["team"]), ("dave", ["team"]), ("erin", ["erinloop"])):
            got = self.wait_mail(user, len(tokens))
            self.assertEqual(sorted(subject_token(m) for m in got), sorted(tokens), user)
        self.wait_queue_empty()
        self.assert_no_leftovers()
        # erin: frank, frank: erin -- the loop ends in erin's own mailbox (sendmail), once.
        self.assertEqual(self.mailbox("frank"), [])
        log = self.mta.log()
        # A list becomes a new queued message (from the same sender) to its members ...
        m = re.search(r"%s: to=<sales@example\.org> expanded to 2 recipients: ([0-9A-V]{20})"
                      % sales, log)
        self.assertIsNotNone(m, log)
        copy = m.group(1)
        self.assertRegex(log, r"%s: to=<alice@mx\.example\.org> local user=alice delivered" % copy)
        self.assertRegex(log, r"%s: to=<bob@mx\.example\.org> local user=bob delivered" % copy)
        [alice_copy] = self.mailbox("alice")
        self.assertTrue(alice_copy.startswith(b"Return-Path: <sender@client.example>\n"))
        m = re.search(r"%s: to=<team@example\.org> expanded to 2 recipients: ([0-9A-V]{20})"
                      % team, log)
        self.assertIsNotNone(m, log)
        # ... a single local target is delivered in place, without a new message.
        self.assertRegex(log, r"%s: to=<solo@example\.org> local user=bob delivered" % solo)
        self.assertNotRegex(log, r"%s: to=<solo@example\.org> expanded" % solo)
        self.assertRegex(log, r"%s: to=<erin@example\.org> local user=erin delivered" % loop)
        for token in ("sales", "solo", "team", "erinloop"):
            total = sum(len(self.with_token(self.mailbox(u), token))
                        for u in ("alice", "bob", "carol", "dave", "erin", "frank", "zed"))
            self.assertEqual(total, {"sales": 2, "team": 2}.get(token, 1), token)

    def check_bounce(self, raw, recipient, original_token, final_name):
        msg, groups, returned = dsn_parts(raw)
        self.assertEqual(msg["To"].addresses[0].addr_spec, "zed@example.org")
        self.assertEqual(msg["Auto-Submitted"], "auto-replied")
        self.assertEqual(groups[0]["reporting-mta"], "dns; mx.example.org")
        [rcpt] = groups[1:]
        self.assertEqual(rcpt["action"], "failed")
        self.assertRegex(rcpt["status"], r"^5\.\d{1,3}\.\d{1,3}$")
        self.assertIn(final_name, rcpt["final-recipient"] + " " + rcpt.get("diagnostic-code", ""))
        self.assertIn(recipient, str(msg.get_body(("plain",)).get_content()))
        # A failure returns the whole message (no RET given).
        self.assertIsNotNone(returned)
        self.assertIn(original_token.encode(), returned.as_bytes())
        return rcpt

    def test_alias_to_unknown_user_bounces_to_the_local_sender(self):
        qid = self.send(["ghost@example.org"], make_message("ghostly", sender="zed@example.org"),
                        sender="zed@example.org")
        [raw] = self.wait_mail("zed", 1)
        rcpt = self.check_bounce(raw, "ghost@example.org", "ghostly", "nosuchuser")
        # A one-target alias is delivered in place: Final-Recipient is the recipient this MTA
        # was given (no ORCPT, so no Original-Recipient may carry it, RFC 3464 2.3.1), and the
        # mailbox that refused it is named by mda's reply in Diagnostic-Code.
        self.assertEqual(rcpt["final-recipient"], "rfc822; ghost@example.org")
        self.assertNotIn("original-recipient", rcpt)
        self.assertRegex(rcpt["diagnostic-code"], r"^smtp; 550 5\.1\.1 .*nosuchuser")
        self.wait_queue_empty()
        self.assert_no_leftovers()
        log = self.mta.log()
        self.assertRegex(log, r"%s: to=<ghost@example\.org> local user=nosuchuser failed" % qid)
        self.assertRegex(log, r"%s: sender notification \(failure\)" % qid)

    def test_alias_loop_of_non_users_bounces(self):
        # loop1: loop2, loop2: loop1 -- expand_alias ends the loop in the mailbox loop1
        # (aliases.h); loop1 is no user, so mda refuses it and the sender gets a bounce.
        qid = self.send(["loop1@example.org"], make_message("loopy", sender="zed@example.org"),
                        sender="zed@example.org")
        [raw] = self.wait_mail("zed", 1)
        self.check_bounce(raw, "loop1@example.org", "loopy", "loop1")
        self.wait_queue_empty()
        self.assertRegex(self.mta.log(), r"%s: to=<loop1@example\.org> local user=loop1 failed"
                         % qid)
        self.assert_no_leftovers()


# --- 3. mta -q from cron ------------------------------------------------------------------------

class QueueRun(DeliveryTestCase):
    START = False

    def test_bs_then_q_delivers_and_exits(self):
        qid = self.mta.submit_bs("cron@example.org", ["bob@example.org"],
                                 make_message("cronjob", sender="cron@example.org"))
        self.assertEqual(self.mta.names("queue"), [qid])
        listing = self.mta.mailq()
        self.assertRegex(listing, r"^Mail queue \(1 message\)\n")
        self.assertRegex(listing, r"(?m)^%s +\d+ .*<cron@example\.org>$" % qid)
        self.assertRegex(listing, r"(?m)^ +<bob@example\.org>$")
        # Parts of the queue that do not match are left alone.
        for selector in ("-qRother.example", "-qIZZZZ"):
            r = self.mta.command(selector, "-v", timeout=15)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(self.mta.names("queue"), [qid], selector)
            self.assertEqual(self.mailbox("bob"), [], selector)
        start = time.monotonic()
        r = self.mta.command("-q", "-v", timeout=15)
        elapsed = time.monotonic() - start
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertLess(elapsed, 10, "mta -q took %.1fs" % elapsed)
        # When mta -q has exited, the message is in the mailbox and out of the queue.
        got = self.mailbox("bob")
        self.assertEqual([subject_token(m) for m in got], ["cronjob"], r.stderr)
        self.assertTrue(got[0].startswith(b"Return-Path: <cron@example.org>\n"))
        self.assertRegex(got[0], rb"\nReceived: from local\.example \(local\)[^\n]*\n"
                                 rb"\tby mx\.example\.org \(Mailwright\) with ESMTP id "
                                 + qid.encode())
        self.assert_no_leftovers()
        self.assertEqual(self.mta.mailq(), "Mail queue is empty\n")
        self.assertRegex(r.stderr.decode(), r"%s: to=<bob@example\.org> local user=bob delivered"
                         % qid)

    def test_q_takes_a_list_expansion_along(self):
        self.mta.submit_bs("cron@example.org", ["sales@example.org"], make_message("cronlist"))
        r = self.mta.command("-q", timeout=15)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([subject_token(m) for m in self.mailbox("alice")], ["cronlist"])
        self.assertEqual([subject_token(m) for m in self.mailbox("bob")], ["cronlist"])
        self.assert_no_leftovers()


# --- 4. retries, delay warnings and bounces on schedule -----------------------------------------

class RetryWarnBounce(DeliveryTestCase):
    EXTRA = ("retry_interval = 1s\nmax_retry_interval = 2s\ndelay_warning = 2s\n"
             "max_queue_lifetime = 6s\nqueue_rescan = 1h\n")
    # A dotlock held on bob's mailbox (and never taken for stale) makes mda answer 451 for
    # bob after a second, while alice's mailbox takes mail.
    MDA_EXTRA = "lock_timeout = 1s\nstale_lock_after = 1d\n"

    def test_deferred_warned_then_bounced(self):
        lock = os.path.join(self.box.mail, "bob.lock")
        with open(lock, "w") as f:
            f.write("held by the test\n")
        start = time.monotonic()
        qid = self.send(["bob@example.org"], make_message("stuck", sender="alice@example.org"),
                        sender="alice@example.org")
        quiet = self.send(["bob@example.org"], make_message("hush", sender="alice@example.org"),
                          sender="alice@example.org", rcpt_options=["NOTIFY=NEVER"])

        # Deferred, attempts counted in state/ID, the last error in the listing.
        def retried():
            s = self.mta.state(qid)
            return s if s and s[0].get("STATE") == "deferred" and \
                int(s[0].get("ATTEMPTS", "0")) >= 2 else None
        state = wait_for(retried, 5, "a second attempt on " + qid)[0]
        self.assertIn("4.2.0", state["ERROR"])
        self.assertIn("locked", state["ERROR"])
        self.assertGreaterEqual(int(state["NEXT"]), int(time.time()) - 1)
        listing = self.mta.mailq()
        self.assertRegex(listing, r"(?m)^%s .*<alice@example\.org>$" % qid)
        self.assertRegex(listing, r"\(deferred \d+ times, next [^)]*: 4\.2\.0 [^)]*locked")
        with open(os.path.join(self.mta.spool, "queue", quiet), "rb") as f:
            envelope = f.read().partition(b"\nEND\n")[0].split(b"\n")
        self.assertEqual(envelope[envelope.index(b"RCPT bob@example.org") + 1], b"NOTIFY NEVER")

        # The delay warning, then the bounce, both in alice's mailbox.
        got = self.wait_mail("alice", 2, timeout=12)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 5, "bounced before max_queue_lifetime")
        actions = []
        for raw in got:
            msg, groups, returned = dsn_parts(raw)
            self.assertTrue(raw.startswith(b"Return-Path: <>\n"), raw[:100])
            self.assertEqual(msg["To"].addresses[0].addr_spec, "alice@example.org")
            [rcpt] = groups[1:]
            self.assertEqual(rcpt["final-recipient"], "rfc822; bob@example.org")
            self.assertIn("stuck", returned.as_bytes().decode())
            self.assertNotIn("hush", raw.decode())
            actions.append((rcpt["action"], rcpt["status"], rcpt))
        self.assertEqual([a for a, _, _ in actions], ["delayed", "failed"])
        self.assertRegex(actions[0][1], r"^4\.")
        self.assertIn("will-retry-until", actions[0][2])
        self.assertRegex(actions[1][1], r"^[45]\.")
        # The original (and the quiet one) leave the queue; nothing is left behind.
        self.wait_queue_empty(timeout=5)
        self.assert_no_leftovers()
        log = self.mta.log()
        self.assertRegex(log, r"%s: sender notification \(delay\)" % qid)
        self.assertRegex(log, r"%s: sender notification \(failure\)" % qid)
        self.assertRegex(log, r"%s: removed" % qid)
        self.assertRegex(log, r"%s: removed" % quiet)
        self.assertNotRegex(log, r"%s: sender notification" % quiet)
        # Every attempt was logged, and their number is what the schedule allows: one every
        # 1-2 s after the first, each taking lock_timeout, within the 6 s lifetime.
        attempts = len(re.findall(r"%s: to=<bob@example\.org> local user=bob deferred" % qid, log))
        self.assertGreaterEqual(attempts, 3, log)
        self.assertLessEqual(attempts, 5, log)
        time.sleep(0.5)
        self.assertEqual(len(self.mailbox("alice")), 2)
        self.assertEqual(self.mailbox("bob"), [])
        self.assertTrue(os.path.exists(lock))


# --- 5. the null sender: double bounces -----------------------------------------------------------

class DoubleBounce(DeliveryTestCase):
    def send_null(self, rcpt, token):
        return self.send([rcpt], make_message(token, sender="MAILER-DAEMON@client.example"),
                         sender="")

    def test_failure_of_a_null_sender_message_goes_to_postmaster(self):
        qid = self.send_null("ghost@example.org", "nullsender")
        [raw] = self.wait_mail("alice", 1)  # postmaster: alice
        msg, groups, returned = dsn_parts(raw)
        self.assertTrue(raw.startswith(b"Return-Path: <>\n"))
        self.assertEqual(msg["To"].addresses[0].addr_spec, "postmaster@mx.example.org")
        [rcpt] = groups[1:]
        self.assertEqual(rcpt["action"], "failed")
        self.assertRegex(rcpt["status"], r"^5\.")
        self.assertIn(b"nullsender", returned.as_bytes())
        self.wait_queue_empty()
        self.assert_no_leftovers()
        self.assertRegex(self.mta.log(), r"%s: sender notification \(failure\)" % qid)

    def test_failed_double_bounce_does_not_loop(self):
        # The postmaster's mailbox is broken too: the double bounce fails, and that is the end.
        self.mta.stop()
        include = self.box.path("etc", "team.list")
        self.box.write("etc/aliases", ALIASES.format(include=include).replace(
            "postmaster: alice", "postmaster: nosuchuser"))
        self.mta.start()
        offset = len(self.mta.log())
        qid = self.send_null("ghost@example.org", "nullagain")
        self.wait_queue_empty()
        time.sleep(1.0)  # anything a loop would queue shows up by now
        self.assert_no_leftovers()
        log = self.mta.log()[offset:]
        notes = re.findall(r"([0-9A-V]{20}): sender notification \((\w+)\): ([0-9A-V]{20})", log)
        self.assertEqual(len(notes), 1, log)
        self.assertEqual(notes[0][:2], (qid, "failure"))
        double = notes[0][2]
        self.assertRegex(log, r"%s: to=<postmaster@mx\.example\.org> local user=nosuchuser failed"
                         % double)
        self.assertRegex(log, r"%s: removed" % double)
        for user in ("alice", "bob", "zed"):
            self.assertEqual(self.mailbox(user), [], user)

    def test_failed_bounce_goes_to_postmaster(self):
        # gone: nosuchuser -- a sender whose own mailbox does not take the bounce. The bounce
        # (a message from <>) fails; the postmaster (alice) hears of it, once.
        qid = self.send(["ghost@example.org"], make_message("bouncing", sender="gone@example.org"),
                        sender="gone@example.org")
        self.wait_queue_empty()
        log = self.mta.log()
        m = re.search(r"%s: sender notification \(failure\): ([0-9A-V]{20})" % qid, log)
        self.assertIsNotNone(m, log)
        bounce = m.group(1)
        self.assertRegex(log, r"%s: to=<gone@example\.org> local user=nosuchuser failed" % bounce)
        got = self.wait_mail("alice", 1, timeout=3)
        self.assertEqual(len(got), 1)
        msg, groups, returned = dsn_parts(got[0])
        self.assertEqual(msg["To"].addresses[0].addr_spec, "postmaster@mx.example.org")
        [rcpt] = groups[1:]
        self.assertEqual(rcpt["action"], "failed")
        self.assertEqual(rcpt["final-recipient"], "rfc822; gone@example.org")
        self.assertIn(b"bouncing", got[0])
        self.wait_queue_empty()
        self.assert_no_leftovers()

    def test_failed_bounce_to_a_list_does_not_loop(self):
        # The sender is a list with a member that cannot take mail. The bounce to the list is
        # expanded into a new message from <>; its failed member makes one double bounce for
        # the postmaster, and that is the end of it.
        qid = self.send(["ghost@example.org"], make_message("listbounce"),
                        sender="brokenlist@example.org")
        self.wait_queue_empty()
        time.sleep(1.0)  # anything a loop would queue shows up by now
        self.assert_no_leftovers()
        log = self.mta.log()
        notes = re.findall(r"([0-9A-V]{20}): sender notification \((\w+)\): ([0-9A-V]{20})", log)
        self.assertEqual(len(notes), 2, log)
        self.assertEqual(notes[0][:2], (qid, "failure"))
        got = self.mailbox("alice")
        self.assertEqual(len(got), 2, log)
        tos = []
        for raw in got:
            msg, groups, returned = dsn_parts(raw)
            self.assertEqual(groups[1]["action"], "failed")
            self.assertIn(b"listbounce", raw)
            tos.append(msg["To"].addresses[0].addr_spec)
        # The bounce itself (to the list, alice's copy), and the double bounce about the
        # member nosuchuser (to the postmaster, alias alice).
        self.assertEqual(sorted(tos), ["brokenlist@example.org", "postmaster@mx.example.org"])


# --- 6. SIGKILL while delivering ----------------------------------------------------------------

class KilledWhileDelivering(DeliveryTestCase):
    # One delivery at a time: a kill can interrupt at most one, so it can duplicate at most one
    # message (the window RFC 5321 6.1 accepts: delivered, but the state not yet written).
    EXTRA = "max_deliveries = 1\nqueue_rescan = 1h\n"
    MESSAGES = 50
    KILL_AFTER = (10, 22, 35)

    def test_sigkill_loses_nothing_and_duplicates_little(self):
        acked = []
        kills = 0
        client = None
        try:
            for n in range(self.MESSAGES):
                if n in self.KILL_AFTER:
                    if client is not None:
                        client.close()
                        client = None
                    self.mta.kill()
                    kills += 1
                    self.mta.start()
                if client is None:
                    client = self.smtp()
                    client.ehlo()
                token = "kill%03d" % n
                client.sendmail(REMOTE_SENDER, ["alice@example.org"],
                                make_message(token, to="alice@example.org"))
                acked.append(token)
        finally:
            if client is not None:
                client.close()
        # A last kill while the backlog is being delivered, then a daemon that finishes it.
        wait_for(lambda: len(self.mailbox("alice")) >= 3, 10, "some deliveries")
        self.mta.kill()
        kills += 1
        self.mta.start()
        self.wait_queue_empty(timeout=20)
        self.mta.stop()
        # An mda orphaned by a kill may still be appending: wait until it let go of the mbox.
        lock = os.path.join(self.box.mail, "alice.lock")
        wait_for(lambda: not os.path.exists(lock), 10, "mda to release " + lock)
        counts = {}
        for raw in self.mailbox("alice"):
            token = subject_token(raw)
            self.assertIsNotNone(token, raw[:300])
            # Whole messages only: an interrupted delivery never leaves a torn one.
            self.assertTrue(raw.rstrip(b"\n").endswith(b"%s body line two" % token.encode()), raw)
            counts[token] = counts.get(token, 0) + 1
        self.assertEqual(sorted(set(acked) - set(counts)), [], "acknowledged but not delivered")
        self.assertEqual(sorted(set(counts) - set(acked)), [])
        duplicates = sum(n - 1 for n in counts.values())
        self.assertLessEqual(duplicates, kills, counts)
        self.assert_no_leftovers()


# --- 7. a message queued by another process ------------------------------------------------------

class PickedUpByInotify(DeliveryTestCase):
    # No rescan for an hour: only inotify can tell the daemon about the new file.
    EXTRA = "queue_rescan = 1h\n"

    def test_daemon_delivers_what_mta_bs_queued(self):
        for n in range(2):
            token = "inotify%d" % n
            qid = self.mta.submit_bs("cron@example.org", ["carol@example.org"],
                                     make_message(token, sender="cron@example.org"))
            queued = time.monotonic()
            got = self.wait_mail("carol", n + 1, timeout=3)
            self.assertLess(time.monotonic() - queued, 2.0)
            self.assertEqual(subject_token(got[n]), token)
            self.wait_queue_empty(timeout=3)
            self.assertRegex(self.mta.log(),
                             r"%s: to=<carol@example\.org> local user=carol delivered" % qid)
        self.assert_no_leftovers()


if __name__ == "__main__":
    harness.main()
