"""The sendmail command line and local submission, as programs really call them.

mta is run by the names it is installed under (sendmail, mailq, newaliases: small wrappers
that exec it with that argv[0] and this test's -C), as root and as an ordinary user made with
useradd, with the daemon stopped (the message waits in maildrop/ until `mta -q`) and running
(inotify picks it up at once). Real callers: cron's exact argument list, s-nail with
mta=sendmail, PHP's `sendmail -t -i`, mutt's `-oem -oi --`. Recipients are virtual accounts
(accounts = file) delivered by mda into the sandbox's mail/."""

import email
import email.policy
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

import harness
import test_delivery as td

SUFFIX = "%d" % (os.getpid() % 100000)
USER = "mwsu" + SUFFIX

WRAPPER = """#!/bin/bash
exec -a {name} {mta} -C {config} "$@"
"""
ALIASES = "team: alice, bob\npostmaster: alice\n"


def useradd(*args):
    return subprocess.run(["useradd", *args], capture_output=True, timeout=30)


def userdel(name):
    subprocess.run(["userdel", "-r", name], capture_output=True, timeout=30)


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("useradd"), "needs root and useradd")
class SendmailTestCase(unittest.TestCase):
    START = False

    @classmethod
    def setUpClass(cls):
        userdel(USER)
        cls.homes = tempfile.mkdtemp(prefix="mw-sm-homes-")
        os.chmod(cls.homes, 0o755)
        r = useradd("-m", "-d", os.path.join(cls.homes, USER), "-s", "/bin/sh", "-c",
                    "Sam User,,,", USER)
        if r.returncode != 0:
            shutil.rmtree(cls.homes, ignore_errors=True)
            raise unittest.SkipTest("useradd failed: " + r.stderr.decode())
        cls.pw = pwd.getpwnam(USER)

    @classmethod
    def tearDownClass(cls):
        userdel(USER)
        shutil.rmtree(cls.homes, ignore_errors=True)

    def setUp(self):
        self.box = harness.Sandbox(prefix="mw-sm-")
        self.addCleanup(self.box.cleanup)
        self.box.write("etc/users", "alice:{PLAIN}a\nbob:{PLAIN}b\ncarol:{PLAIN}c\n")
        self.box.write("etc/aliases", ALIASES)
        self.mta = td.Mta(self.box, extra="max_message_size = 1M\n")
        self.bin = self.box.path("bin")
        os.mkdir(self.bin)
        os.chmod(self.bin, 0o755)
        for name in ("sendmail", "mailq", "newaliases"):
            self.box.write("bin/" + name, WRAPPER.format(name=name, mta=harness.binary("mta"),
                                                        config=self.mta.config), 0o755)
        # s-nail as the user, with mta= pointing at our sendmail and no mailrc read.
        self.box.write("bin/s-nail-run", "#!/bin/sh\nexec s-nail -n -S mta=%s \"$@\"\n"
                       % os.path.join(self.bin, "sendmail"), 0o755)
        self.addCleanup(self.mta.stop)
        # The spool as an install leaves it: made by a first run as root.
        r = self.mta.command("-q")
        self.assertEqual(r.returncode, 0, r.stderr)
        if self.START:
            self.mta.start()

    # --- helpers ---

    def sendmail(self, *args, stdin=b"", as_user=False, name="sendmail", env=None):
        argv = [os.path.join(self.bin, name), *args]
        kw = {}
        if as_user:
            kw = dict(user=self.pw.pw_uid, group=self.pw.pw_gid, extra_groups=[],
                      cwd=self.pw.pw_dir)
            env = dict(env or {}, HOME=self.pw.pw_dir, USER=USER, LOGNAME=USER,
                       PATH="/usr/bin:/bin")
        return harness.run(argv, stdin=stdin, env=env, timeout=30, **kw)

    def ok(self, r):
        self.assertEqual(r.returncode, 0, (r.stdout, r.stderr))
        return r

    def dropped(self):
        return sorted(self.mta.names("maildrop"))

    def run_queue(self):
        r = self.mta.command("-q", "-v")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.queue_log = r.stderr.decode("utf-8", "replace")

    def mail(self, user, count, timeout=10.0):
        def ready():
            got = td.mbox_messages(self.box, user)
            lock = os.path.join(self.box.mail, user + ".lock")
            return got if len(got) >= count and not os.path.exists(lock) else None
        return td.wait_for(ready, timeout, lambda: "%d messages for %s; log:\n%s"
                           % (count, user, self.mta.log()[-3000:]))

    @staticmethod
    def parse(raw):
        return email.message_from_bytes(raw, policy=email.policy.default)


