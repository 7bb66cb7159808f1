"""~/.forward files and |command and /file targets, end to end, with real system accounts.

The daemon runs as root with run_as = nobody (as in test_delivery.py), so the root launcher
reads .forward files and runs commands; mda delivers to system accounts (accounts = system)
in a temporary mail_spool. The test makes its own users with useradd (home directories in a
temporary directory) and removes them again with userdel -r:

  ALICE and BOB   ordinary users with a home directory and /bin/sh, whose .forward files the
                  tests write
  PROG            alias_program_user: runs the alias file's commands and writes its files
                  (no home directory, so its commands start in /)

Commands are small shell scripts under the sandbox that record who ran them, their
environment and their standard input in a world-writable (sticky) directory."""

import email
import email.policy
import mailbox
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import harness
import test_delivery as td

SUFFIX = "%d" % (os.getpid() % 100000)
ALICE, BOB, PROG = "mwfa" + SUFFIX, "mwfb" + SUFFIX, "mwfp" + SUFFIX
PWNED = "/tmp/mwpwned" + SUFFIX

RECORD = """#!/bin/sh
# record NAME [ARGS...]: who ran it, with what, on what
out={out}/$1
shift
id -u > "$out.uid.tmp" && mv "$out.uid.tmp" "$out.uid"
printf '%s' "$SENDER" > "$out.sender"
printf '%s\\n' "$@" > "$out.args"
env > "$out.env"
pwd > "$out.pwd"
cat > "$out.stdin"
touch "$out.done"
"""
FLAKY = """#!/bin/sh
# exit 75 (EX_TEMPFAIL) the first time, 0 the next
count={out}/flaky.count
n=$(cat "$count" 2>/dev/null || echo 0)
n=$((n + 1))
echo $n > "$count"
cat > {out}/flaky.stdin.$n
if [ $n -lt 2 ]; then echo "busy, try later"; exit 75; fi
"""
FAIL67 = """#!/bin/sh
cat > /dev/null
echo "no such ticket queue: $RECIPIENT"
exit 67
"""

ALIASES = """# forward tests
prog: "|{bin}/record alias"
meta: "|{bin}/record meta $SENDER"
flaky: "|{bin}/flaky"
nouser: "|{bin}/fail67"
archive: {archive}
devnull: /dev/null
both: {bob}, "|{bin}/record both"
incprog: :include:{etc}/prog.list
"""


def useradd(*args):
    return subprocess.run(["useradd", *args], capture_output=True, timeout=30)


def userdel(name):
    subprocess.run(["userdel", "-r", name], capture_output=True, timeout=30)


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("useradd") and shutil.which("userdel"),
                     "needs root, useradd and userdel")
class ForwardTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.homes = tempfile.mkdtemp(prefix="mw-fwd-homes-")
        os.chmod(cls.homes, 0o755)
        for name in (ALICE, BOB, PROG):
            userdel(name)  # left over by an interrupted run
        for name in (ALICE, BOB):
            r = useradd("-m", "-d", os.path.join(cls.homes, name), "-s", "/bin/sh", name)
            if r.returncode != 0:
                cls.tearDownClass()
                raise unittest.SkipTest("useradd failed: " + r.stderr.decode())
        r = useradd("--no-create-home", "--home-dir", "/nonexistent", "-s", "/usr/sbin/nologin",
                    PROG)
        if r.returncode != 0:
            cls.tearDownClass()
            raise unittest.SkipTest("useradd failed: " + r.stderr.decode())
        cls.uid = {n: pwd.getpwnam(n).pw_uid for n in (ALICE, BOB, PROG)}

    @classmethod
    def tearDownClass(cls):
        for name in (ALICE, BOB, PROG):
            userdel(name)
        shutil.rmtree(cls.homes, ignore_errors=True)

    EXTRA = ""

    def setUp(self):
        self.box = harness.Sandbox(prefix="mw-fwd-")
        self.addCleanup(self.box.cleanup)
        os.chmod(self.box.mail, 0o1777)  # like /var/mail: users make their dotlocks there
        self.bin = self.box.path("bin")
        self.out = self.box.path("out")
        self.archive_dir = self.box.path("archive")
        for d in (self.bin, self.out, self.archive_dir):
            os.mkdir(d)
        os.chmod(self.bin, 0o755)
        os.chmod(self.out, 0o1777)
        os.chown(self.archive_dir, self.uid[PROG], -1)
        for name, text in (("record", RECORD), ("flaky", FLAKY), ("fail67", FAIL67)):
            self.box.write("bin/" + name, text.format(out=self.out), 0o755)
        self.box.write("etc/prog.list", '"|%s/record include"\n' % self.bin)
        self.archive = os.path.join(self.archive_dir, "list.mbox")
        self.box.write("etc/aliases", ALIASES.format(bin=self.bin, archive=self.archive,
                                                     bob=BOB, etc=self.box.etc))
        for user in (ALICE, BOB):
            self.addCleanup(self.remove_forward, user)
            home = self.home(user)
            os.chmod(home, 0o755)
            self.addCleanup(os.chmod, home, 0o755)
        self.mta = td.Mta(self.box)
        # Replace the configs test_delivery writes: system accounts, and ours.
        self.box.write(f"etc/{self.mta.name}-mda.conf",
                       f"mail_spool = {self.box.mail}\naccounts = system\n"
                       f"temp_dir = {self.box.tmp}\nmail_group =\n")
        self.box.write(
            f"etc/{self.mta.name}.conf",
            f"listen = 127.0.0.1:{self.mta.port}\nspool_dir = {self.mta.spool}\n"
            "local_domains = example.org\naccounts = system\n"
            f"aliases = {self.box.path('etc', 'aliases')}\n"
            "run_as = nobody\nspool_reserve = 1M\nhostname = mx.example.org\n"
            f"alias_program_user = {PROG}\nprogram_timeout = 20s\n"
            f"mda = {harness.binary('mda')}\nmda_config = {self.mta.mda_config}\n" + self.EXTRA)
        self.addCleanup(self.mta.stop)
        self.mta.start()

    # --- helpers ---

    def home(self, user):
        return os.path.join(self.homes, user)

    def write_forward(self, user, text, mode=0o644):
        path = os.path.join(self.home(user), ".forward")
        self.remove_forward(user)
        with open(path, "w") as f:
            f.write(text)
        os.chown(path, self.uid[user], -1)
        os.chmod(path, mode)
        return path

    def remove_forward(self, user):
        path = os.path.join(self.home(user), ".forward")
        if os.path.lexists(path):
            os.unlink(path)

    def send(self, rcpts, token, sender="client@client.example", extra_body=""):
        message = td.make_message(token, sender=sender if "@" in sender else "x@x.example")
        if extra_body:
            message += extra_body.encode()
        with td.smtplib.SMTP("127.0.0.1", self.mta.port, timeout=20,
                             local_hostname="client.example") as client:
            client.ehlo()
            code, text = client.mail(sender)
            self.assertEqual(code, 250, text)
            for r in rcpts:
                code, text = client.rcpt(r)
                self.assertEqual(code, 250, (r, text))
            code, text = client.data(message)
            self.assertEqual(code, 250, text)
            return td.queued_id(text)

    def mailbox(self, user):
        return td.mbox_messages(self.box, user)

    def wait_mail(self, user, count, timeout=10.0):
        lock = os.path.join(self.box.mail, user + ".lock")

        def ready():
            got = self.mailbox(user)
            return got if len(got) >= count and not os.path.exists(lock) else None
        return td.wait_for(ready, timeout, lambda: "%d messages for %s; log:\n%s"
                           % (count, user, self.mta.log()[-4000:]))

    def wait_queue_empty(self, timeout=10.0):
        td.wait_for(self.mta.queue_empty, timeout, lambda: "an empty queue; log:\n%s"
                    % self.mta.log()[-4000:])

    def recorded(self, name, timeout=10.0):
        """What bin/record NAME saw, once it has finished."""
        base = os.path.join(self.out, name)
        td.wait_for(lambda: os.path.exists(base + ".done"), timeout,
                    lambda: "command %s to run; log:\n%s" % (name, self.mta.log()[-4000:]))
        got = {}
        for part in ("uid", "sender", "args", "env", "pwd", "stdin"):
            with open(base + "." + part, "rb") as f:
                got[part] = f.read()
        got["uid"] = int(got["uid"])
        got["environ"] = dict(line.split("=", 1) for line in
                              got["env"].decode().splitlines() if "=" in line)
        return got

    def bounces(self, user, count=1):
        raws = self.wait_mail(user, count)
        return [td.dsn_parts(raw) for raw in raws]


