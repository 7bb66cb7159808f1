"""pop3d driven by real POP3 clients: Python's poplib (every command, STLS, POP3S, APOP,
AUTH PLAIN) and fetchmail, over mailboxes written by the real mda."""

import base64
import hashlib
import mailbox
import os
import poplib
import re
import shutil
import socket
import ssl
import subprocess
import time
import unittest

import harness

SENDER = "alice@example.org"


def stored_form(raw):
    """What mda stores and pop3d must serve: Return-Path, LF line ends, final newline."""
    text = raw.replace(b"\r\n", b"\n")
    if text and not text.endswith(b"\n"):
        text += b"\n"
    return b"Return-Path: <%s>\n" % SENDER.encode() + text


class Pop3dServer:
    def __init__(self, box, extra=""):
        self.box = box
        self.port = harness.free_port()
        self.tls_port = harness.free_port()
        self.cert, self.key = harness.make_certificate(box.etc)
        self.config = box.write("etc/pop3d.conf", (
            f"mail_spool = {box.mail}\naccounts = file\naccount_file = {box.users}\n"
            f"mail_group =\nlisten = 127.0.0.1:{self.port}\n"
            f"listen_tls = 127.0.0.1:{self.tls_port}\n"
            f"tls_certificate = {self.cert}\ntls_key = {self.key}\n"
            f"failed_login_delay = 0\n{extra}"))
        # The log goes to a file: a pipe nobody reads would stall the server once full.
        self.log_path = box.path("pop3d-%d.log" % self.port)
        with open(self.log_path, "wb") as log:
            self.proc = harness.Process([harness.binary("pop3d"), "-d", "-f", "-C", self.config],
                                        stderr=log)
        harness.wait_for_port(self.port, proc=self.proc.proc)

    def stop(self):
        return self.proc.stop()


class Pop3dTestCase(unittest.TestCase):
    EXTRA = ""
    APOP = False

    def setUp(self):
        self.box = harness.Sandbox()
        self.box.write("etc/users", "demo:{PLAIN}demopass\nbob:{PLAIN}bobpass\n")
        self.mda_config = self.box.write(
            "etc/mda.conf", f"mail_spool = {self.box.mail}\naccounts = file\n"
                            f"account_file = {self.box.users}\ntemp_dir = {self.box.tmp}\n"
                            "mail_group =\n")
        extra = self.EXTRA
        if self.APOP:
            secrets = self.box.write("etc/apop", "demo:apop-secret\n", mode=0o600)
            extra += f"apop_secrets = {secrets}\n"
        self.server = Pop3dServer(self.box, extra)
        self.addCleanup(self.box.cleanup)
        self.addCleanup(self.server.stop)

    def deliver(self, raw, user="demo"):
        r = harness.run([harness.binary("mda"), "-C", self.mda_config, "-f", SENDER, user],
                        stdin=raw)
        self.assertEqual(r.returncode, 0, r.stderr)

    def client(self, user="demo", password="demopass"):
        p = poplib.POP3("127.0.0.1", self.server.port, timeout=20)
        if user:
            p.user(user)
            p.pass_(password)
        return p

    def raw(self):
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=20)
        f = s.makefile("rb")
        self.assertTrue(f.readline().startswith(b"+OK"))
        return s, f

    def ask(self, sock, f, line):
        sock.sendall(line + b"\r\n")
        return f.readline()


MESSAGES = [
    b"Subject: one\r\n\r\nfirst body\r\n",
    b"Subject: two\n\nFrom the start\n>From quoted\n.leading dot\n..two dots\n.\n",
    b"Subject: three\n\n" + b"".join(b"line %d of a longer message\n" % i for i in range(2000)),
]


