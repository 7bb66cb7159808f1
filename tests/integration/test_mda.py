"""mda against real files, real processes and Python's mailbox and smtplib modules."""

import mailbox
import os
import pwd
import re
import resource
import shutil
import socket
import smtplib
import stat
import subprocess
import time
import unittest

import harness

SENDER = "alice@example.org"


def mboxrd_quote(text):
    """The quoting mda must apply: one more '>' before every line matching >*From ."""
    return re.sub(rb"(?m)^(>*From )", rb">\1", text)


def mboxrd_unquote(text):
    return re.sub(rb"(?m)^>(>*From )", rb"\1", text)


def normalized(raw):
    """What mda stores for raw input: LF line ends and a final newline."""
    text = raw.replace(b"\r\n", b"\n")
    if text and not text.endswith(b"\n"):
        text += b"\n"
    return text


def split_mbox(data):
    """An independent mbox splitter: a From_ line at the start or after an empty line."""
    starts = [m.start() for m in re.finditer(rb"(?:^|(?<=\n\n))From ", data)]
    messages = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - 1 if i + 1 < len(starts) else len(data)
        chunk = data[start:end]
        if i + 1 == len(starts) and chunk.endswith(b"\n\n"):
            chunk = chunk[:-1]
        from_line, _, body = chunk.partition(b"\n")
        messages.append((from_line, body))
    return messages


class MdaTestCase(unittest.TestCase):
    def setUp(self):
        self.box = harness.Sandbox()
        self.box.write("etc/users", "demo:{PLAIN}x\nbob:{PLAIN}y\n")
        self.config = self.write_config()

    def tearDown(self):
        self.box.cleanup()

    def write_config(self, extra="", name="mda.conf"):
        return self.box.write(
            "etc/" + name,
            f"mail_spool = {self.box.mail}\naccounts = file\naccount_file = {self.box.users}\n"
            f"temp_dir = {self.box.tmp}\nmail_group =\n{extra}")

    def mda(self, *args, stdin=b"", config=None, **kw):
        argv = [harness.binary("mda"), "-C", config or self.config, *args]
        return harness.run(argv, stdin=stdin, **kw)

    def deliver(self, raw, *users, sender=SENDER):
        return self.mda("-f", sender, *(users or ("demo",)), stdin=raw)

    def mbox_bytes(self, user="demo"):
        with open(os.path.join(self.box.mail, user), "rb") as f:
            return f.read()


