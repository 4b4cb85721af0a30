#!/usr/bin/env python3
"""The manual page docs/matrixrmapi.8: it names every environment variable
lib/config.c reads and every command and option of main/main.c's usage text,
and groff formats it without a warning. The page is checked as a reader sees
it (rendered by groff), so roff escapes do not hide a missing word.
Standard library and groff only."""
import os, re, shutil, subprocess, unittest

SRC = os.environ["MATRIXRMAPI_SRC"]
PAGE = os.path.join(SRC, "docs", "matrixrmapi.8")


def read(rel):
    with open(os.path.join(SRC, rel), encoding="utf-8") as f:
        return f.read()


def config_variables(text):
    """Names config.c passes as a string literal to its readers: env("X"),
    get(env, "X"), dup_or(env, "X", ...), parse_int(env, "X", ...)."""
    return set(re.findall(r'\b(?:env|get|dup_or|parse_int)\s*\(\s*(?:env\s*,\s*)?"([A-Z][A-Z0-9_]*)"', text))


def usage_words(text):
    """Commands and options of main.c's usage text: each line's synopsis
    (the part before the run of spaces that starts its description)."""
    m = re.search(r'static const char usage\[\]\s*=\s*((?:\s*"(?:[^"\\]|\\.)*")+)\s*;', text)
    if not m:
        raise AssertionError("no usage[] string in main/main.c")
    body = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))).replace("\\n", "\n")
    words = set()
    for line in body.splitlines():
        line = re.sub(r"^(usage:)?\s*", "", line)
        if not line.startswith("matrixrmapi"):
            continue
        synopsis = re.split(r"\s{2,}", line)[0]
        words.update(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|[a-z][a-z-]+)(?![\w-])", synopsis))
    words.discard("matrixrmapi")
    return words


def rendered():
    r = subprocess.run(["groff", "-man", "-Tascii", "-P-cbu", PAGE], capture_output=True, text=True,
                       env={**os.environ, "LC_ALL": "C"}, check=True)
    return " ".join(r.stdout.split())


class ManPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("groff"):
            raise AssertionError("groff is missing (deploy/install-deps.sh installs groff-base)")
        cls.text = rendered()

    def test_parsers_find_what_is_there(self):
        # The checks below are only as good as these parsers.
        variables = config_variables(read("lib/config.c"))
        self.assertGreaterEqual(len(variables), 20, sorted(variables))
        for v in ("SYNAPSE_REGISTRATION_SECRET", "LISTEN_PORT", "TLS_CRL_FILE", "LOG_LEVEL", "UI_DIR"):
            self.assertIn(v, variables)
        self.assertEqual(config_variables('x = get(env, "NEW_ONE"); y = dup_or(env, "OTHER", "d");'),
                         {"NEW_ONE", "OTHER"})
        words = usage_words(read("main/main.c"))
        for w in ("serve", "--reconcile-once", "--dry-run", "status", "--json", "adopt", "healthcheck",
                  "--host", "--port", "openapi", "--help", "--version"):
            self.assertIn(w, words)

    def test_names_every_variable_config_reads(self):
        missing = sorted(v for v in config_variables(read("lib/config.c")) if not re.search(rf"\b{v}\b", self.text))
        self.assertEqual(missing, [], "variables lib/config.c reads that the man page does not name")

    def test_names_every_command_and_option_of_the_usage_text(self):
        missing = sorted(w for w in usage_words(read("main/main.c"))
                         if not re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", self.text))
        self.assertEqual(missing, [], "commands or options of main/main.c's usage that the man page lacks")

    def test_sections(self):
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "ENVIRONMENT", "FILES", "HTTP INTERFACE",
                        "EXIT STATUS", "SIGNALS", "EXAMPLES", "SEE ALSO"):
            self.assertIn(f" {section} ", f" {self.text} ")
        for signal in ("SIGTERM", "SIGHUP"):
            self.assertIn(signal, self.text)
        for endpoint in ("/api/v1/interop/add", "/api/v1/interop/authz", "/api/v1/healthcheck"):
            self.assertIn(endpoint, self.text)

    def test_groff_gives_no_warnings(self):
        r = subprocess.run(["groff", "-man", "-ww", "-z", "-Tascii", PAGE], capture_output=True, text=True,
                           env={**os.environ, "LC_ALL": "C"})
        self.assertEqual((r.returncode, r.stderr), (0, ""))

    def test_man_reads_it_without_warnings(self):
        if not shutil.which("man"):
            raise AssertionError("man is missing (deploy/install-deps.sh installs man-db)")
        r = subprocess.run(["man", "--warnings", "-l", PAGE], capture_output=True, text=True,
                           env={**os.environ, "LC_ALL": "C", "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        self.assertIn("matrixrmapi", r.stdout)


if __name__ == "__main__":
    unittest.main()
