"""The Debian package as an administrator meets it.

The source tree is copied (without build/ and .git) into the build directory and built with
dpkg-buildpackage, once per run. lintian must find no error in it, and the package must hold
the programs, the names other software calls the MTA by, the manual pages with their links,
the units and the conffiles. The programs, extracted with dpkg -x, run here through those
names.

Then the package is installed with dpkg into a minimal Debian made by debootstrap, kept as a
tarball under the build directory so that only the first run downloads it. There the
maintainer scripts must have made the user and the spool and /etc/aliases, and the installed
programs run: mta -bV, mailq, sendmail -bp, newaliases, pop3d -n, and the daemon, to which a
client outside sends a message for a local user and one for postmaster (an alias in the
/etc/aliases the package made). Removal keeps the spool and the configuration; a purge leaves
nothing of the package behind. Without root, debootstrap or a reachable mirror that part is
skipped, and says why."""

import glob
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import stat
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import harness

PACKAGE = "mailwright"
MAIL_USER = "mailwright"
SPOOL = "/var/spool/mailwright"
CONFFILES = ["/etc/mailwright/mda.conf", "/etc/mailwright/mta.conf", "/etc/mailwright/pop3d.conf"]

# The whole tree is compiled with -O2 on a small machine; a warm ccache makes it seconds.
# Bounds below the ctest TIMEOUT (tests/CMakeLists.txt), so that an overrun still cleans up.
BUILD_TIMEOUT = 420
DEBOOTSTRAP_TIMEOUT = 300


def note(text):
    """Progress and timings in the test's output, which ctest keeps."""
    print("test_package: " + text, file=sys.stderr, flush=True)


def makefile_inc(key):
    with open(os.path.join(harness.SOURCE, "Makefile.inc")) as f:
        for line in f:
            m = re.match(r"^%s\s*=\s*(.*?)\s*$" % key, line)
            if m:
                return m.group(1)
    raise AssertionError("Makefile.inc has no " + key)


class Overrun(AssertionError):
    """A command ran past its bound, and was stopped."""


def run_group(argv, timeout, log=None, **kw):
    """Runs a command that starts many of its own (a package build, debootstrap) in a process
    group of its own, so that a timeout stops all of them, by the group of the PID we started.
    Output goes to log (a path) when given. Returns the exit status."""
    out = open(log, "wb") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, **kw)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            raise Overrun("%s took more than %ds, and was stopped" % (argv[0], timeout))
    finally:
        if log:
            out.close()


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def unmount_below(path):
    """Unmounts whatever is mounted at or below path, deepest first."""
    prefix = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    for point in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")),
                        key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)


def remove_tree(path):
    """rm -rf that never crosses into a file system still mounted inside (a root's /proc)."""
    if os.path.lexists(path):
        unmount_below(path)
        subprocess.run(["rm", "-rf", "--one-file-system", path], capture_output=True, timeout=120)


def processes_rooted_at(root):
    """PIDs of processes whose root directory is root: what a chroot left running."""
    root = os.path.realpath(root)
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.readlink("/proc/%s/root" % pid) == root:
                    found.append(int(pid))
            except OSError:
                pass
    return found


def deb_contents(deb):
    """{path: link target or None} of every file in the package, paths absolute."""
    out = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    entries = {}
    for line in out.splitlines():
        m = re.match(r"^(\S+)\s+\S+\s+\d+\s+\S+\s+\S+\s+\.(/\S*?)/?(?: -> (\S+))?$", line)
        if m and m.group(2) != "":
            entries[m.group(2)] = m.group(3)
    return entries


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def relation_names(value):
    """Package names of a Depends value: the first of each alternative, without versions."""
    names = []
    for item in value.split(","):
        first = item.split("|")[0].strip()
        if first:
            names.append(re.split(r"[\s(:]", first)[0])
    return names