class Protocol(Pop3dTestCase):
    def setUp(self):
        super().setUp()
        for raw in MESSAGES:
            self.deliver(raw)

    def test_every_command_with_poplib(self):
        p = self.client()
        count, size = p.stat()
        self.assertEqual(count, 3)
        sizes = [len(stored_form(m).replace(b"\n", b"\r\n")) for m in MESSAGES]
        self.assertEqual(size, sum(sizes))
        resp, listing, _ = p.list()
        self.assertEqual([int(l.split()[1]) for l in listing], sizes)
        self.assertEqual(p.list(2), b"+OK 2 %d" % sizes[1])
        for i, raw in enumerate(MESSAGES, 1):
            resp, lines, octets = p.retr(i)
            self.assertEqual(b"\n".join(lines) + b"\n", stored_form(raw), i)
        resp, lines, _ = p.top(3, 5)
        self.assertEqual(lines[1], b"Subject: three")
        self.assertEqual(lines[3:], [b"line %d of a longer message" % i for i in range(5)])
        resp, uids, _ = p.uidl()
        uid_values = [u.split()[1] for u in uids]
        self.assertEqual(len(set(uid_values)), 3)
        self.assertEqual(p.uidl(1).split()[2], uid_values[0])
        self.assertTrue(p.noop().startswith(b"+OK"))
        p.dele(2)
        self.assertEqual(p.stat()[0], 2)
        with self.assertRaises(poplib.error_proto):
            p.retr(2)
        with self.assertRaises(poplib.error_proto):
            p.dele(2)
        p.rset()
        self.assertEqual(p.stat()[0], 3)
        caps = p.capa()
        for cap in ("TOP", "UIDL", "RESP-CODES", "PIPELINING", "USER", "AUTH-RESP-CODE"):
            self.assertIn(cap, caps)
        self.assertIn("IMPLEMENTATION", caps)
        p.dele(1)
        p.quit()
        p = self.client()
        self.assertEqual(p.stat()[0], 2)
        resp, uids, _ = p.uidl()
        # UIDs survive the deletion of another message.
        self.assertEqual([u.split()[1] for u in uids], uid_values[1:])
        p.quit()
        # And the mailbox is still an mbox Python reads, without message one.
        box = mailbox.mbox(os.path.join(self.box.mail, "demo"), create=False)
        self.assertEqual([m["Subject"] for m in box], ["two", "three"])
        box.close()

    def test_stls_and_pop3s(self):
        ctx = ssl.create_default_context(cafile=self.server.cert)
        p = poplib.POP3("127.0.0.1", self.server.port, timeout=20)
        self.assertIn("STLS", p.capa())
        p.stls(context=ctx)
        self.assertNotIn("STLS", p.capa())
        p.user("demo")
        p.pass_("demopass")
        self.assertEqual(p.stat()[0], 3)
        resp, lines, _ = p.retr(2)
        self.assertEqual(b"\n".join(lines) + b"\n", stored_form(MESSAGES[1]))
        p.quit()
        s = poplib.POP3_SSL("127.0.0.1", self.server.tls_port, context=ctx, timeout=20)
        s.user("demo")
        s.pass_("demopass")
        resp, lines, _ = s.retr(3)
        self.assertEqual(b"\n".join(lines) + b"\n", stored_form(MESSAGES[2]))
        self.assertNotIn("STLS", s.capa())
        s.quit()

    def test_stls_discards_injected_plaintext(self):
        sock, f = self.raw()
        sock.sendall(b"STLS\r\nUSER demo\r\nPASS demopass\r\n")
        self.assertTrue(f.readline().startswith(b"+OK"))
        ctx = ssl.create_default_context(cafile=self.server.cert)
        tls = ctx.wrap_socket(sock, server_hostname="localhost")
        tf = tls.makefile("rb")
        tls.sendall(b"STAT\r\n")
        # Had USER/PASS been taken from before TLS, STAT would work.
        self.assertTrue(tf.readline().startswith(b"-ERR"))
        tls.close()

    def test_auth_plain(self):
        p = self.client(user=None)
        resp = p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0demo\0demopass").decode())
        self.assertTrue(resp.startswith(b"+OK"))
        self.assertEqual(p.stat()[0], 3)
        p.quit()

    def test_wrong_state_and_bad_arguments(self):
        sock, f = self.raw()
        for cmd in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"UIDL", b"TOP 1 1", b"RSET", b"PASS x"):
            self.assertTrue(self.ask(sock, f, cmd).startswith(b"-ERR"), cmd)
        self.assertTrue(self.ask(sock, f, b"USER demo").startswith(b"+OK"))
        self.assertTrue(self.ask(sock, f, b"PASS demopass").startswith(b"+OK"))
        for cmd in (b"LIST 0", b"LIST 4294967297", b"RETR -1", b"RETR 1x", b"TOP 1", b"DELE 9",
                    b"USER demo", b"PASS x", b"RETR 1\0"):
            self.assertTrue(self.ask(sock, f, cmd).startswith(b"-ERR"), cmd)
        self.assertTrue(self.ask(sock, f, b"X" * 5000).startswith(b"-ERR"))
        self.assertTrue(self.ask(sock, f, b"NOOP").startswith(b"+OK"))
        self.assertTrue(self.ask(sock, f, b"QUIT").startswith(b"+OK"))
        sock.close()

    def test_unknown_user_and_wrong_password_look_the_same(self):
        replies = []
        for user, password in ((b"demo", b"wrong"), (b"nosuchuser", b"wrong")):
            sock, f = self.raw()
            replies.append((self.ask(sock, f, b"USER " + user), self.ask(sock, f, b"PASS " + password)))
            sock.close()
        self.assertEqual(replies[0], replies[1])
        self.assertTrue(replies[0][1].startswith(b"-ERR [AUTH]"))

    def test_pipelined_commands_are_answered_in_order(self):
        sock, f = self.raw()
        sock.sendall(b"USER demo\r\nPASS demopass\r\nSTAT\r\nRETR 1\r\nNOOP\r\nQUIT\r\n")
        self.assertTrue(f.readline().startswith(b"+OK"))
        self.assertTrue(f.readline().startswith(b"+OK"))
        self.assertTrue(f.readline().startswith(b"+OK 3 "))
        self.assertTrue(f.readline().startswith(b"+OK"))
        body = []
        while True:
            line = f.readline()
            if line == b".\r\n":
                break
            body.append(line)
        self.assertEqual(b"".join(body), stored_form(MESSAGES[0]).replace(b"\n", b"\r\n"))
        self.assertTrue(f.readline().startswith(b"+OK"))
        self.assertTrue(f.readline().startswith(b"+OK"))
        sock.close()