class Submission(SendmailTestCase):
    def test_root_t_i_without_daemon_then_queue_run(self):
        msg = (b"To: alice@example.org\nCc: Bob <bob@example.org>\nBcc: carol\n"
               b"Subject: t-i\n\nfirst\n.\nafter the dot\n")
        self.ok(self.sendmail("-t", "-i", stdin=msg))
        [name] = self.dropped()
        path = os.path.join(self.mta.spool, "maildrop", name)
        st = os.lstat(path)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o644))
        self.assertRegex(name, r"^[0-9A-V]{20}\.[0-9a-f]{32}$")
        # Nothing is delivered until a queue run picks it up.
        self.assertEqual(td.mbox_messages(self.box, "alice"), [])
        self.run_queue()
        self.assertEqual(self.dropped(), [])
        for user in ("alice", "bob", "carol"):
            [raw] = self.mail(user, 1)
            m = self.parse(raw)
            self.assertEqual(m["Subject"], "t-i")
            self.assertIsNone(m["Bcc"])
            self.assertNotIn(b"carol", raw.split(b"\n\n", 1)[0].replace(b"for <carol", b""))
            self.assertEqual(m["Return-Path"], "<root@mx.example.org>")
            self.assertIn("root@mx.example.org", m["From"])
            self.assertIsNotNone(m["Date"])
            self.assertRegex(m["Message-ID"], r"^<[0-9A-V]{20}@mx\.example\.org>$")
            self.assertIn("(Mailwright, from user root, uid 0)", m["Received"])
            self.assertTrue(raw.endswith(b"first\n.\nafter the dot\n"), raw[-60:])

    def test_a_lone_dot_ends_the_message_without_i(self):
        self.ok(self.sendmail("alice@example.org", stdin=b"Subject: dot\n\nkept\n.\ndropped\n"))
        self.run_queue()
        [raw] = self.mail("alice", 1)
        self.assertIn(b"kept\n", raw)
        self.assertNotIn(b"dropped", raw)

    def test_ordinary_user_cannot_choose_the_sender(self):
        r = self.ok(self.sendmail("-f", "ceo@bank.example", "-F", "The CEO", "alice",
                                  stdin=b"Subject: spoof\n\nmoney\n", as_user=True))
        self.assertEqual(r.stdout, b"")
        [name] = self.dropped()
        st = os.lstat(os.path.join(self.mta.spool, "maildrop", name))
        self.assertEqual(st.st_uid, self.pw.pw_uid)
        self.run_queue()
        [raw] = self.mail("alice", 1)
        m = self.parse(raw)
        self.assertEqual(m["Return-Path"], "<%s@mx.example.org>" % USER)
        # -F is the user's to choose: it is only the From: field's name.
        self.assertEqual(m["From"], "The CEO <%s@mx.example.org>" % USER)
        self.assertIn("from user %s, uid %d" % (USER, self.pw.pw_uid), m["Received"])
        self.assertRegex(self.queue_log, r"from=<%s@mx\.example\.org> uid=%d user=%s: picked up"
                         % (USER, self.pw.pw_uid, USER))

    def test_the_passwd_name_goes_into_from(self):
        self.ok(self.sendmail("alice", stdin=b"Subject: gecos\n\nx\n", as_user=True))
        self.run_queue()
        [raw] = self.mail("alice", 1)
        self.assertEqual(self.parse(raw)["From"], "Sam User <%s@mx.example.org>" % USER)

    def test_root_may_choose_the_sender(self):
        self.ok(self.sendmail("-fbounces@lists.example", "-F", "List", "alice",
                              stdin=b"Subject: list\n\nx\n"))
        self.ok(self.sendmail("-r", "<>", "bob", stdin=b"Subject: null\n\nx\n"))
        self.run_queue()
        [raw] = self.mail("alice", 1)
        self.assertEqual(self.parse(raw)["Return-Path"], "<bounces@lists.example>")
        [raw] = self.mail("bob", 1)
        self.assertEqual(self.parse(raw)["Return-Path"], "<>")

    def test_dsn_flags_reach_the_envelope(self):
        self.ok(self.sendmail("-N", "failure,delay", "-R", "hdrs", "-V", "env-42", "-B",
                              "8BITMIME", "alice", stdin=b"Subject: dsn\n\nx\n"))
        [name] = self.dropped()
        with open(os.path.join(self.mta.spool, "maildrop", name), "rb") as f:
            head = f.read().split(b"END\n", 1)[0].decode()
        self.assertIn("\nNOTIFY FAILURE,DELAY\n", head)
        self.assertIn("\nRET HDRS\n", head)
        self.assertIn("\nENVID env-42\n", head)
        self.assertIn("\nBODY 8BITMIME\n", head)
        self.ok(self.sendmail("-N", "never", "bob", stdin=b"Subject: never\n\nx\n"))
        self.assertEqual(len(self.dropped()), 2)

    def test_harmless_sendmail_options_are_accepted(self):
        # mutt, cron and PHP pass these; each must queue the message.
        calls = [["-oem", "-oi", "--", "alice@example.org"],          # mutt, s-nail
                 ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "alice"],  # cron
                 ["-t", "-i"],                                          # PHP mail()
                 ["-odb", "-oQ/var/spool", "-Ooption=value", "-v", "-ti"],
                 ["-bm", "alice"]]
        for args in calls:
            r = self.ok(self.sendmail(*args, stdin=b"To: alice@example.org\nSubject: opts\n\nx\n"))
        self.run_queue()
        self.assertEqual(len(self.mail("alice", len(calls))), len(calls))

    def test_comma_lists_and_bare_names(self):
        self.ok(self.sendmail("alice, Bob <bob@example.org>", "carol", "alice",
                              stdin=b"Subject: lists\n\nx\n"))
        [name] = self.dropped()
        with open(os.path.join(self.mta.spool, "maildrop", name), "rb") as f:
            head = f.read().split(b"END\n", 1)[0].decode()
        self.assertEqual(re.findall(r"^RCPT (.*)$", head, re.M),
                         ["alice@mx.example.org", "bob@example.org", "carol@mx.example.org"])
        self.run_queue()
        for user in ("alice", "bob", "carol"):
            self.assertEqual(len(self.mail(user, 1)), 1)

    def test_bad_input_is_refused_with_sysexits(self):
        cases = [
            (["-X"], b"x\n", 64),
            (["--bogus", "alice"], b"x\n", 64),
            ([], b"x\n", 64),                                 # no recipients
            (["-t"], b"Subject: nobody\n\nx\n", 64),          # -t, but nobody named
            (["-bp", "alice"], b"", 64),
            (["-N", "sometimes", "alice"], b"x\n", 64),
            (["-R", "most", "alice"], b"x\n", 64),
            (["-f"], b"", 64),
            (["a@b;reboot"], b"x\n", 65),
            (["alice@example.org|sh"], b"x\n", 65),
            (["alice@-oQ/tmp"], b"x\n", 65),
            (["alice"], b"Subject: x\n\nnul\0here\n", 65),
            (["alice"], b"Subject: x\n\nbare\rcr\n", 65),
            (["alice"], b"Subject: big\n\n" + b"a" * 1100000 + b"\n", 65),
        ]
        for args, stdin, status in cases:
            r = self.sendmail(*args, stdin=stdin)
            self.assertEqual(r.returncode, status, (args, r.stderr))
            self.assertTrue(r.stderr, args)
        self.assertEqual(self.dropped(), [])

    def test_verify_addresses(self):
        r = self.sendmail("-bv", "alice", "team@example.org", "nobody-here", "x@remote.example")
        self.assertEqual(r.returncode, 67, r)
        out = r.stdout.decode()
        self.assertIn("alice@mx.example.org... deliverable: the mailbox of alice", out)
        self.assertIn("team@example.org... deliverable: alias for alice, bob", out)
        self.assertIn("nobody-here@mx.example.org... User unknown", out)
        self.assertIn("x@remote.example... deliverable: remote, by SMTP to the MX hosts of "
                      "remote.example", out)
        self.assertEqual(self.sendmail("-bv", "bob").returncode, 0)
        self.assertEqual(self.dropped(), [])

    def test_mailq_and_newaliases_by_name(self):
        r = self.sendmail(name="newaliases")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"2 aliases", r.stdout)
        r = self.sendmail(name="mailq")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.sendmail("-bs", stdin=b"EHLO x\r\nQUIT\r\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith(b"220 "), r.stdout)

    def test_cron_style_mailto(self):
        # What cron runs for a job's output with MAILTO=alice, byte for byte (its argv and its
        # header, with a long line of output).
        output = b"line of job output " * 80
        msg = (b"From: root (Cron Daemon)\nTo: alice\nSubject: Cron <root@host> /usr/bin/job\n"
               b"MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n"
               b"Content-Transfer-Encoding: 8bit\nX-Cron-Env: <MAILTO=alice>\n\n" + output + b"\n")
        self.ok(self.sendmail("-FCronDaemon", "-i", "-B8BITMIME", "-oem", "alice", stdin=msg))
        self.run_queue()
        [raw] = self.mail("alice", 1)
        m = self.parse(raw)
        self.assertEqual(m["Subject"], "Cron <root@host> /usr/bin/job")
        body = raw.split(b"\n\n", 1)[1]
        self.assertEqual(body.replace(b"\n", b""), output)
        self.assertTrue(all(len(line) <= 998 for line in raw.split(b"\n")))

    @unittest.skipUnless(shutil.which("s-nail"), "needs s-nail")
    def test_s_nail_sends_through_sendmail(self):
        r = self.sendmail("-s", "from s-nail", "alice@example.org",
                          stdin=b"written with s-nail\n", as_user=True, name="s-nail-run")
        self.assertEqual(r.returncode, 0, r)
        self.run_queue()
        [raw] = self.mail("alice", 1)
        m = self.parse(raw)
        self.assertEqual(m["Subject"], "from s-nail")
        self.assertEqual(m["Return-Path"], "<%s@mx.example.org>" % USER)
        self.assertIn(b"written with s-nail", raw)


class HostileMaildrop(SendmailTestCase):
    def plant(self, name, data=None, mode=0o644):
        path = os.path.join(self.mta.spool, "maildrop", name)
        if data is not None:
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, mode)
        return path

    def test_hostile_files_go_to_corrupt_and_nothing_hangs(self):
        good = "0LJ8K2M3N4P5Q6R7S8T9.0123456789abcdef0123456789abcdef"
        envelope = (b"MWQUEUE 1\nID 0LJ8K2M3N4P5Q6R7S8T9\nTIME 1\nFROM \nRCPT alice@example.org\n"
                    b"END\n")
        secret = self.box.write("secret", "MWQUEUE 1\nID 0LJ8K2M3N4P5Q6R7S8TA\nTIME 1\nFROM \n"
                                "RCPT alice@example.org\nEND\nSubject: secret\r\n\r\nx\r\n", 0o600)
        os.symlink(secret, self.plant("0LJ8K2M3N4P5Q6R7S8TA.0123456789abcdef0123456789abcdef"))
        os.link(secret, self.plant("0LJ8K2M3N4P5Q6R7S8TB.0123456789abcdef0123456789abcdef"))
        os.mkfifo(self.plant("0LJ8K2M3N4P5Q6R7S8TC.0123456789abcdef0123456789abcdef"))
        self.plant("0LJ8K2M3N4P5Q6R7S8TD.0123456789abcdef0123456789abcdef", b"garbage\n")
        self.plant("0LJ8K2M3N4P5Q6R7S8TE.0123456789abcdef0123456789abcdef",
                   envelope + b"Subject: smuggle\n\nx\r\n.\nMAIL FROM:<a@b>\r\n")
        self.plant("evil", b"junk")
        # A user's own file: legitimate, although not written by our sendmail.
        path = self.plant(good, envelope + b"Subject: handmade\r\n\r\nfine\r\n")
        os.chown(path, self.pw.pw_uid, self.pw.pw_gid)
        self.run_queue()
        self.assertEqual(self.dropped(), [])
        corrupt = sorted(self.mta.names("corrupt"))
        self.assertEqual(len(corrupt), 6, corrupt)
        self.assertTrue(all(n.startswith("maildrop.") for n in corrupt), corrupt)
        [raw] = self.mail("alice", 1)
        m = self.parse(raw)
        self.assertEqual(m["Subject"], "handmade")
        # Its author is the file's owner, whatever the file says (FROM was <>).
        self.assertEqual(m["Return-Path"], "<%s@mx.example.org>" % USER)
        self.assertTrue(os.path.exists(secret))