def debian_mirror(suite):
    """The Debian mirror apt uses here for suite, from sources.list or deb822 .sources files."""
    paths = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*"))
    for path in paths:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
                if ("deb" in fields.get("Types", "").split()
                        and suite in fields.get("Suites", "").split() and fields.get("URIs")):
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                    return words[1]
    return "http://deb.debian.org/debian"


def os_codename():
    try:
        with open("/etc/os-release") as f:
            m = re.search(r"^VERSION_CODENAME=\"?(\w+)", f.read(), re.M)
            if m:
                return m.group(1)
    except OSError:
        pass
    return "bookworm"


class Package(unittest.TestCase):
    deb = None
    changes = None

    @classmethod
    def setUpClass(cls):
        missing = [tool for tool in ("dpkg-buildpackage", "dh", "dpkg-deb", "lintian")
                   if shutil.which(tool) is None]
        if missing:
            raise unittest.SkipTest("missing %s: run tools/deps test" % " ".join(missing))
        cls.version = makefile_inc("VERSION")
        cls.work = os.path.join(harness.BUILD, "pkgbuild")
        cls.deb, cls.changes = cls.build_package()

    # --- building -----------------------------------------------------------------------------

    @classmethod
    def build_package(cls):
        """Builds the package from a copy of the source tree: dpkg-buildpackage writes beside
        the tree it builds, and must not write into the sources. The copy is always at the
        same path, so that ccache finds its earlier work (the path is in the compiler flags)."""
        os.makedirs(cls.work, exist_ok=True)
        src = os.path.join(cls.work, PACKAGE)
        remove_tree(src)
        for old in glob.glob(os.path.join(cls.work, PACKAGE + "*_*")):
            os.remove(old)

        source = harness.SOURCE

        def ignore(directory, names):
            skipped = {"__pycache__"}
            if os.path.abspath(directory) == source:
                skipped |= {"build", ".git", "sandbox"} | {n for n in names
                                                           if n.startswith("obj-")}
            if os.path.abspath(directory) == os.path.join(source, "debian"):
                # What an earlier build in the tree itself may have left.
                skipped |= {".debhelper", PACKAGE, "tmp", "files", "debhelper-build-stamp"}
                skipped |= {n for n in names if n.endswith((".substvars", ".debhelper.log"))}
            return [n for n in names if n in skipped
                    or os.path.join(os.path.abspath(directory), n) == harness.BUILD]

        shutil.copytree(source, src, symlinks=True, ignore=ignore)

        env = dict(os.environ, LC_ALL="C.UTF-8",
                   DEB_BUILD_OPTIONS="parallel=%d noautodbgsym" % (os.cpu_count() or 1))
        if os.path.isdir("/usr/lib/ccache"):
            env["PATH"] = "/usr/lib/ccache:" + env.get("PATH", "/usr/bin:/bin")
            env["CCACHE_DIR"] = os.path.join(cls.work, "ccache")
            env["CCACHE_MAXSIZE"] = "1G"  # a few builds of the tree
        log = os.path.join(cls.work, "build.log")
        started = time.monotonic()
        status = run_group(["dpkg-buildpackage", "-b", "-us", "-uc"], BUILD_TIMEOUT, log=log,
                           cwd=src, env=env)
        if status != 0:
            raise AssertionError("dpkg-buildpackage failed (%d); the end of %s:\n%s"
                                 % (status, log, tail(log)))
        note("package built in %.0fs%s" % (time.monotonic() - started,
                                           " (with ccache)" if "CCACHE_DIR" in env else ""))
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
        deb = os.path.join(cls.work, "%s_%s_%s.deb" % (PACKAGE, cls.version, arch))
        changes = os.path.join(cls.work, "%s_%s_%s.changes" % (PACKAGE, cls.version, arch))
        if not os.path.exists(deb):
            raise AssertionError("no %s; debian/changelog and Makefile.inc disagree on the "
                                 "version? Built: %s" % (deb, os.listdir(cls.work)))
        remove_tree(src)
        return deb, changes

    # --- the package file ---------------------------------------------------------------------

    def test_lintian_finds_no_error(self):
        started = time.monotonic()
        r = harness.run(["lintian", "--display-info", "--display-experimental", "--pedantic",
                         self.changes], timeout=300, env=dict(os.environ, LC_ALL="C.UTF-8"))
        out = r.stdout.decode(errors="replace")
        note("lintian in %.0fs:\n%s" % (time.monotonic() - started, out or "(nothing)\n"))
        errors = [line for line in out.splitlines() if line.startswith("E:")]
        self.assertEqual(errors, [], out)
        self.assertIn(r.returncode, (0, 1), r.stderr.decode(errors="replace"))

    def test_control_fields(self):
        self.assertEqual(deb_field(self.deb, "Package"), PACKAGE)
        self.assertEqual(deb_field(self.deb, "Version"), self.version)
        for field in ("Provides", "Conflicts", "Replaces"):
            self.assertEqual(relation_names(deb_field(self.deb, field)),
                             ["mail-transport-agent"], field)
        self.assertIn("adduser", relation_names(deb_field(self.deb, "Depends")))

    def test_contents(self):
        files = deb_contents(self.deb)
        for program in ("/usr/sbin/mta", "/usr/sbin/pop3d", "/usr/libexec/mailwright/mda"):
            self.assertIn(program, files)
            self.assertIsNone(files[program], program + " must be the program, not a link")
        links = {
            "/usr/sbin/sendmail": "mta",
            "/usr/bin/mailq": "../sbin/mta",
            "/usr/bin/newaliases": "../sbin/mta",
            "/usr/lib/sendmail": "../sbin/sendmail",
            "/usr/share/man/man8/sendmail.8.gz": "mta.8.gz",
            "/usr/share/man/man8/newaliases.8.gz": "mta.8.gz",
            "/usr/share/man/man1/mailq.1.gz": "../man8/mta.8.gz",
        }
        for path, target in links.items():
            self.assertEqual(files.get(path, "(missing)"), target, path)
            # Every link lands on a file of the package.
            self.assertIn(os.path.normpath(os.path.join(os.path.dirname(path), target)), files)
        for page in ("man8/mta.8.gz", "man8/mda.8.gz", "man8/pop3d.8.gz", "man5/aliases.5.gz",
                     "man5/mta.conf.5.gz", "man5/pop3d.conf.5.gz"):
            self.assertIn("/usr/share/man/" + page, files)
        for path in CONFFILES + ["/lib/systemd/system/mailwright-mta.service",
                                 "/lib/systemd/system/mailwright-pop3d.service",
                                 "/usr/share/mailwright/aliases",
                                 "/usr/share/doc/mailwright/copyright",
                                 "/usr/share/doc/mailwright/examples/inetd.conf"]:
            self.assertIn(path, files)
        # Made on the target system by postinst, never shipped: /etc/aliases may come from
        # another MTA, and the spool's owner does not exist when the package is built.
        self.assertNotIn("/etc/aliases", files)
        self.assertFalse([p for p in files if p.startswith(SPOOL)])

    def test_conffiles_and_maintainer_scripts(self):
        box = harness.Sandbox(prefix="mw-pkgctl-")
        self.addCleanup(box.cleanup)
        control = box.path("control")
        subprocess.run(["dpkg-deb", "-e", self.deb, control], check=True, timeout=60)
        with open(os.path.join(control, "conffiles")) as f:
            self.assertEqual(sorted(f.read().split()), CONFFILES)
        for script in ("postinst", "postrm", "prerm"):
            path = os.path.join(control, script)
            self.assertTrue(os.path.exists(path), script)
            r = harness.run(["sh", "-n", path])
            self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(control, "postinst")) as f:
            postinst = f.read()
        self.assertIn("adduser --system", postinst)
        self.assertIn("mailwright-mta.service", postinst)
        # The units use the installed paths.
        unit = self.extract_file(box, "/lib/systemd/system/mailwright-mta.service")
        self.assertRegex(unit, r"(?m)^ExecStart=/usr/sbin/mta -bD$")
        inetd = self.extract_file(box, "/usr/share/doc/mailwright/examples/inetd.conf")
        self.assertRegex(inetd,
                         r"(?m)^smtp\s+stream\s+tcp\s+nowait\s+\S+\s+/usr/sbin/mta\s+mta -bs$")

    def extract_file(self, box, path):
        tree = box.path("x")
        if not os.path.isdir(tree):
            subprocess.run(["dpkg-deb", "-x", self.deb, tree], check=True, timeout=60)
        with open(tree + path) as f:
            return f.read()

    def test_extracted_programs_answer_to_their_names(self):
        """The programs from the package, run here by the names the package gives them."""
        box = harness.Sandbox(prefix="mw-pkgx-")
        self.addCleanup(box.cleanup)
        tree = box.path("x")
        subprocess.run(["dpkg-deb", "-x", self.deb, tree], check=True, timeout=60)
        spool = box.path("spool")
        os.mkdir(spool, 0o711)
        as_root = os.geteuid() == 0
        # This host need not have the mail user: as root mta becomes nobody for the spool,
        # otherwise it stays who it is, and -bV checks that user.
        run_as = "nobody" if as_root else pwd.getpwuid(os.geteuid()).pw_name
        if as_root:
            nobody = pwd.getpwnam("nobody")
            os.chown(spool, nobody.pw_uid, nobody.pw_gid)
        # mda is where dpkg -x put it, not where the package installs it (-bV checks it).
        conf = box.write("mta.conf",
                         "hostname = pkgtest.example\nspool_dir = %s\naliases = %s\n"
                         "run_as = %s\nmda = %s\n"
                         % (spool, tree + "/usr/share/mailwright/aliases", run_as,
                            tree + "/usr/libexec/mailwright/mda"))

        def run(name, *args):
            r = harness.run([tree + name, "-C", conf] + list(args))
            self.assertEqual(r.returncode, 0, (name, r.stdout, r.stderr))
            return r.stdout.decode()

        # Listing the queue makes the spool's directories, which -bV then wants to see.
        self.assertEqual(run("/usr/bin/mailq"), "Mail queue is empty\n")
        self.assertEqual(run("/usr/sbin/sendmail", "-bp"), "Mail queue is empty\n")
        self.assertEqual(run("/usr/lib/sendmail", "-bp"), "Mail queue is empty\n")
        self.assertIn("configuration OK", run("/usr/sbin/mta", "-bV"))
        self.assertRegex(run("/usr/bin/newaliases"), r"/aliases: \d+ aliases\n")
        if as_root:
            # pop3d checks system accounts only as root, which it needs to serve them.
            os.chmod(box.mail, 0o1777)  # users make their dotlocks there
            pconf = box.write("pop3d.conf", "mail_spool = %s\nrun_as = nobody\n" % box.mail)
            r = harness.run([tree + "/usr/sbin/pop3d", "-C", pconf, "-n"])
            self.assertEqual(r.returncode, 0, (r.stdout, r.stderr))

    # --- installed into a Debian root ---------------------------------------------------------

    def base_tarball(self, needed):
        """A minbase Debian with the packages needed, as a tarball kept in the build directory:
        made by debootstrap when there is none yet or it lacks one of them. Returns its path,
        or skips the test with the reason."""
        roots = os.path.join(harness.BUILD, "pkgroot")
        os.makedirs(roots, exist_ok=True)
        suite = os_codename()
        tarball = os.path.join(roots, "%s-minbase.tar" % suite)
        stamp = tarball + ".json"
        try:
            with open(stamp) as f:
                made = json.load(f)
            if (os.path.exists(tarball) and made.get("suite") == suite
                    and set(needed) <= set(made.get("include", []))):
                note("Debian root from the cache %s" % tarball)
                return tarball
        except (OSError, ValueError):
            pass
        if shutil.which("debootstrap") is None:
            self.skipTest("no debootstrap (tools/deps test installs it): the package was not "
                          "installed anywhere")
        mirror = debian_mirror(suite)
        release = "%s/dists/%s/InRelease" % (mirror.rstrip("/"), suite)
        try:
            # A mirror out of reach would keep debootstrap retrying until its bound: ask first.
            urllib.request.urlopen(release, timeout=15).close()
        except (OSError, ValueError) as e:
            self.skipTest("the mirror does not answer (%s: %s), so the package was not "
                          "installed anywhere" % (release, e))
        target = tempfile.mkdtemp(dir=roots, prefix="debootstrap-")
        log = os.path.join(roots, "debootstrap.log")
        started = time.monotonic()
        try:
            try:
                status = run_group(["debootstrap", "--variant=minbase",
                                    "--include=" + ",".join(sorted(needed)), suite, target,
                                    mirror], DEBOOTSTRAP_TIMEOUT, log=log)
            except Overrun as e:
                self.skipTest("%s (mirror %s), so the package was not installed anywhere"
                              % (e, mirror))
            if status != 0:
                self.skipTest("debootstrap %s from %s failed (%d), so the package was not "
                              "installed anywhere; the end of %s:\n%s"
                              % (suite, mirror, status, log, tail(log, 10)))
            # mkdtemp made it 0700, and tar keeps that: the mail user must reach the spool.
            os.chmod(target, 0o755)
            # Every system has one; debootstrap leaves it to the installer.
            with open(os.path.join(target, "etc/hosts"), "w") as f:
                f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
            subprocess.run(["tar", "-C", target, "-cf", tarball + ".new", "."], check=True,
                           timeout=300)
            os.replace(tarball + ".new", tarball)
            with open(stamp, "w") as f:
                json.dump({"suite": suite, "mirror": mirror, "include": sorted(needed)}, f)
        finally:
            remove_tree(target)
        note("debootstrap %s from %s in %.0fs" % (suite, mirror, time.monotonic() - started))
        return tarball

    def chroot(self, *argv, stdin=b"", timeout=60, status=0, user=None):
        """Runs a command in the Debian root, as root or as user; checks its exit status unless
        status is None, and returns its output."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C",
               "HOME": "/home/" + user if user else "/root", "DEBIAN_FRONTEND": "noninteractive"}
        userspec = ["--userspec=%s:%s" % (user, user)] if user else []
        r = harness.run(["chroot"] + userspec + [self.root] + list(argv), stdin=stdin,
                        timeout=timeout, env=env)
        if status is not None:
            self.assertEqual(r.returncode, status,
                             "%s: %s%s" % (" ".join(argv), r.stdout.decode(errors="replace"),
                                           r.stderr.decode(errors="replace")))
        return r.stdout.decode(errors="replace")

    def at(self, path):
        return self.root + path

    def passwd_entry(self, user):
        with open(self.at("/etc/passwd")) as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if fields[0] == user:
                    return fields
        return None

    def test_installed_in_debian(self):
        if os.geteuid() != 0:
            self.skipTest("installing into a Debian root needs root (chroot, mount): the "
                          "package was not installed anywhere")
        started = time.monotonic()
        tarball = self.base_tarball(relation_names(deb_field(self.deb, "Depends")))
        roots = os.path.dirname(tarball)
        self.root = tempfile.mkdtemp(dir=roots, prefix="root-")
        self.addCleanup(remove_tree, self.root)
        subprocess.run(["tar", "-C", self.root, "-xf", tarball], check=True, timeout=300)
        # tar gives the root the mode of the tarball's "./"; the mail user must pass through it.
        os.chmod(self.root, 0o755)
        subprocess.run(["mount", "-t", "proc", "proc", self.at("/proc")], check=True, timeout=30)
        self.addCleanup(self.stop_strays)
        shutil.copy(self.deb, self.at("/tmp/package.deb"))
        note("Debian root ready in %.0fs" % (time.monotonic() - started))
        started = time.monotonic()

        self.chroot("dpkg", "-i", "/tmp/package.deb", timeout=120)
        self.check_installed()
        self.check_programs()
        self.check_daemon_delivers()

        self.chroot("dpkg", "-r", PACKAGE, timeout=120)
        self.assertFalse(os.path.lexists(self.at("/usr/sbin/mta")))
        self.assertFalse(os.path.lexists(self.at("/usr/sbin/sendmail")))
        self.assertTrue(os.path.isdir(self.at(SPOOL)), "removal keeps the queue")
        self.assertTrue(os.path.exists(self.at("/etc/mailwright/mta.conf")))

        self.chroot("dpkg", "--purge", PACKAGE, timeout=120)
        self.check_purged()
        note("installed, used, removed and purged in %.0fs" % (time.monotonic() - started))

    def check_installed(self):
        user = self.passwd_entry(MAIL_USER)
        self.assertIsNotNone(user, "postinst made no user " + MAIL_USER)
        uid, gid, home, shell = int(user[2]), int(user[3]), user[5], user[6]
        self.assertLess(uid, 1000, "a system user")
        self.assertEqual((home, shell), ("/nonexistent", "/usr/sbin/nologin"))
        st = os.lstat(self.at(SPOOL))
        self.assertTrue(stat.S_ISDIR(st.st_mode))
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (uid, gid, 0o711))
        # postinst had mta make the rest (mta/spool.h), so that users can submit mail at once.
        for sub, mode in (("incoming", 0o700), ("queue", 0o700), ("state", 0o700),
                          ("corrupt", 0o700), ("maildrop", 0o1733)):
            st = os.lstat(self.at(SPOOL + "/" + sub))
            self.assertTrue(stat.S_ISDIR(st.st_mode), sub)
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (uid, mode), sub)
        with open(self.at("/etc/aliases")) as f, \
                open(os.path.join(harness.SOURCE, "etc/aliases")) as sample:
            self.assertEqual(f.read(), sample.read())
        self.assertEqual(stat.S_IMODE(os.stat(self.at("/etc/aliases")).st_mode), 0o644)
        conffiles = self.chroot("dpkg-query", "-W", "-f=${Conffiles}\n", PACKAGE)
        self.assertEqual(sorted(re.findall(r"^ (\S+) ", conffiles, re.M)), CONFFILES)
        # No systemd runs here, but deb-systemd-helper records the enabling all the same: the
        # MTA is enabled, pop3d (loopback only until configured) is not.
        wants = self.at("/etc/systemd/system/multi-user.target.wants/")
        self.assertTrue(os.path.islink(wants + "mailwright-mta.service"))
        self.assertFalse(os.path.lexists(wants + "mailwright-pop3d.service"))

    def check_programs(self):
        # The daemon must not take this host's port 25, and the hostname must not depend on
        # the resolver of whatever machine runs the test. The conffile is edited, as an
        # administrator would, and purge must remove it all the same.
        self.port = harness.free_port()
        with open(self.at("/etc/mailwright/mta.conf"), "a") as f:
            f.write("\nhostname = pkgtest.example\nlisten = 127.0.0.1:%d\n" % self.port)
        self.assertIn("mta: configuration OK", self.chroot("mta", "-bV"))
        self.assertEqual(self.chroot("mailq"), "Mail queue is empty\n")
        self.assertEqual(self.chroot("sendmail", "-bp"), "Mail queue is empty\n")
        self.assertEqual(self.chroot("/usr/lib/sendmail", "-bp"), "Mail queue is empty\n")
        self.assertRegex(self.chroot("newaliases"), r"^/etc/aliases: \d+ aliases\n$")
        self.assertIn("pop3d: configuration OK", self.chroot("pop3d", "-n"))

    def check_daemon_delivers(self):
        self.chroot("useradd", "--create-home", "pkguser")
        log = os.path.join(os.path.dirname(self.root), "mta-daemon.log")
        with open(log, "wb") as out:
            daemon = harness.Process(["chroot", self.root, "/usr/sbin/mta", "-bD"],
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT,
                                     env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
        self.addCleanup(daemon.stop)
        try:
            harness.wait_for_port(self.port, timeout=20, proc=daemon.proc)
            token = "pkg%d" % os.getpid()
            message = ("From: <sender@client.example>\r\nTo: <pkguser@pkgtest.example>\r\n"
                       "Subject: %s\r\nMessage-ID: <%s@client.example>\r\n\r\n%s body\r\n"
                       % (token, token, token)).encode()
            with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
                refused = client.sendmail("sender@client.example",
                                          ["pkguser@pkgtest.example", "postmaster@pkgtest.example"],
                                          message)
            self.assertEqual(refused, {})
            for mbox in ("/var/mail/pkguser", "/var/mail/root"):
                self.wait_for_text(self.at(mbox), "Subject: " + token, timeout=30)
            # An ordinary user's sendmail, through the spool the package set up.
            local = token + "local"
            self.chroot("/usr/sbin/sendmail", "-i", "pkguser", user="pkguser",
                        stdin=("Subject: %s\n\n%s body\n" % (local, local)).encode())
            self.wait_for_text(self.at("/var/mail/pkguser"), "Subject: " + local, timeout=30)
            st = os.stat(self.at("/var/mail/pkguser"))
            self.assertEqual(st.st_uid, int(self.passwd_entry("pkguser")[2]))
        except Exception:
            note("the daemon's output:\n" + tail(log))
            raise
        finally:
            status = daemon.stop()
        self.assertEqual(status, 0, tail(log))
        deadline = time.monotonic() + 10
        while processes_rooted_at(self.root) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(processes_rooted_at(self.root), [], "left running after mta stopped")
        self.assertEqual(self.chroot("mailq"), "Mail queue is empty\n")

    def wait_for_text(self, path, text, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(path, errors="replace") as f:
                    if text in f.read():
                        return
            except FileNotFoundError:
                pass
            time.sleep(0.1)
        self.fail("%s does not hold %r after %ds" % (path, text, timeout))

    def check_purged(self):
        for path in (SPOOL, "/etc/mailwright", "/etc/aliases", "/var/lib/mailwright",
                     "/usr/libexec/mailwright", "/usr/share/mailwright",
                     "/usr/share/doc/mailwright"):
            self.assertFalse(os.path.lexists(self.at(path)), path + " survived the purge")
        systemd_left = glob.glob(self.at("/etc/systemd/system/**/mailwright*"), recursive=True)
        systemd_left += glob.glob(self.at("/var/lib/systemd/deb-systemd-helper-*/**/mailwright*"),
                                  recursive=True)
        self.assertEqual(systemd_left, [])
        left = [p for p, target in deb_contents(self.deb).items()
                if os.path.lexists(self.at(p)) and not os.path.isdir(self.at(p))]
        self.assertEqual(left, [])
        status = self.chroot("dpkg-query", "-W", "-f=${db:Status-Abbrev}", PACKAGE, status=None)
        self.assertNotRegex(status, r"^.[iUFWhtc]")
        # Users' mail is theirs; the system user stays, as Debian keeps them.
        self.assertTrue(os.path.exists(self.at("/var/mail/pkguser")))
        self.assertIsNotNone(self.passwd_entry(MAIL_USER))

    def stop_strays(self):
        """Stops, by PID, anything still running in the root (a daemon's children after a
        failure), so that its /proc can be unmounted."""
        for pid in processes_rooted_at(self.root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while processes_rooted_at(self.root) and time.monotonic() < deadline:
            time.sleep(0.1)


if __name__ == "__main__":
    harness.main()
