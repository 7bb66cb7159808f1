#!/usr/bin/env python3
"""The manual pages held against the programs they describe.

  - mandoc -Tlint -W warning finds nothing in any page of man/;
  - every option a program accepts is described in its page, and every option a page
    describes is accepted, for mta (with the names it answers to), mda and pop3d;
  - every configuration key a program knows is described in its page, and every key a page
    describes is known;
  - every page installs into the section its .Dt names, and every link to a page installed
    beside it is a name that page documents.

The programs' side comes from the programs, never from a list kept here, so nothing can be
added to a program or a page without this test noticing:

  - Options: each binary is asked about every letter. The configuration file named first
    with -C does not exist, so an option the parser knows gets past it and the program stops
    at the missing file with EX_CONFIG, while an option it does not know is a usage error,
    EX_USAGE, before anything else happens. An option that needs a value or an operand is
    given some in turn; one that needs another option first (pop3d -f after -d) is tried
    after each of the program's modes. If the probing went wrong as a whole (every letter
    refused, or every letter accepted) the two sides cannot agree and the test fails.
  - Names: the names mta gives a meaning of its own (arguments_for_name in mta/mta.cpp) are
    read from the source, and each is confirmed by running mta under that name; the names it
    is installed under are the links `cmake --install` makes to it.
  - Keys: what -bP / -P print, the effective configuration with every key.
"""

import os
import re
import shutil
import string
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

EX_USAGE = 64

# A value that each option taking one accepts: -N wants "never", -R "full", -B "8BITMIME";
# "x" does for the rest (a sender, a name, an envelope id, a file that does not exist).
VALUES = ("x", "never", "full", "8BITMIME")

PAGE_RE = re.compile(r".*\.[1-9]$")
MACRO_RE = re.compile(r"^[A-Z][a-z]{1,2}$")
PUNCTUATION = {",", ";", ":", ".", "(", ")", "[", "]", "|"}
DUMP_KEY_RE = re.compile(r"^([a-z][a-z0-9_]*)\s*=")
PAGE_KEY_RE = re.compile(r"^\.It Ic ([a-z][a-z0-9_]*) No =")


def pages():
    directory = os.path.join(harness.SOURCE, "man")
    return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                  if PAGE_RE.match(name))


def page_path(name):
    return os.path.join(harness.SOURCE, "man", name)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def sections(text):
    """The lines of each .Sh section of an mdoc page, by section name."""
    out = {}
    current = None
    for line in text.splitlines():
        if line.startswith(".Sh "):
            current = line[4:].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out


def flag_words(line):
    """The words after each Fl macro on an mdoc line: ".It Fl q Ns Ar time" gives ["q"],
    ".Fl bd | Fl bD" ["bd", "bD"]; "\\-" (the end of the options) is left out."""
    words = []
    in_flag = False
    for i, token in enumerate(line.split()):
        if i == 0 and token.startswith("."):
            token = token[1:]
        if token == "Fl":
            in_flag = True
        elif MACRO_RE.match(token):
            in_flag = False
        elif in_flag and token not in PUNCTUATION and not token.startswith("\\"):
            words.append(token)
    return words


def documented_options(page):
    """(the options the OPTIONS section describes, the option words of the SYNOPSIS)."""
    secs = sections(read(page_path(page)))
    described = set()
    for line in secs.get("OPTIONS", []):
        if line.startswith(".It "):
            described.update(flag_words(line))
    synopsis = set()
    for line in secs.get("SYNOPSIS", []):
        synopsis.update(flag_words(line))
    return described, synopsis


def documented_names(page):
    """The .Nm names of the NAME section."""
    names = []
    for line in sections(read(page_path(page))).get("NAME", []):
        if line.startswith(".Nm "):
            names.append(line.split()[1])
    return names


def documented_keys(page):
    return {m.group(1) for m in map(PAGE_KEY_RE.match, read(page_path(page)).splitlines()) if m}


class Prober:
    """Asks a program whether it accepts an option, by its exit status (see the top)."""

    def __init__(self, binary, tmp, operand, contexts=((),), argv0=None):
        self.binary = binary
        self.absent = os.path.join(tmp, "absent.conf")
        self.operand = operand
        self.contexts = contexts
        self.argv0 = argv0
        self.tmp = tmp

    def status(self, words):
        argv = [self.binary, "-C", self.absent] + list(words)
        # A sanitizer build reports leaks with an exit status of its own, which would pass
        # for an accepted option: the probes are about the parser, not about leaks.
        env = dict(os.environ, HOME=self.tmp, LANG="C")
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
        kw = {"executable": self.binary}
        if self.argv0:
            argv[0] = self.argv0
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=20, env=env, cwd=self.tmp, **kw)
        return proc.returncode

    def forms(self, flag):
        yield [flag]
        yield [flag, self.operand]
        for value in VALUES:
            yield [flag, value, self.operand]
            yield [flag + value, self.operand]

    def accepts(self, flag):
        return any(self.status(list(context) + form) != EX_USAGE
                   for context in self.contexts for form in self.forms(flag))

    def letters(self, prefix="-"):
        return {c for c in string.ascii_letters if self.accepts(prefix + c)}