class MboxFormat(MdaTestCase):
    TRICKY = [
        b"Subject: plain\n\nhello\n",
        b"Subject: crlf\r\n\r\nline one\r\nline two\r\n",
        b"Subject: no final newline\n\nlast line",
        b"Subject: from lines\n\nFrom the start\n>From quoted\n>>From twice\nFrom\nFromage\n\nFrom after blank\n",
        b"From nowhere at the very top\nSubject: odd\n\nbody\n",
        b"Subject: dots\n\n.\n..\n.From dot\n",
        b"Subject: blank tail\n\nbody\n\n\n",
        b"",
    ]

    def test_from_line_and_quoting_round_trip(self):
        for raw in self.TRICKY:
            r = self.deliver(raw)
            self.assertEqual(r.returncode, 0, r.stderr)
        data = self.mbox_bytes()
        expected = [b"Return-Path: <%s>\n" % SENDER.encode() + normalized(raw) for raw in self.TRICKY]

        # Python's mailbox module splits the file into the same messages, quoted as mboxrd.
        box = mailbox.mbox(os.path.join(self.box.mail, "demo"), create=False)
        keys = box.keys()
        self.assertEqual(len(keys), len(self.TRICKY))
        for key, want in zip(keys, expected):
            self.assertEqual(box.get_bytes(key), mboxrd_quote(want))
            self.assertRegex(box[key].get_from(),
                             r"^alice@example\.org \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$")
        box.close()

        # Removing one '>' from each >+From line gives back exactly what was delivered.
        messages = split_mbox(data)
        self.assertEqual(len(messages), len(self.TRICKY))
        for (from_line, body), want in zip(messages, expected):
            self.assertTrue(from_line.startswith(b"From alice@example.org "))
            self.assertEqual(mboxrd_unquote(body), want)
        # Exactly one empty line between messages and at the end.
        self.assertTrue(data.endswith(b"\n\n"))
        self.assertFalse(data.endswith(b"\n\n\n\n"))

    def test_appends_to_mailbox_written_by_python(self):
        path = os.path.join(self.box.mail, "demo")
        box = mailbox.mbox(path)
        msg = mailbox.mboxMessage(b"Subject: written by python\n\nbody\n")
        msg.set_from("python@example.org")
        box.add(msg)
        box.flush()
        box.close()
        os.chmod(path, 0o600)
        r = self.deliver(b"Subject: by mda\n\nmda body\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        box = mailbox.mbox(path, create=False)
        subjects = [m["Subject"] for m in box]
        box.close()
        self.assertEqual(subjects, ["written by python", "by mda"])

    def test_null_sender_and_sender_with_blank(self):
        self.assertEqual(self.deliver(b"x\n", sender="").returncode, 0)
        self.assertEqual(self.deliver(b"y\n", sender='"john doe"@example.org').returncode, 0)
        lines = [l for l in self.mbox_bytes().split(b"\n") if l.startswith(b"From ")]
        self.assertTrue(lines[0].startswith(b"From MAILER-DAEMON "))
        self.assertTrue(lines[1].startswith(b'From "john_doe"@example.org '))
        self.assertIn(b"Return-Path: <>\n", self.mbox_bytes())

    def test_sender_with_control_characters_is_refused(self):
        r = self.deliver(b"x\n", sender="a@b\nFrom evil")
        self.assertEqual(r.returncode, os.EX_USAGE)
        self.assertFalse(os.path.exists(os.path.join(self.box.mail, "demo")))

    def test_large_message_moves_from_memory_to_disk_intact(self):
        # Past 1 MiB the staged copy moves from memory to temp_dir; nothing may change.
        raw = b"Subject: large\r\n\r\n" + b"".join(b"From line %07d of a large body\r\n" % i
                                                    for i in range(100_000))
        r = self.deliver(raw, "demo", "bob")
        self.assertEqual(r.returncode, 0, r.stderr)
        for user in ("demo", "bob"):
            box = mailbox.mbox(os.path.join(self.box.mail, user), create=False)
            (key,) = box.keys()
            want = b"Return-Path: <%s>\n" % SENDER.encode() + normalized(raw)
            self.assertEqual(mboxrd_unquote(box.get_bytes(key)), want)
            box.close()
        self.assertEqual(os.listdir(self.box.tmp), [], "staging files left behind")

    def test_new_mailbox_is_private(self):
        self.assertEqual(self.deliver(b"x\n").returncode, 0)
        st = os.stat(os.path.join(self.box.mail, "demo"))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)