class Apop(Pop3dTestCase):
    APOP = True

    def test_apop_login(self):
        self.deliver(MESSAGES[0])
        p = poplib.POP3("127.0.0.1", self.server.port, timeout=20)
        self.assertRegex(p.getwelcome(), rb"<[^>]+@[^>]+>$")
        p.apop("demo", "apop-secret")
        self.assertEqual(p.stat()[0], 1)
        p.quit()
        p = poplib.POP3("127.0.0.1", self.server.port, timeout=20)
        with self.assertRaises(poplib.error_proto):
            p.apop("demo", "wrong-secret")
        p.quit()


class Maildrops(Pop3dTestCase):
    def test_dropped_connection_deletes_nothing(self):
        for raw in MESSAGES:
            self.deliver(raw)
        before = open(os.path.join(self.box.mail, "demo"), "rb").read()
        sock, f = self.raw()
        for cmd in (b"USER demo", b"PASS demopass", b"DELE 1", b"DELE 2"):
            self.assertTrue(self.ask(sock, f, cmd).startswith(b"+OK"))
        # A file made by makefile() keeps the socket open: shut the connection down for real.
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        f.close()
        time.sleep(0.3)
        p = self.client()
        self.assertEqual(p.stat()[0], 3)
        p.quit()
        self.assertEqual(open(os.path.join(self.box.mail, "demo"), "rb").read(), before)

    def test_mail_arriving_mid_session_survives_dele_and_quit(self):
        for raw in MESSAGES[:2]:
            self.deliver(raw)
        p = self.client()
        self.assertEqual(p.stat()[0], 2)
        p.dele(1)
        # Delivery is not blocked by the open session.
        self.deliver(b"Subject: arrived during the session\n\nnew\n")
        self.assertEqual(p.stat()[0], 1)  # the session's view does not change
        p.quit()
        p = self.client()
        resp, lines, _ = p.retr(2)
        self.assertIn(b"Subject: arrived during the session", lines)
        self.assertEqual(p.stat()[0], 2)
        p.quit()

    def test_second_login_gets_in_use(self):
        self.deliver(MESSAGES[0])
        first = self.client()
        second = poplib.POP3("127.0.0.1", self.server.port, timeout=20)
        second.user("demo")
        with self.assertRaises(poplib.error_proto) as cm:
            second.pass_("demopass")
        self.assertIn(b"[IN-USE]", cm.exception.args[0])
        first.quit()
        third = self.client()
        self.assertEqual(third.stat()[0], 1)
        third.quit()

    def test_empty_and_missing_mailbox(self):
        p = self.client("bob", "bobpass")
        self.assertEqual(p.stat(), (0, 0))
        p.quit()

    def test_uids_are_stable_across_new_mail(self):
        self.deliver(MESSAGES[0])
        p = self.client()
        first = p.uidl()[1]
        p.quit()
        self.deliver(MESSAGES[1])
        p = self.client()
        second = p.uidl()[1]
        p.quit()
        self.assertEqual(second[0], first[0])
        self.assertEqual(len(second), 2)