class CheckMode(SendmailTestCase):
    def test_bV_finds_each_problem_and_says_how_to_mend_it(self):
        r = self.mta.command("-bV")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn(b"configuration OK", r.stdout)
        maildrop = os.path.join(self.mta.spool, "maildrop")
        os.chmod(maildrop, 0o1777)
        self.addCleanup(os.chmod, maildrop, 0o1733)
        password = self.box.write("etc/relay-password", "user secret\n", 0o644)
        with open(self.mta.config, "a") as f:
            f.write("relayhost = [unclosed\ntransports = %s\ndns_servers = not-an-address\n"
                    "relayhost_password_file = %s\n" % (self.box.path("etc", "none"), password))
        r = self.mta.command("-bV")
        self.assertEqual(r.returncode, 78, r.stdout)
        out = r.stdout.decode()
        for what in ("maildrop is not a directory of mode 1733", "relayhost:", "transports:",
                     "dns_servers:", "can be read by others than its owner"):
            self.assertIn(what, out)
        self.assertEqual(out.count("problem:"), out.count("  fix:"))
        self.assertEqual(out.count("problem:"), 5, out)


class StaleTemporaries(SendmailTestCase):
    def test_a_dead_sendmail_s_file_goes_after_a_day_even_unreadable(self):
        old = "t." + "a" * 32
        fresh = "t." + "b" * 32
        for name in (old, fresh):
            path = os.path.join(self.mta.spool, "maildrop", name)
            with open(path, "wb") as f:
                f.write(b"half a message")
            os.chown(path, self.pw.pw_uid, self.pw.pw_gid)
            os.chmod(path, 0o600)  # as sendmail leaves it before its chmod
        two_days_ago = time.time() - 2 * 86400
        os.utime(os.path.join(self.mta.spool, "maildrop", old), (two_days_ago, two_days_ago))
        self.run_queue()
        self.assertEqual(self.dropped(), [fresh])
        self.assertEqual(self.mta.names("corrupt"), [])


class WithDaemon(SendmailTestCase):
    START = True

    def test_daemon_picks_up_at_once(self):
        self.ok(self.sendmail("alice", stdin=b"Subject: quick\n\nx\n", as_user=True))
        [raw] = self.mail("alice", 1)
        self.assertEqual(self.parse(raw)["Subject"], "quick")
        td.wait_for(lambda: self.dropped() == [] and self.mta.queue_empty(), 10,
                    lambda: "an empty maildrop and queue")


if __name__ == "__main__":
    harness.main()