# --- 1. ~/.forward ------------------------------------------------------------------------------

class Forward(ForwardTestCase):
    def test_forward_to_another_user(self):
        self.write_forward(ALICE, "# my mail goes to bob\n%s\n" % BOB)
        qid = self.send(["%s@example.org" % ALICE], "fwd1")
        [raw] = self.wait_mail(BOB, 1)
        self.assertEqual(td.subject_token(raw), "fwd1")
        # The copy says who forwarded it (the loop check reads it).
        self.assertIn(b"\nDelivered-To: %s@mx.example.org\n" % ALICE.encode(), raw)
        self.wait_queue_empty()
        self.assertEqual(self.mailbox(ALICE), [])
        log = self.mta.log()
        self.assertRegex(log, r"%s: to=<%s@example\.org> ~%s/\.forward: 0 mailboxes, "
                              r"0 commands and files, 1 addresses" % (qid, ALICE, ALICE))
        self.assertRegex(log, r"%s: to=<%s@example\.org> expanded to 1 recipients" % (qid, ALICE))

    def test_own_mailbox_and_a_command_run_as_the_user(self):
        self.write_forward(ALICE, '\\%s, "|%s/record fwd"\n' % (ALICE, self.bin))
        self.send(["%s@example.org" % ALICE], "fwd2", sender="%s@example.org" % BOB)
        [raw] = self.wait_mail(ALICE, 1)
        self.assertEqual(td.subject_token(raw), "fwd2")
        seen = self.recorded("fwd")
        self.assertEqual(seen["uid"], self.uid[ALICE])
        self.assertEqual(seen["pwd"].strip().decode(), self.home(ALICE))
        env = seen["environ"]
        self.assertEqual(env["SENDER"], "%s@example.org" % BOB)
        self.assertEqual(env["RECIPIENT"], "%s@example.org" % ALICE)
        self.assertEqual((env["USER"], env["LOGNAME"], env["HOME"], env["SHELL"], env["PATH"]),
                         (ALICE, ALICE, self.home(ALICE), "/bin/sh", "/usr/bin:/bin"))
        # Nothing else of the mta's environment gets through.
        self.assertLessEqual(set(env) - {"PWD", "SHLVL", "_", "OLDPWD"},
                             {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "SENDER", "RECIPIENT"})
        stdin = seen["stdin"]
        self.assertTrue(stdin.startswith(b"Return-Path: <%s@example.org>\n" % BOB.encode()),
                        stdin[:200])
        self.assertNotIn(b"\r", stdin)
        self.assertIn(b"\nSubject: test fwd2\n", stdin)
        self.assertTrue(stdin.endswith(b"fwd2 body line two\n"), stdin[-100:])
        self.wait_queue_empty()
        # \alice is the mailbox itself: no second round through the .forward.
        time.sleep(0.5)
        self.assertEqual(len(self.mailbox(ALICE)), 1)
        self.assertNotRegex(self.mta.log(), r"expanded to")

    def test_unsafe_forward_files_are_ignored(self):
        cases = []
        # group-writable
        self.write_forward(ALICE, BOB + "\n", mode=0o664)
        cases.append(("grpw", "writable by group or others"))
        qid = self.send(["%s@example.org" % ALICE], "grpw")
        self.wait_mail(ALICE, 1)
        self.wait_queue_empty()
        # a symbolic link (to a file alice owns, that would be fine on its own)
        target = os.path.join(self.home(ALICE), "fwd-target")
        with open(target, "w") as f:
            f.write(BOB + "\n")
        os.chown(target, self.uid[ALICE], -1)
        self.remove_forward(ALICE)
        os.symlink(target, os.path.join(self.home(ALICE), ".forward"))
        self.send(["%s@example.org" % ALICE], "symlink")
        self.wait_mail(ALICE, 2)
        self.wait_queue_empty()
        # another user's file
        path = self.write_forward(ALICE, BOB + "\n")
        os.chown(path, self.uid[BOB], -1)
        self.send(["%s@example.org" % ALICE], "owner")
        self.wait_mail(ALICE, 3)
        self.wait_queue_empty()
        # a group-writable home directory
        self.write_forward(ALICE, BOB + "\n")
        os.chmod(self.home(ALICE), 0o775)
        self.send(["%s@example.org" % ALICE], "homew")
        self.wait_mail(ALICE, 4)
        self.wait_queue_empty()
        self.assertEqual([td.subject_token(m) for m in self.mailbox(ALICE)],
                         ["grpw", "symlink", "owner", "homew"])
        self.assertEqual(self.mailbox(BOB), [])
        log = self.mta.log()
        for why in ("writable by group or others", "is a symbolic link",
                    "belongs to another user", "home directory is writable by group or others"):
            self.assertRegex(log, r"to=<%s@example\.org> ~%s/\.forward ignored, delivering to "
                                  r"the mailbox: .*%s" % (ALICE, ALICE, re.escape(why)))
        self.assertRegex(log, r"%s: to=<%s@example\.org> local user=%s delivered"
                         % (qid, ALICE, ALICE))

    def test_forward_that_is_unreadable_to_others_is_read_as_the_user(self):
        # 0600 in a 0700 home: only alice (and the launcher, as alice) can read it.
        os.chmod(self.home(ALICE), 0o700)
        self.write_forward(ALICE, BOB + "\n", mode=0o600)
        self.send(["%s@example.org" % ALICE], "private")
        [raw] = self.wait_mail(BOB, 1)
        self.assertEqual(td.subject_token(raw), "private")
        self.wait_queue_empty()
        self.assertEqual(self.mailbox(ALICE), [])

    def test_forwarding_loop_bounces(self):
        self.write_forward(ALICE, BOB + "\n")
        self.write_forward(BOB, ALICE + "\n")
        qid = self.send(["%s@example.org" % ALICE], "loop", sender="%s@example.org" % PROG)
        [(msg, groups, returned)] = self.bounces(PROG)
        [rcpt] = groups[1:]
        self.assertEqual(rcpt["action"], "failed")
        self.assertEqual(rcpt["status"], "5.4.6")
        self.assertIn("mail forwarding loop for %s@mx.example.org" % ALICE,
                      rcpt["diagnostic-code"])
        self.wait_queue_empty()
        self.assertEqual(self.mailbox(ALICE), [])
        self.assertEqual(self.mailbox(BOB), [])
        self.assertRegex(self.mta.log(), r"%s: to=<%s@example\.org> expanded" % (qid, ALICE))