class ManPages(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mw-man-")
        cls.destdir = None

    def install(self):
        """The tree `cmake --install` makes of the build, under a DESTDIR; made once."""
        if ManPages.destdir is None:
            destdir = os.path.join(self.tmp, "destdir")
            env = dict(os.environ, DESTDIR=destdir)
            proc = subprocess.run(["cmake", "--install", harness.BUILD], env=env,
                                  capture_output=True, text=True, timeout=300)
            self.assertEqual(proc.returncode, 0,
                             "cmake --install: " + proc.stdout + proc.stderr)
            ManPages.destdir = destdir
        return ManPages.destdir

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # (a) --------------------------------------------------------------------------------

    def test_mandoc_lint_is_clean(self):
        self.assertTrue(shutil.which("mandoc"), "mandoc is not installed (tools/deps test)")
        found = pages()
        self.assertGreater(len(found), 5, "no manual pages found in man/")
        complaints = []
        for page in found:
            proc = subprocess.run(["mandoc", "-Tlint", "-W", "warning", page],
                                  capture_output=True, text=True, timeout=60)
            output = (proc.stdout + proc.stderr).strip()
            if proc.returncode != 0 or output:
                complaints.append("%s (status %d):\n%s" % (page, proc.returncode, output))
        self.assertEqual(complaints, [], "\n".join(complaints))

    # (b) --------------------------------------------------------------------------------

    def check_options(self, page, prober, bmodes=False):
        described, synopsis = documented_options(page)
        self.assertTrue(described, "%s: no options found in OPTIONS" % page)
        problems = []
        # The SYNOPSIS may group letters, as "-dv": each must still be described.
        for word in sorted(synopsis - described):
            if not all(c in described for c in word):
                problems.append("-%s is in the SYNOPSIS but not described in OPTIONS" % word)
        letters = prober.letters()
        self.assertTrue(letters, "%s: no option letter accepted at all: the probing is broken"
                        % page)
        self.assertLess(len(letters), len(string.ascii_letters),
                        "%s: every letter accepted: the probing is broken" % page)
        for word in sorted(described):
            if not prober.accepts("-" + word):
                problems.append("-%s is described, but the program refuses it" % word)
        for letter in sorted(letters):
            if not any(word[0] == letter for word in described):
                problems.append("-%s is accepted, but not described" % letter)
        if bmodes:
            modes = prober.letters("-b")
            self.assertTrue(modes, "no -b mode accepted at all: the probing is broken")
            for letter in sorted(modes):
                if "b" + letter not in described:
                    problems.append("-b%s is accepted, but not described" % letter)
        self.assertEqual(problems, [], "%s against the program:\n  %s"
                         % (page, "\n  ".join(problems)))

    def test_mta_options(self):
        # After -bP as well: an option may be one that goes with a mode only.
        self.check_options("mta.8", Prober(harness.binary("mta"), self.tmp, "postmaster",
                                           contexts=((), ("-bP",))),
                           bmodes=True)

    def test_mda_options(self):
        self.check_options("mda.8", Prober(harness.binary("mda"), self.tmp, "root"))

    def test_pop3d_options(self):
        # -f means something only after -d.
        self.check_options("pop3d.8", Prober(harness.binary("pop3d"), self.tmp, "x",
                                             contexts=((), ("-d",))))

    def test_mta_names(self):
        source = read(os.path.join(harness.SOURCE, "mta", "mta.cpp"))
        body = re.search(r"arguments_for_name\([^)]*\)\s*\{(.*?)\n\}", source, re.S)
        self.assertIsNotNone(body, "arguments_for_name not found in mta/mta.cpp")
        special = set(re.findall(r'name == "([^"]+)"', body.group(1)))
        self.assertTrue(special, "arguments_for_name compares the name with nothing")
        names = documented_names("mta.8")
        self.assertIn("mta", names)
        problems = []
        mta = harness.binary("mta")

        def prober(name):
            return Prober(mta, self.tmp, "postmaster", argv0=name)

        # A name with a meaning of its own brings its mode: another one is then an error.
        plain = prober("mta").status(["-bs"])
        self.assertNotEqual(plain, EX_USAGE, "mta -bs refused: the probing is broken")
        for name in sorted(special):
            if prober(name).status(["-bs"]) != EX_USAGE:
                problems.append("%s: named in arguments_for_name, yet mta called so takes "
                                "-bs as it is" % name)
            if name not in names:
                problems.append("mta answers to the name %s, which NAME does not list" % name)
        for name in names:
            p = prober(name)
            if all(p.status(words) == EX_USAGE for words in ([], ["postmaster"], ["-bP"])):
                problems.append("NAME lists %s, but mta called so refuses to run" % name)
        # Every name the page gives is one mta is installed under, and the other way round.
        destdir = self.install()
        installed = None
        links = set()
        for root, _, files in os.walk(destdir):
            for name in files:
                path = os.path.join(root, name)
                if name == "mta" and not os.path.islink(path):
                    installed = os.path.realpath(path)
        self.assertIsNotNone(installed, "cmake --install installs no mta")
        for root, _, files in os.walk(destdir):
            if re.fullmatch(r"man[1-9]", os.path.basename(root)):
                continue
            for name in files:
                path = os.path.join(root, name)
                if os.path.islink(path) and os.path.realpath(path) == installed:
                    links.add(name)
        for name in sorted(links - set(names)):
            problems.append("mta is installed as %s, which NAME does not list" % name)
        for name in sorted(set(names) - links - {"mta"}):
            problems.append("NAME lists %s, but mta is not installed under that name" % name)
        self.assertEqual(problems, [], "\n".join(problems))

    # (c) --------------------------------------------------------------------------------

    def check_keys(self, page, argv):
        empty = os.path.join(self.tmp, "empty.conf")
        open(empty, "w").close()
        proc = harness.run(argv + ["-C", empty])
        self.assertEqual(proc.returncode, 0, "%s failed: %s" % (argv, proc.stderr.decode()))
        code = {m.group(1) for m in map(DUMP_KEY_RE.match, proc.stdout.decode().splitlines())
                if m}
        self.assertGreater(len(code), 5, "%s printed no configuration" % argv)
        documented = documented_keys(page)
        problems = ["%s is a key of the program, but %s does not describe it" % (k, page)
                    for k in sorted(code - documented)]
        problems += ["%s describes %s, which the program does not know" % (page, k)
                     for k in sorted(documented - code)]
        self.assertEqual(problems, [], "\n".join(problems))

    def test_mta_keys(self):
        self.check_keys("mta.conf.5", [harness.binary("mta"), "-bP"])

    def test_mda_keys(self):
        self.check_keys("mda.8", [harness.binary("mda"), "-P"])

    def test_pop3d_keys(self):
        self.check_keys("pop3d.conf.5", [harness.binary("pop3d"), "-P"])

    # (d) --------------------------------------------------------------------------------

    def test_file_names_match_dt(self):
        problems = []
        for page in pages():
            base = os.path.basename(page)
            stem, section = base.rsplit(".", 1)
            dt = [line.split() for line in read(page).splitlines() if line.startswith(".Dt ")]
            if len(dt) != 1 or len(dt[0]) < 3:
                problems.append("%s: want exactly one .Dt TITLE SECTION" % base)
                continue
            if dt[0][1] != stem.upper() or dt[0][2] != section:
                problems.append("%s: .Dt %s %s" % (base, dt[0][1], dt[0][2]))
        self.assertEqual(problems, [], "\n".join(problems))

    def test_pages_install_into_their_sections(self):
        destdir = self.install()
        installed = {}  # file name -> paths, everything in a man<N> directory
        for root, _, files in os.walk(destdir):
            if re.fullmatch(r"man[1-9]", os.path.basename(root)):
                for name in files:
                    installed.setdefault(name, []).append(os.path.join(root, name))
        problems = []
        sources = {os.path.basename(p): p for p in pages()}
        for name, source in sorted(sources.items()):
            section = name.rsplit(".", 1)[1]
            where = [p for p in installed.get(name, []) if not os.path.islink(p)]
            if len(where) != 1 or os.path.basename(os.path.dirname(where[0])) != "man" + section:
                problems.append("%s: installed as %s, want one file in man%s"
                                % (name, where or "nothing", section))
        for name, paths in sorted(installed.items()):
            for path in paths:
                if not os.path.islink(path):
                    if name not in sources:
                        problems.append("%s: installed, but not a page of man/" % path)
                    continue
                target = os.path.realpath(path)
                if not os.path.isfile(target) or os.path.basename(target) not in sources:
                    problems.append("%s: a link to %s, which is no installed page"
                                    % (path, os.readlink(path)))
                    continue
                if name.rsplit(".", 1)[0] not in documented_names(os.path.basename(target)):
                    problems.append("%s: a link to %s, whose NAME does not list %s"
                                    % (path, os.path.basename(target), name.rsplit(".", 1)[0]))
        self.assertEqual(problems, [], "\n".join(problems))


if __name__ == "__main__":
    harness.main()
