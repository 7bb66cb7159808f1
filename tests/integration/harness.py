"""Shared plumbing for the integration tests: where the binaries are, temporary sandboxes,
and processes that are always bounded in time and stopped by PID."""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

BUILD = None
SOURCE = None


def parse_args():
    """Reads --build and --source, leaves the rest to unittest."""
    global BUILD, SOURCE
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--build", required=True)
    parser.add_argument("--source", required=True)
    args, rest = parser.parse_known_args()
    BUILD = os.path.abspath(args.build)
    SOURCE = os.path.abspath(args.source)
    return [sys.argv[0]] + rest


def binary(name):
    return os.path.join(BUILD, name, name)


class Sandbox:
    """A directory with config, mail spool and temp dir for one test."""

    def __init__(self, prefix="mw-"):
        self.root = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.root, 0o755)
        self.mail = os.path.join(self.root, "mail")
        self.tmp = os.path.join(self.root, "tmp")
        self.etc = os.path.join(self.root, "etc")
        for d in (self.mail, self.tmp, self.etc):
            os.mkdir(d)
        self.users = os.path.join(self.etc, "users")

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def write(self, name, text, mode=0o644):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


def run(argv, stdin=b"", timeout=30, env=None, **kw):
    """Runs a program to completion with a bound on its time; returns CompletedProcess."""
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, env=env, **kw)


class Process:
    """A started process that is always stopped by its PID, even when a test fails."""

    def __init__(self, argv, **kw):
        self.proc = subprocess.Popen(argv, **kw)

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        return self.proc.returncode


def main():
    argv = parse_args()
    unittest.main(argv=argv, verbosity=2)


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(port, host="127.0.0.1", timeout=10.0, proc=None):
    """Waits until something accepts on host:port; fails after timeout or if proc died."""
    import socket
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited early with status %s" % proc.returncode)
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %s:%d after %.0fs" % (host, port, timeout))


def make_certificate(directory, name="localhost"):
    """A self-signed certificate made at test time: returns (cert, key) paths."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:%s,IP:127.0.0.1" % name,
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return cert, key
