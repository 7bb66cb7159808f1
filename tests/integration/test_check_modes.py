#!/usr/bin/env python3
"""mda -n and pop3d -n on a real mail directory: a sound one passes, and a planted symbolic
link, a mailbox others may read, a mailbox of the wrong owner and a directory anyone may
write in are each reported with the command that mends them, by both programs alike."""

import os
import pwd
import unittest

import harness


def owner():
    """The Unix user of the virtual mailboxes: never root, which the checks rightly refuse."""
    if os.geteuid() == 0:
        return pwd.getpwnam("nobody")
    return pwd.getpwuid(os.geteuid())


class CheckModes(unittest.TestCase):
    def setUp(self):
        self.box = harness.Sandbox()
        self.user = owner()
        self.box.write("etc/users", "alice:{PLAIN}a\nbob:{PLAIN}b\n")
        common = ("accounts = file\naccount_file = %s\nvirtual_owner = %s\nmail_spool = %s\n"
                  "mail_group =\n" % (self.box.users, self.user.pw_name, self.box.mail))
        self.mda_conf = self.box.write("etc/mda.conf", common + "temp_dir = %s\n" % self.box.tmp)
        self.pop3d_conf = self.box.write("etc/pop3d.conf", common)
        os.chmod(self.box.mail, 0o755)
        self.mailbox("alice", 0o600)

    def tearDown(self):
        self.box.cleanup()

    def mailbox(self, name, mode, uid=None):
        path = os.path.join(self.box.mail, name)
        with open(path, "w") as f:
            f.write("")
        os.chmod(path, mode)
        if os.geteuid() == 0:
            os.chown(path, self.user.pw_uid if uid is None else uid, -1)
        return path

    def own_spool(self):
        if os.geteuid() == 0:
            os.chown(self.box.mail, self.user.pw_uid, self.user.pw_gid)

    def check(self, program, conf):
        proc = harness.run([harness.binary(program), "-n", "-C", conf])
        return proc.returncode, proc.stdout.decode()

    def both(self):
        return {"mda": self.check("mda", self.mda_conf),
                "pop3d": self.check("pop3d", self.pop3d_conf)}

    def test_a_sound_mail_directory_passes(self):
        self.own_spool()
        for program, (status, out) in self.both().items():
            self.assertEqual(status, 0, "%s -n: %s" % (program, out))
            self.assertIn("%s: configuration OK" % program, out)

    def test_each_problem_is_named_with_its_fix(self):
        self.own_spool()
        os.symlink("/etc/passwd", os.path.join(self.box.mail, "bob"))
        self.mailbox("alice", 0o660)
        for program, (status, out) in self.both().items():
            self.assertEqual(status, 78, "%s -n: %s" % (program, out))
            bob = os.path.join(self.box.mail, "bob")
            alice = os.path.join(self.box.mail, "alice")
            self.assertIn("problem: %s is a symbolic link" % bob, out)
            self.assertIn("  fix: rm %s" % bob, out)
            self.assertIn("problem: %s is readable or writable by its group or others (mode 0660)"
                          % alice, out)
            self.assertIn("  fix: chmod 600 %s" % alice, out)
            self.assertNotIn("configuration OK", out)

    def test_a_directory_anyone_may_write_in_is_a_problem(self):
        self.own_spool()
        os.chmod(self.box.mail, 0o777)
        for program, (status, out) in self.both().items():
            self.assertEqual(status, 78, "%s -n: %s" % (program, out))
            self.assertIn("is writable by everyone without the sticky bit", out)
            self.assertIn("  fix: chmod o-w %s" % self.box.mail, out)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to make a file of another user")
    def test_a_mailbox_of_another_user_is_a_problem(self):
        self.own_spool()
        self.mailbox("alice", 0o600, uid=0)
        for program, (status, out) in self.both().items():
            self.assertEqual(status, 78, "%s -n: %s" % (program, out))
            self.assertIn("fix: chown %s %s" % (self.user.pw_name,
                                                os.path.join(self.box.mail, "alice")), out)


if __name__ == "__main__":
    harness.main()
