"""The mta's MX resolver (c-ares on libevent) against a real DNS server: dnsmasq on 127.0.0.1,
driven through tests/tools/resolve_mx. Order by preference, shuffling of equal preferences,
implicit MX, null MX (RFC 7505), NXDOMAIN, REFUSED and timeouts as temporary failures, IPv6,
the hosts file, and many lookups at once."""

import os
import shutil
import socket
import time
import unittest

import harness

# Every record the tests ask for. --local=/test/ makes dnsmasq answer NXDOMAIN for any other
# name under test (and NODATA for a known name without the type asked); names outside it have
# no upstream server (--no-resolv) and get REFUSED, as does all of refused.example explicitly.
RECORDS = [
    "--local=/test/",
    "--mx-host=multi.test,mx1.multi.test,10",
    "--mx-host=multi.test,mx2.multi.test,20",
    "--host-record=mx1.multi.test,192.0.2.1,2001:db8::1",
    "--host-record=mx2.multi.test,192.0.2.2",
    "--mx-host=eq.test,a.eq.test,10",
    "--mx-host=eq.test,b.eq.test,10",
    "--mx-host=eq.test,c.eq.test,30",
    "--host-record=a.eq.test,192.0.2.11",
    "--host-record=b.eq.test,192.0.2.12",
    "--host-record=c.eq.test,192.0.2.13",
    "--host-record=implicit.test,192.0.2.5",
    "--host-record=v6only.test,2001:db8::6",
    "--mx-host=v6mx.test,v6only.test,5",
    "--mx-host=nullmx.test,.,0",
    "--mx-host=dangling.test,gone.dangling.test,10",
    "--txt-record=bare.test,nothing here",
    "--server=/refused.example/#",
    "--mx-host=flaky.test,mx.refused.example,10",
    "--mx-host=half.test,mx.refused.example,10",
    "--mx-host=half.test,mx2.multi.test,20",
    "--mx-host=samehost.test,mx1.multi.test,10",
    "--mx-host=samehost.test,alias1.test,20",
    "--host-record=alias1.test,192.0.2.1",
]
# An MX set too large for a 512-octet UDP answer: truncated, so c-ares asks again over TCP.
for _i in range(30):
    _name = "exchanger-with-a-rather-long-name-%02d.big.test" % _i
    RECORDS += ["--mx-host=big.test,%s,%d" % (_name, 100 - _i),
                "--host-record=%s,192.0.2.%d" % (_name, 100 + _i)]