class Concurrency(MdaTestCase):
    def test_thirty_concurrent_deliveries_stay_whole(self):
        procs = []
        bodies = []
        for i in range(30):
            # Big enough that an unlocked writer would interleave with another.
            body = (b"message %02d line %%05d\n" % i)
            text = b"Subject: concurrent %02d\n\n" % i + b"".join(body % n for n in range(4000))
            bodies.append(text)
            p = subprocess.Popen([harness.binary("mda"), "-C", self.config, "-f", SENDER, "demo"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            procs.append(p)
        for p, text in zip(procs, bodies):
            out, err = p.communicate(text, timeout=60)
            self.assertEqual(p.returncode, 0, err)
        box = mailbox.mbox(os.path.join(self.box.mail, "demo"), create=False)
        got = sorted(box.get_bytes(k) for k in box.keys())
        box.close()
        self.assertEqual(len(got), 30)
        want = sorted(b"Return-Path: <%s>\n" % SENDER.encode() + t for t in bodies)
        self.assertEqual(got, want)
        leftovers = [n for n in os.listdir(self.box.mail) if n != "demo"]
        self.assertEqual(leftovers, [], "lock files left behind")


class HostileMailboxes(MdaTestCase):
    def assert_refused_and_untouched(self, target, before):
        r = self.deliver(b"Subject: attack\n\nx\n")
        self.assertEqual(r.returncode, os.EX_CANTCREAT, r.stderr)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertIn(b"mailbox left alone", r.stderr)

    def test_symlinked_mailbox_is_refused(self):
        target = self.box.path("victim")
        with open(target, "wb") as f:
            f.write(b"precious\n")
        os.symlink(target, os.path.join(self.box.mail, "demo"))
        self.assert_refused_and_untouched(target, b"precious\n")

    def test_dangling_symlink_is_not_followed(self):
        target = self.box.path("created-by-attack")
        os.symlink(target, os.path.join(self.box.mail, "demo"))
        r = self.deliver(b"x\n")
        self.assertEqual(r.returncode, os.EX_CANTCREAT, r.stderr)
        self.assertFalse(os.path.exists(target))

    def test_hardlinked_mailbox_is_refused(self):
        target = self.box.path("other")
        with open(target, "wb") as f:
            f.write(b"someone else's mail\n")
        os.chmod(target, 0o600)
        os.link(target, os.path.join(self.box.mail, "demo"))
        self.assert_refused_and_untouched(target, b"someone else's mail\n")

    def test_fifo_and_directory_are_refused_without_hanging(self):
        os.mkfifo(os.path.join(self.box.mail, "demo"))
        r = self.deliver(b"x\n")
        self.assertEqual(r.returncode, os.EX_CANTCREAT, r.stderr)
        os.mkdir(os.path.join(self.box.mail, "bob"))
        r = self.deliver(b"x\n", "bob")
        self.assertEqual(r.returncode, os.EX_CANTCREAT, r.stderr)


class Failures(MdaTestCase):
    def test_unknown_user_exits_67(self):
        r = self.deliver(b"x\n", "nosuchuser")
        self.assertEqual(r.returncode, os.EX_NOUSER)
        self.assertIn(b"unknown user: nosuchuser", r.stderr)
        self.assertEqual(os.listdir(self.box.mail), [])

    def test_hostile_user_names_never_become_paths(self):
        for name in ["../etc/passwd", "demo/../../x", "-f", ".", "..", "a b", "demo\n", ""]:
            r = self.mda("-f", SENDER, "--", name, stdin=b"x\n")
            self.assertEqual(r.returncode, os.EX_NOUSER, name)
        self.assertEqual(os.listdir(self.box.mail), [])
        self.assertFalse(os.path.exists(self.box.path("etc", "passwd")))

    def test_one_unknown_among_several_is_named_and_the_rest_delivered(self):
        r = self.deliver(b"Subject: multi\n\nx\n", "demo", "ghost", "bob")
        self.assertEqual(r.returncode, os.EX_NOUSER)
        self.assertIn(b"ghost", r.stderr)
        self.assertIn(b"Subject: multi", self.mbox_bytes("demo"))
        self.assertIn(b"Subject: multi", self.mbox_bytes("bob"))

    def test_usage_errors_exit_64(self):
        for args in [[], ["-x", "demo"], ["-f"], ["-l", "demo"], ["-l", "-P"]]:
            r = harness.run([harness.binary("mda"), "-C", self.config, *args])
            self.assertEqual(r.returncode, os.EX_USAGE, args)
            self.assertIn(b"usage:", r.stderr)

    def test_bad_config_names_file_and_line(self):
        bad = self.write_config("lock_timeout = soon\n", name="bad.conf")
        r = self.mda("demo", config=bad, stdin=b"x\n")
        self.assertEqual(r.returncode, os.EX_CONFIG)
        self.assertRegex(r.stderr.decode(), r"bad\.conf:6: .*lock_timeout")

    def test_full_disk_leaves_mailbox_exactly_as_before(self):
        self.assertEqual(self.deliver(b"Subject: first\n\n" + b"a" * 100_000 + b"\n").returncode, 0)
        before = self.mbox_bytes()
        limit = len(before) + 20_000

        def small_file_limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        big = b"Subject: too big\n\n" + b"b" * 50_000 + b"\n"
        r = self.mda("-f", SENDER, "demo", stdin=big, preexec_fn=small_file_limit)
        self.assertEqual(r.returncode, os.EX_TEMPFAIL, r.stderr)
        self.assertIn(b"mda: demo:", r.stderr)
        self.assertEqual(self.mbox_bytes(), before)
        # And the mailbox is still usable afterwards.
        self.assertEqual(self.deliver(b"Subject: after\n\nok\n").returncode, 0)
        box = mailbox.mbox(os.path.join(self.box.mail, "demo"), create=False)
        self.assertEqual([m["Subject"] for m in box], ["first", "after"])

    def test_full_tmpfs_leaves_mailbox_exactly_as_before(self):
        mnt = self.box.path("small")
        os.mkdir(mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt],
                           capture_output=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs here: " + r.stderr.decode().strip())
        try:
            spool = os.path.join(mnt, "mail")
            os.mkdir(spool)
            cfg = self.box.write("etc/tmpfs.conf",
                                 f"mail_spool = {spool}\naccounts = file\n"
                                 f"account_file = {self.box.users}\ntemp_dir = {self.box.tmp}\n"
                                 "mail_group =\n")
            self.assertEqual(self.mda("-f", SENDER, "demo", config=cfg,
                                      stdin=b"Subject: fits\n\n" + b"a" * 100_000).returncode, 0)
            with open(os.path.join(spool, "demo"), "rb") as f:
                before = f.read()
            r = self.mda("-f", SENDER, "demo", config=cfg,
                         stdin=b"Subject: does not fit\n\n" + b"b" * 300_000)
            self.assertEqual(r.returncode, os.EX_TEMPFAIL, r.stderr)
            self.assertIn(b"No space left on device", r.stderr)
            with open(os.path.join(spool, "demo"), "rb") as f:
                self.assertEqual(f.read(), before)
        finally:
            subprocess.run(["umount", mnt], capture_output=True)


class Locking(MdaTestCase):
    def test_held_dotlock_times_out_as_temporary_failure(self):
        cfg = self.write_config("lock_timeout = 2s\n", name="short.conf")
        lock = os.path.join(self.box.mail, "demo.lock")
        with open(lock, "w") as f:
            f.write("12345\n")
        start = time.monotonic()
        r = self.mda("-f", SENDER, "demo", config=cfg, stdin=b"x\n")
        elapsed = time.monotonic() - start
        self.assertEqual(r.returncode, os.EX_TEMPFAIL, r.stderr)
        self.assertIn(b"locked", r.stderr)
        self.assertGreaterEqual(elapsed, 1.5)
        self.assertLess(elapsed, 10)
        self.assertTrue(os.path.exists(lock), "someone else's fresh lock must stay")
        self.assertFalse(os.path.exists(os.path.join(self.box.mail, "demo")))

    def test_stale_dotlock_is_removed(self):
        cfg = self.write_config("lock_timeout = 5s\nstale_lock_after = 10s\n", name="stale.conf")
        lock = os.path.join(self.box.mail, "demo.lock")
        with open(lock, "w") as f:
            f.write("12345\n")
        old = time.time() - 3600
        os.utime(lock, (old, old))
        r = self.mda("-f", SENDER, "demo", config=cfg, stdin=b"Subject: after stale\n\nx\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"after stale", self.mbox_bytes())
        self.assertFalse(os.path.exists(lock))

    def test_fcntl_lock_of_another_program_is_honoured(self):
        import fcntl
        path = os.path.join(self.box.mail, "demo")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        cfg = self.write_config("lock_timeout = 30s\n", name="wait.conf")
        p = subprocess.Popen([harness.binary("mda"), "-C", cfg, "-f", SENDER, "demo"],
                             stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdin.write(b"Subject: waited\n\nx\n")
        p.stdin.close()
        time.sleep(1.0)
        self.assertIsNone(p.poll(), "mda wrote while another program held the lock")
        self.assertEqual(os.path.getsize(path), 0)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)
        self.assertEqual(p.wait(timeout=30), 0)
        p.stderr.close()
        self.assertIn(b"waited", self.mbox_bytes())


class Maildir(MdaTestCase):
    def test_delivery_into_maildir(self):
        cfg = self.write_config(f"mailbox_format = maildir\nmaildir = {self.box.root}/md/%u/Maildir\n",
                                name="maildir.conf")
        raw = b"Subject: to maildir\r\n\r\nFrom here\r\na bare\rCR\r\r\nno final newline"
        r = self.mda("-f", SENDER, "demo", config=cfg, stdin=raw)
        self.assertEqual(r.returncode, 0, r.stderr)
        md = self.box.path("md", "demo", "Maildir")
        self.assertEqual(os.listdir(os.path.join(md, "tmp")), [])
        names = os.listdir(os.path.join(md, "new"))
        self.assertEqual(len(names), 1)
        with open(os.path.join(md, "new", names[0]), "rb") as f:
            stored = f.read()
        want = b"Return-Path: <%s>\n" % SENDER.encode() + normalized(raw)
        self.assertEqual(stored, want)  # no From_ quoting in a maildir
        m = re.search(r",S=(\d+),W=(\d+)$", names[0])
        self.assertIsNotNone(m, names[0])
        self.assertEqual(int(m.group(1)), len(stored))
        # W= is the size a POP3 client sees: every LF and every bare CR sent as CRLF.
        wire = re.sub(rb"\r(?!\n)|(?<!\r)\n", b"\r\n", stored)
        self.assertEqual(int(m.group(2)), len(wire))
        # Python's Maildir reader sees the same message.
        box = mailbox.Maildir(md, factory=None, create=False)
        self.assertEqual([m["Subject"] for m in box], ["to maildir"])


class Lmtp(MdaTestCase):
    def start(self):
        a, b = socket.socketpair()
        self.proc = harness.Process([harness.binary("mda"), "-l", "-C", self.config],
                                    stdin=b, stdout=b)
        b.close()
        a.settimeout(30)
        self.addCleanup(self.proc.stop)
        return a

    def client(self):
        client = smtplib.LMTP()
        client.sock = self.start()
        code, _ = client.getreply()
        self.assertEqual(code, 220)
        return client

    def test_python_lmtp_client_delivers_several_messages(self):
        client = self.client()
        code, caps = client.ehlo("test.example")
        self.assertEqual(code, 250)
        for word in (b"PIPELINING", b"ENHANCEDSTATUSCODES", b"CHUNKING", b"8BITMIME"):
            self.assertIn(word, caps)
        for i in range(5):
            refused = client.sendmail(SENDER, ["demo@example.org"],
                                      b"Subject: lmtp %d\r\n\r\n.starts with dot\r\nFrom x\r\n" % i)
            self.assertEqual(refused, {})
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            client.sendmail(SENDER, ["ghost@example.org"], b"Subject: x\r\n\r\nx\r\n")
        self.assertEqual(cm.exception.recipients["ghost@example.org"][0], 550)
        client.quit()
        self.assertEqual(self.proc.proc.wait(timeout=10), 0)
        box = mailbox.mbox(os.path.join(self.box.mail, "demo"), create=False)
        msgs = list(box)
        self.assertEqual([m["Subject"] for m in msgs], ["lmtp %d" % i for i in range(5)])
        self.assertIn(b".starts with dot\n>From x\n", box.get_bytes(box.keys()[0]))

    def talk(self, sock, data, replies):
        """Sends data, then reads until `replies` final reply lines have arrived."""
        sock.sendall(data)
        buf = b""
        while buf.count(b"\r\n") < replies or not buf.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            lines = [l for l in buf.split(b"\r\n") if l]
            if len([l for l in lines if l[3:4] == b" "]) >= replies:
                break
        return [l for l in buf.split(b"\r\n") if l]

    def test_one_reply_per_recipient_after_data(self):
        sock = self.start()
        self.assertTrue(sock.recv(1000).startswith(b"220"))
        lines = self.talk(sock, b"LHLO t\r\n", 1)
        lines = self.talk(sock, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<demo>\r\n"
                          b"RCPT TO:<bob@here>\r\nRCPT TO:<ghost@here>\r\nDATA\r\n", 5)
        codes = [l[:3] for l in lines if l[3:4] == b" "]
        self.assertEqual(codes, [b"250", b"250", b"250", b"550", b"354"])
        lines = self.talk(sock, b"Subject: two\r\n\r\nbody\r\n.\r\n", 2)
        self.assertEqual([l[:3] for l in lines], [b"250", b"250"])
        self.assertIn(b"demo", lines[0])
        self.assertIn(b"bob@here", lines[1])
        self.talk(sock, b"QUIT\r\n", 1)
        self.assertIn(b"Subject: two", self.mbox_bytes("demo"))
        self.assertIn(b"Subject: two", self.mbox_bytes("bob"))

    def test_smuggled_end_of_data_stays_in_the_message(self):
        sock = self.start()
        sock.recv(1000)
        self.talk(sock, b"LHLO t\r\n", 1)
        self.talk(sock, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<demo>\r\nDATA\r\n", 3)
        smuggled = (b"Subject: outer\r\n\r\nbody\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<bob>\r\n"
                    b"DATA\r\nSubject: smuggled\r\n\r\nx\r\n\r.\rmore\r\n.\r\r\nstill\r\n"
                    b"\n.\r\nand\r\n.\r\n")
        lines = self.talk(sock, smuggled, 1)
        self.assertEqual([l[:3] for l in lines], [b"250"])
        self.talk(sock, b"QUIT\r\n", 1)
        self.assertFalse(os.path.exists(os.path.join(self.box.mail, "bob")))
        box = mailbox.mbox(os.path.join(self.box.mail, "demo"), create=False)
        self.assertEqual(len(box), 1)
        self.assertIn(b"Subject: smuggled", box.get_bytes(box.keys()[0]))

    def test_pipelined_bdat_transactions_are_all_delivered(self):
        sock = self.start()
        sock.recv(1000)
        self.talk(sock, b"LHLO t\r\n", 1)
        batch = b""
        for i in range(20):
            body = b"Subject: bdat %02d\r\n\r\n" % i + b"x" * 1000 + b"\r\n.\r\nnot the end\r\n"
            batch += (b"MAIL FROM:<a@b.example>\r\nRCPT TO:<demo>\r\nBDAT %d LAST\r\n" % len(body)
                      + body)
        lines = self.talk(sock, batch, 60)
        codes = [l[:3] for l in lines if l[3:4] == b" "]
        self.assertEqual(codes, [b"250"] * 60)
        self.talk(sock, b"QUIT\r\n", 1)
        box = mailbox.mbox(os.path.join(self.box.mail, "demo"), create=False)
        self.assertEqual([m["Subject"] for m in box], ["bdat %02d" % i for i in range(20)])
        self.assertIn(b"\n.\nnot the end\n", box.get_bytes(box.keys()[0]))

    def test_commands_need_crlf_and_bounded_length(self):
        sock = self.start()
        sock.recv(1000)
        lines = self.talk(sock, b"LHLO t\n", 1)
        self.assertTrue(lines[0].startswith(b"500"))
        lines = self.talk(sock, b"NOOP " + b"x" * 100_000 + b"\r\nNOOP\r\n", 2)
        self.assertTrue(lines[0].startswith(b"500 5.5.2 line too long"))
        self.assertTrue(lines[-1].startswith(b"250"))


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("useradd"), "needs root and useradd")
class SystemAccounts(MdaTestCase):
    """Delivery to a real system account, as root, the way mail.local is run."""

    def setUp(self):
        super().setUp()
        self.user = "mwt%d" % (os.getpid() % 100000)
        subprocess.run(["userdel", self.user], capture_output=True)
        r = subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", self.user], capture_output=True)
        if r.returncode != 0:
            self.skipTest("useradd failed: " + r.stderr.decode())
        self.addCleanup(subprocess.run, ["userdel", self.user], capture_output=True)
        os.chmod(self.box.mail, 0o1777)  # like a world-writable sticky /var/mail
        self.sysconfig = self.box.write(
            "etc/system.conf", f"mail_spool = {self.box.mail}\ntemp_dir = {self.box.tmp}\n")

    def test_mailbox_belongs_to_the_recipient_and_mda_ran_as_them(self):
        pw = pwd.getpwnam(self.user)
        r = self.mda("-f", SENDER, self.user, config=self.sysconfig, stdin=b"Subject: sys\n\nx\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        st = os.stat(os.path.join(self.box.mail, self.user))
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (pw.pw_uid, 0o600))

    def test_mailbox_owned_by_someone_else_is_refused(self):
        path = os.path.join(self.box.mail, self.user)
        with open(path, "wb") as f:
            f.write(b"root's file\n")
        os.chmod(path, 0o666)
        r = self.mda("-f", SENDER, self.user, config=self.sysconfig, stdin=b"x\n")
        self.assertEqual(r.returncode, os.EX_CANTCREAT, r.stderr)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"root's file\n")

    def test_several_system_recipients_in_one_run(self):
        r = self.mda("-f", SENDER, self.user, "root", config=self.sysconfig, stdin=b"x\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(os.stat(os.path.join(self.box.mail, "root")).st_uid, 0)
        self.assertEqual(os.stat(os.path.join(self.box.mail, self.user)).st_uid,
                         pwd.getpwnam(self.user).pw_uid)


if __name__ == "__main__":
    harness.main()