class MaildirMailboxes(Pop3dTestCase):
    MAILDIR = "mailbox_format = maildir\nmaildir = {root}/maildirs/%u\n"

    def setUp(self):
        self.EXTRA = self.MAILDIR.format(root="/tmp/placeholder")
        super().setUp()

    def test_fetch_and_delete_from_a_maildir(self):
        # Point mda and pop3d at the same Maildir root inside this test's sandbox.
        self.server.stop()
        maildir_conf = self.MAILDIR.format(root=self.box.root)
        with open(self.mda_config, "a") as f:
            f.write(maildir_conf)
        self.server = Pop3dServer(self.box, maildir_conf)
        self.addCleanup(self.server.stop)
        for raw in MESSAGES:
            self.deliver(raw)
        p = self.client()
        count, size = p.stat()
        self.assertEqual(count, 3)
        self.assertEqual(size, sum(len(stored_form(m).replace(b"\n", b"\r\n")) for m in MESSAGES))
        for i, raw in enumerate(MESSAGES, 1):
            self.assertEqual(b"\n".join(p.retr(i)[1]) + b"\n", stored_form(raw))
        uids = p.uidl()[1]
        p.dele(2)
        p.quit()
        p = self.client()
        self.assertEqual(p.stat()[0], 2)
        self.assertEqual(p.uidl()[1][1].split()[1], uids[2].split()[1])
        p.quit()
        cur = os.listdir(os.path.join(self.box.root, "maildirs", "demo", "cur"))
        self.assertEqual(len(cur), 2)


class Inetd(unittest.TestCase):
    """One session on standard input, as inetd runs it."""

    def test_session_on_stdin(self):
        box = harness.Sandbox()
        self.addCleanup(box.cleanup)
        box.write("etc/users", "demo:{PLAIN}demopass\n")
        conf = box.write("etc/pop3d.conf", f"mail_spool = {box.mail}\naccounts = file\n"
                                           f"account_file = {box.users}\nmail_group =\n")
        mconf = box.write("etc/mda.conf", f"mail_spool = {box.mail}\naccounts = file\n"
                                          f"account_file = {box.users}\ntemp_dir = {box.tmp}\n"
                                          "mail_group =\n")
        harness.run([harness.binary("mda"), "-C", mconf, "-f", SENDER, "demo"],
                    stdin=MESSAGES[0])
        ours, theirs = socket.socketpair()
        proc = harness.Process([harness.binary("pop3d"), "-C", conf], stdin=theirs, stdout=theirs)
        self.addCleanup(proc.stop)
        theirs.close()
        ours.settimeout(20)
        f = ours.makefile("rb")
        self.assertTrue(f.readline().startswith(b"+OK"))
        ours.sendall(b"USER demo\r\nPASS demopass\r\nSTAT\r\nQUIT\r\n")
        replies = [f.readline() for _ in range(4)]
        self.assertTrue(all(r.startswith(b"+OK") for r in replies), replies)
        self.assertTrue(replies[2].startswith(b"+OK 1 "))
        self.assertEqual(proc.proc.wait(timeout=10), 0)
        f.close()
        ours.close()


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("useradd") and shutil.which("chpasswd"),
                     "needs root, useradd and chpasswd")