def dnsmasq_binary():
    for candidate in (shutil.which("dnsmasq"), "/usr/sbin/dnsmasq"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("dnsmasq not found: tools/deps test installs dnsmasq-base")


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1 and a free port, stopped by its PID (its TCP
    children end with their connections)."""

    def __init__(self, box, records):
        self.port = harness.free_port()
        self.log_path = box.path("dnsmasq.log")
        # --keep-in-foreground, not --no-daemon: in debug mode dnsmasq serves a TCP connection
        # in its only process, and UDP waits until the client closes it -- c-ares keeps its
        # TCP connection open, so every UDP query after a truncated answer would time out.
        argv = [dnsmasq_binary(), "--keep-in-foreground", "--log-facility=-",
                "--conf-file=/dev/null", "--pid-file=",
                "--no-resolv", "--no-hosts", "--port=%d" % self.port,
                "--listen-address=127.0.0.1", "--bind-interfaces", "--log-queries",
                "--cache-size=0"] + records
        with open(self.log_path, "wb") as log:
            self.proc = harness.Process(argv, stdout=log, stderr=log)
        # dnsmasq answers on TCP as well as UDP: a TCP connect says it is ready.
        harness.wait_for_port(self.port, proc=self.proc.proc)

    def stop(self):
        return self.proc.stop()

    def server(self):
        return "127.0.0.1:%d" % self.port


def parse(stdout):
    """resolve_mx output as a list of (name, hosts, error): hosts are (status, pref, host,
    [addresses], implicit) tuples; a failed lookup has one host entry with pref None."""
    blocks = []
    for line in stdout.decode().splitlines():
        if line.startswith("; error: "):
            blocks[-1][2] = line[len("; error: "):]
        elif line.startswith("; "):
            blocks.append([line[2:], [], ""])
        else:
            fields = line.split()
            if fields[1] == "-":
                blocks[-1][1].append((fields[0], None, fields[2], [], False))
            else:
                blocks[-1][1].append((fields[0], int(fields[1]), fields[2], fields[3].split(","),
                                      len(fields) > 4 and fields[4] == "implicit"))
    return [tuple(b) for b in blocks]


class MxResolverTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.box = harness.Sandbox(prefix="mw-dns-")
        try:
            cls.dns = Dnsmasq(cls.box, RECORDS)
        except Exception:
            cls.box.cleanup()
            raise
        cls.tool = os.path.join(harness.BUILD, "tests", "resolve_mx")

    @classmethod
    def tearDownClass(cls):
        cls.dns.stop()
        cls.box.cleanup()

    def resolve(self, *names, options=(), server=None, timeout=30):
        argv = [self.tool, "--server", server or self.dns.server(), "--no-hosts",
                "--timeout", "1000", "--tries", "2"]
        argv += list(options) + list(names)
        r = harness.run(argv, timeout=timeout)
        self.assertEqual(r.returncode, 0, r.stderr)
        blocks = parse(r.stdout)
        self.assertEqual([b[0] for b in blocks], list(names))
        return blocks

    def one(self, name, **kw):
        return self.resolve(name, **kw)[0]

    def test_preference_order_and_both_families(self):
        name, hosts, error = self.one("multi.test")
        self.assertEqual(hosts, [
            ("ok", 10, "mx1.multi.test", ["192.0.2.1", "2001:db8::1"], False),
            ("ok", 20, "mx2.multi.test", ["192.0.2.2"], False),
        ])
        self.assertEqual(error, "")
        name, hosts, error = self.one("MULTI.test.", options=["--ipv6-first"])
        self.assertEqual(hosts[0][3], ["2001:db8::1", "192.0.2.1"])

    def test_equal_preferences_are_shuffled(self):
        # Forty lookups at once, one resolver: each picks its own order for a and b.
        blocks = self.resolve(*(["eq.test"] * 40))
        orders = set()
        for name, hosts, error in blocks:
            self.assertEqual(sorted(h[2] for h in hosts[:2]), ["a.eq.test", "b.eq.test"])
            self.assertEqual(hosts[2][1:3], (30, "c.eq.test"))  # never before pref 10
            orders.add(tuple(h[2] for h in hosts[:2]))
        self.assertEqual(orders, {("a.eq.test", "b.eq.test"), ("b.eq.test", "a.eq.test")})

    def test_implicit_mx(self):
        self.assertEqual(self.one("implicit.test")[1],
                         [("ok", 0, "implicit.test", ["192.0.2.5"], True)])
        # A domain with neither MX nor address exists but takes no mail.
        name, hosts, error = self.one("bare.test")
        self.assertEqual(hosts[0][0], "noaddress")
        self.assertIn("bare.test", error)

    def test_ipv6_only(self):
        self.assertEqual(self.one("v6only.test")[1],
                         [("ok", 0, "v6only.test", ["2001:db8::6"], True)])
        self.assertEqual(self.one("v6mx.test")[1],
                         [("ok", 5, "v6only.test", ["2001:db8::6"], False)])
        self.assertEqual(self.one("v6only.test", options=["--host"])[1],
                         [("ok", 0, "v6only.test", ["2001:db8::6"], False)])

    def test_null_mx(self):
        name, hosts, error = self.one("nullmx.test")
        self.assertEqual(hosts, [("nullmx", None, "nullmx.test", [], False)])
        self.assertIn("null MX", error)

    def test_nxdomain(self):
        name, hosts, error = self.one("nosuch.test")
        self.assertEqual(hosts[0][0], "nxdomain")
        self.assertEqual(self.one("nosuch.test", options=["--host"])[1][0][0], "nxdomain")
        # MX hosts that do not exist: a definite answer, permanent.
        name, hosts, error = self.one("dangling.test")
        self.assertEqual(hosts[0][0], "noaddress")
        self.assertIn("gone.dangling.test", error)

    def test_refused_is_temporary(self):
        self.assertEqual(self.one("refused.example")[1][0][0], "temporary")
        # The exchanger's addresses cannot be looked up: temporary, not a bounce.
        name, hosts, error = self.one("flaky.test")
        self.assertEqual(hosts[0][0], "temporary")
        self.assertIn("mx.refused.example", error)
        # One exchanger that works is enough; the other is noted.
        name, hosts, error = self.one("half.test")
        self.assertEqual(hosts, [("ok", 20, "mx2.multi.test", ["192.0.2.2"], False)])
        self.assertIn("mx.refused.example", error)

    def test_same_address_under_two_names_is_tried_once(self):
        name, hosts, error = self.one("samehost.test")
        self.assertEqual(hosts, [("ok", 10, "mx1.multi.test", ["192.0.2.1", "2001:db8::1"],
                                  False)])

    def test_timeout_is_temporary_and_bounded(self):
        # A UDP socket that never answers: every try times out.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))
            server = "127.0.0.1:%d" % silent.getsockname()[1]
            start = time.monotonic()
            argv = [self.tool, "--server", server, "--no-hosts", "--timeout", "200", "--tries",
                    "2", "slow.test", "other.test"]
            r = harness.run(argv, timeout=30)
            elapsed = time.monotonic() - start
        self.assertEqual(r.returncode, 0, r.stderr)
        for name, hosts, error in parse(r.stdout):
            self.assertEqual(hosts[0][0], "temporary")
            self.assertIn("timed out", error)
        # 200 ms, then 400 ms for the second try; both lookups wait side by side.
        self.assertGreaterEqual(elapsed, 0.5)
        self.assertLess(elapsed, 5)

    def test_unreachable_server_is_temporary(self):
        port = harness.free_port()  # nothing listens: ICMP port unreachable
        name, hosts, error = self.one("multi.test", server="127.0.0.1:%d" % port)
        self.assertEqual(hosts[0][0], "temporary")

    def test_hosts_file_comes_first(self):
        hosts = self.box.write("hosts-%s" % self._testMethodName,
                               "# test hosts\n10.9.9.9 mx1.multi.test\n10.9.9.10 relay.local\n")
        name, found, error = self.one("multi.test", options=["--hosts", hosts])
        self.assertEqual(found[0], ("ok", 10, "mx1.multi.test", ["10.9.9.9"], False))
        self.assertEqual(found[1], ("ok", 20, "mx2.multi.test", ["192.0.2.2"], False))
        # Smart hosts (no MX lookup): from the file, or DNS for names it does not list.
        blocks = self.resolve("relay.local", "mx2.multi.test", "192.0.2.77",
                              options=["--hosts", hosts, "--host", "--port", "2525"])
        self.assertEqual([b[1] for b in blocks], [
            [("ok", 0, "relay.local", ["10.9.9.10"], False)],
            [("ok", 0, "mx2.multi.test", ["192.0.2.2"], False)],
            [("ok", 0, "192.0.2.77", ["192.0.2.77"], False)],
        ])

    def test_many_lookups_at_once(self):
        names = ["multi.test", "implicit.test", "nosuch.test", "nullmx.test", "eq.test"] * 40
        # 600 queries at one single-threaded dnsmasq: on a loaded machine (the sanitizer build,
        # tests running side by side) an answer can take longer than the 1 s the other tests
        # allow, which would be a timeout, not a wrong answer.
        blocks = self.resolve(*names, options=["--timeout", "4000", "--tries", "3"], timeout=120)
        want = {"multi.test": "ok", "implicit.test": "ok", "nosuch.test": "nxdomain",
                "nullmx.test": "nullmx", "eq.test": "ok"}
        for name, hosts, error in blocks:
            self.assertEqual(hosts[0][0], want[name], (name, error))

    def test_large_answer_over_tcp(self):
        name, hosts, error = self.one("big.test")
        # The ten most preferred (max_mx_hosts), best first.
        self.assertEqual([h[1] for h in hosts], list(range(71, 81)))
        self.assertEqual(hosts[0][2:4], ("exchanger-with-a-rather-long-name-29.big.test",
                                         ["192.0.2.129"]))
        self.assertIn("20 MX record(s) not used", error)
        with open(self.dns.log_path, "rb") as log:
            self.assertIn(b"big.test", log.read())

    def test_address_literal_is_not_looked_up(self):
        name, hosts, error = self.one("[192.0.2.1]")
        self.assertEqual(hosts[0][0], "nxdomain")


if __name__ == "__main__":
    harness.main()