# --- 2. alias commands and files ----------------------------------------------------------------

class AliasTargets(ForwardTestCase):
    EXTRA = "retry_interval = 1s\nmax_retry_interval = 1s\nqueue_rescan = 1h\ndelay_warning = 0\n"

    def test_alias_command_runs_as_alias_program_user(self):
        qid = self.send(["prog@example.org"], "prog1", sender="%s@example.org" % BOB)
        seen = self.recorded("alias")
        self.assertEqual(seen["uid"], self.uid[PROG])
        self.assertEqual(seen["pwd"].strip(), b"/")
        self.assertEqual(seen["sender"], b"%s@example.org" % BOB.encode())
        self.assertEqual(seen["environ"]["RECIPIENT"], "prog@example.org")
        self.assertTrue(seen["stdin"].startswith(b"Return-Path: <%s@example.org>\n"
                                                 % BOB.encode()))
        self.assertIn(b"\nSubject: test prog1\n", seen["stdin"])
        self.wait_queue_empty()
        self.assertRegex(self.mta.log(), r'%s: to=<prog@example\.org> command "\|%s/record alias" '
                                         r'\(alias prog\) delivered' % (qid, re.escape(self.bin)))

    def test_mixed_alias_delivers_command_and_address(self):
        self.send(["both@example.org"], "both")
        seen = self.recorded("both")
        self.assertEqual(seen["uid"], self.uid[PROG])
        [raw] = self.wait_mail(BOB, 1)
        self.assertEqual(td.subject_token(raw), "both")
        self.wait_queue_empty()

    def test_sender_with_shell_metacharacters_is_never_executed(self):
        forms = ['"a$(touch${IFS}%s.q)b"@example.org' % PWNED,
                 "a`touch${IFS}%s.b`b@example.org" % PWNED,
                 '"x;touch %s.s;y"@example.org' % PWNED,
                 "a$(touch${IFS}%s.u)b@example.org" % PWNED]
        # alice runs the same kind of command from her .forward
        self.write_forward(ALICE, '"|%s/record fwdmeta $SENDER"\n' % self.bin)
        accepted = []
        for n, sender in enumerate(forms):
            with td.smtplib.SMTP("127.0.0.1", self.mta.port, timeout=20) as client:
                client.ehlo()
                # docmd: smtplib's mail() would take "(...)" for an RFC 822 comment and drop it.
                code, text = client.docmd("MAIL FROM:<%s>" % sender)
                if code != 250:
                    continue  # the SMTP parser refused it: nothing to deliver
                accepted.append(sender)
                for rcpt in ("meta@example.org", "%s@example.org" % ALICE):
                    code, text = client.docmd("RCPT TO:<%s>" % rcpt)
                    self.assertEqual(code, 250, text)
                code, text = client.data(td.make_message("meta%d" % n))
                self.assertEqual(code, 250, text)
            for name in ("meta", "fwdmeta"):
                seen = self.recorded(name)
                # The reverse path without its brackets, quotes and all, as SMTP gave it.
                self.assertEqual(seen["sender"].decode(), sender, name)
                # $SENDER unquoted in the command: split at blanks, never evaluated.
                self.assertEqual(seen["args"].decode().replace("\n", " ").strip(), sender, name)
                os.unlink(os.path.join(self.out, name + ".done"))
            self.wait_queue_empty()
        # The quoted form (RFC 5321 quoted-string) and the backtick one (all atext) are valid.
        self.assertIn(forms[0], accepted)
        self.assertIn(forms[1], accepted)
        self.assertIn(forms[2], accepted)
        self.assertNotIn(forms[3], accepted)  # '(' is no atext: refused by the SMTP parser
        for suffix in (".q", ".b", ".s", ".u"):
            self.assertFalse(os.path.exists(PWNED + suffix), PWNED + suffix)

    def test_exit_75_defers_and_is_retried(self):
        qid = self.send(["flaky@example.org"], "flaky", sender="%s@example.org" % BOB)

        def deferred():
            s = self.mta.state(qid)
            return s if s and s[0].get("STATE") == "deferred" else None
        state = td.wait_for(deferred, 10, "a deferral of " + qid)[0]
        self.assertIn("busy, try later", state["ERROR"])
        self.assertRegex(state["ERROR"], r"^4\.\d\.\d ")
        self.wait_queue_empty(timeout=15)
        with open(os.path.join(self.out, "flaky.count")) as f:
            self.assertEqual(f.read().strip(), "2")
        with open(os.path.join(self.out, "flaky.stdin.2"), "rb") as f:
            self.assertIn(b"Subject: test flaky\n", f.read())
        log = self.mta.log()
        self.assertRegex(log, r'%s: to=<flaky@example\.org> command "[^"]*flaky" \(alias flaky\) '
                              r'deferred: x-unix; command exited with status 75' % qid)
        self.assertRegex(log, r'%s: to=<flaky@example\.org> command "[^"]*flaky" \(alias flaky\) '
                              r'delivered' % qid)
        self.assertEqual(self.mailbox(BOB), [])  # no bounce, no warning

    def test_exit_67_bounces_with_the_output(self):
        self.send(["nouser@example.org"], "nouser", sender="%s@example.org" % BOB)
        [(msg, groups, returned)] = self.bounces(BOB)
        [rcpt] = groups[1:]
        self.assertEqual(rcpt["action"], "failed")
        self.assertEqual(rcpt["status"], "5.1.1")
        self.assertEqual(rcpt["final-recipient"], "rfc822; nouser@example.org")
        diagnostic = rcpt["diagnostic-code"]
        self.assertIn("command exited with status 67", diagnostic)
        self.assertIn("no such ticket queue: nouser@example.org", diagnostic)
        self.assertIn(b"nouser", returned.as_bytes())
        self.wait_queue_empty()

    def test_file_target_gets_the_message_in_mbox_format(self):
        self.send(["archive@example.org"], "arch1", sender="%s@example.org" % BOB,
                  extra_body="From the archive, with love\r\n>From quoted already\r\n")
        self.wait_queue_empty()
        self.send(["archive@example.org"], "arch2")
        self.wait_queue_empty()
        st = os.stat(self.archive)
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (self.uid[PROG], 0o600))
        with open(self.archive, "rb") as f:
            data = f.read()
        self.assertTrue(data.startswith(b"From %s@example.org " % BOB.encode()), data[:100])
        self.assertIn(b"\n>From the archive, with love\n>>From quoted already\n", data)
        self.assertNotIn(b"\r", data)
        mb = mailbox.mbox(self.archive, create=False)
        try:
            got = [mb.get_bytes(k) for k in mb.keys()]
        finally:
            mb.close()
        self.assertEqual([td.subject_token(m) for m in got], ["arch1", "arch2"])
        self.assertTrue(got[0].startswith(b"Return-Path: <%s@example.org>\n" % BOB.encode()))

    def test_file_target_that_is_a_symlink_is_refused(self):
        os.symlink("/etc/passwd", self.archive)
        with open("/etc/passwd", "rb") as f:
            before = f.read()
        self.send(["archive@example.org"], "evil", sender="%s@example.org" % BOB)
        [(msg, groups, returned)] = self.bounces(BOB)
        [rcpt] = groups[1:]
        self.assertEqual(rcpt["action"], "failed")
        self.assertIn("symbolic link", rcpt["diagnostic-code"])
        with open("/etc/passwd", "rb") as f:
            self.assertEqual(f.read(), before)
        self.wait_queue_empty()

    def test_dev_null_discards(self):
        qid = self.send(["devnull@example.org"], "void", sender="%s@example.org" % BOB)
        self.wait_queue_empty()
        time.sleep(0.3)
        self.assertEqual(self.mailbox(BOB), [])
        self.assertRegex(self.mta.log(), r"%s: removed" % qid)

    def test_commands_in_include_files_are_refused(self):
        self.send(["incprog@example.org"], "inc", sender="%s@example.org" % BOB)
        [(msg, groups, returned)] = self.bounces(BOB)
        [rcpt] = groups[1:]
        self.assertEqual(rcpt["status"], "5.7.1")
        self.assertIn(":include: files are not run", rcpt["diagnostic-code"])
        self.assertFalse(os.path.exists(os.path.join(self.out, "include.uid")))
        self.wait_queue_empty()


if __name__ == "__main__":
    harness.main()