class SystemAccounts(unittest.TestCase):
    """Real system accounts through PAM, with privilege separation."""

    def setUp(self):
        self.box = harness.Sandbox()
        self.addCleanup(self.box.cleanup)
        os.chmod(self.box.mail, 0o1777)
        self.user = "mwp%d" % (os.getpid() % 100000)
        subprocess.run(["userdel", self.user], capture_output=True)
        r = subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", self.user], capture_output=True)
        if r.returncode != 0:
            self.skipTest("useradd failed: " + r.stderr.decode())
        self.addCleanup(subprocess.run, ["userdel", self.user], capture_output=True)
        subprocess.run(["chpasswd"], input=b"%s:Correct-Horse-1\n" % self.user.encode(),
                       check=True, capture_output=True)
        mconf = self.box.write("etc/mda.conf", f"mail_spool = {self.box.mail}\n"
                                               f"temp_dir = {self.box.tmp}\n")
        for raw in MESSAGES[:2]:
            r = harness.run([harness.binary("mda"), "-C", mconf, "-f", SENDER, self.user],
                            stdin=raw)
            self.assertEqual(r.returncode, 0, r.stderr)
        self.port = harness.free_port()
        conf = self.box.write("etc/pop3d.conf", f"mail_spool = {self.box.mail}\n"
                                                f"listen = 127.0.0.1:{self.port}\n"
                                                "run_as = nobody\nfailed_login_delay = 0\n")
        self.server = harness.Process([harness.binary("pop3d"), "-d", "-f", "-C", conf],
                                      stderr=subprocess.DEVNULL)
        self.addCleanup(self.server.stop)
        harness.wait_for_port(self.port, proc=self.server.proc)

    def processes_of(self, uid):
        pids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/status") as f:
                    status = f.read()
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            real_uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
            if real_uid == uid and b"pop3d" in cmd:
                pids.append(int(pid))
        return pids

    def test_login_through_pam_runs_the_session_as_the_user(self):
        import pwd
        uid = pwd.getpwnam(self.user).pw_uid
        p = poplib.POP3("127.0.0.1", self.port, timeout=20)
        p.user(self.user)
        with self.assertRaises(poplib.error_proto):
            p.pass_("wrong password")
        p = poplib.POP3("127.0.0.1", self.port, timeout=20)
        p.user(self.user)
        p.pass_("Correct-Horse-1")
        self.assertEqual(p.stat()[0], 2)
        # The session is served by a process of the user's; the network side is nobody's.
        self.assertTrue(self.processes_of(uid), "no pop3d process runs as the user")
        self.assertTrue(self.processes_of(pwd.getpwnam("nobody").pw_uid))
        resp, lines, _ = p.retr(2)
        self.assertEqual(b"\n".join(lines) + b"\n", stored_form(MESSAGES[1]))
        p.dele(1)
        p.quit()
        p = poplib.POP3("127.0.0.1", self.port, timeout=20)
        p.user(self.user)
        p.pass_("Correct-Horse-1")
        self.assertEqual(p.stat()[0], 1)
        p.quit()

    def test_root_cannot_log_in(self):
        p = poplib.POP3("127.0.0.1", self.port, timeout=20)
        p.user("root")
        with self.assertRaises(poplib.error_proto):
            p.pass_("anything")
        p.quit()


@unittest.skipUnless(shutil.which("fetchmail"), "fetchmail not installed")
class Fetchmail(Pop3dTestCase):
    def fetch(self, out_dir, idfile):
        rc = self.box.write("etc/fetchmailrc",
                            f"poll 127.0.0.1 port {self.server.port} protocol POP3 uidl\n"
                            f"  user demo password demopass is root here\n"
                            f"  sslproto '' keep\n"
                            f"  mda \"/usr/bin/python3 {self.box.path('save.py')} {out_dir}\"\n",
                            mode=0o600)
        env = dict(os.environ, HOME=self.box.root)
        return harness.run(["fetchmail", "-f", rc, "--idfile", idfile, "--nodetach",
                            "--nosyslog", "--norewrite"], env=env, timeout=60)

    def test_keep_twice_fetches_each_message_once(self):
        self.box.write("save.py",
                       "import os, sys\nd = sys.argv[1]\ndata = sys.stdin.buffer.read()\n"
                       "n = len(os.listdir(d))\nopen(os.path.join(d, '%03d' % n), 'wb').write(data)\n")
        out = self.box.path("fetched")
        os.mkdir(out)
        idfile = self.box.path("fetchids")
        for raw in MESSAGES:
            self.deliver(raw)
        r = self.fetch(out, idfile)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(len(os.listdir(out)), 3)
        r = self.fetch(out, idfile)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)  # 1: no new mail
        self.assertEqual(len(os.listdir(out)), 3)
        # What fetchmail handed on is what mda stored (fetchmail adds its own Received line).
        for name, raw in zip(sorted(os.listdir(out)), MESSAGES):
            got = open(os.path.join(out, name), "rb").read().replace(b"\r\n", b"\n")
            got = re.sub(rb"^Received: from 127\.0\.0\.1.*?\n(?=\S)", b"", got, flags=re.S)
            self.assertEqual(got, stored_form(raw))
        self.deliver(b"Subject: four\n\nnew one\n")
        r = self.fetch(out, idfile)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(len(os.listdir(out)), 4)


if __name__ == "__main__":
    harness.main()
