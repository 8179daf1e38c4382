"""Throwaway Dovecot servers for tests and benches (recipe: shared/reference/test-infra.md §1).

Each server lives in its own short temp directory (unix socket paths are limited to 108 bytes),
runs in the foreground as a child process, and is stopped with SIGTERM. Three variants:

- ``slash``: hierarchy separator ``/``;
- ``dot``: hierarchy separator ``.``;
- ``oauth``: separator ``/`` with the oauth2 passdb (XOAUTH2 and OAUTHBEARER) asking
  `introspection_url` (a test's local HTTP server) whether a bearer token is valid;
- ``tls``: separator ``/`` with TLS: STARTTLS on the plain port and implicit TLS on `tls_port`,
  with a self-signed certificate for 127.0.0.1 (`cert_path`);
- ``restricted``: separator ``/`` but advertising only what an old server (UW-IMAP 2005)
  offers. Dovecot still *executes* UIDPLUS, MOVE, NOTIFY, ... when a client sends them, so this
  variant logs every finished command and `assert_only_offered` checks that a client used nothing
  it was not offered.

All variants have passwd-file users, a master user (``vmadmin``/``masterpw``), the quota plugin
with a small limit, ``mailbox_list_index = yes`` (so NOTIFY is offered) and METADATA.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.net import free_port, stop_process_group, wait_for_greeting

MASTER_USER = "vmadmin"
MASTER_PASSWORD = "masterpw"
QUOTA_KB = 300

# What UW-IMAP 2005 advertises, give or take: no UIDPLUS, MOVE, NOTIFY, QUOTA, CONDSTORE,
# QRESYNC, ESEARCH (nor anything that implies them).
RESTRICTED_CAPABILITY = (
    "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID IDLE NAMESPACE UNSELECT CHILDREN "
    "SORT THREAD=REFERENCES THREAD=ORDEREDSUBJECT MULTIAPPEND"
)

# Commands and arguments that need an extension, and the capability that offers it.
_EXTENSION_COMMANDS: dict[str, str] = {
    "MOVE": "MOVE",
    "UID MOVE": "MOVE",
    "UID EXPUNGE": "UIDPLUS",
    "NOTIFY": "NOTIFY",
    "GETQUOTAROOT": "QUOTA",
    "GETQUOTA": "QUOTA",
    "SETQUOTA": "QUOTA",
    "ENABLE": "ENABLE",
    "GETMETADATA": "METADATA",
    "SETMETADATA": "METADATA",
    "ESEARCH": "ESEARCH",
    "UNSELECT": "UNSELECT",
    "NAMESPACE": "NAMESPACE",
    "IDLE": "IDLE",
    "ID": "ID",
    "COMPRESS": "COMPRESS=DEFLATE",
    "STARTTLS": "STARTTLS",
}
# Arguments that need an extension: (commands they apply to, pattern, capability).
_SEARCHES = ("SEARCH", "UID SEARCH", "SORT", "UID SORT")
_EXTENSION_ARGUMENTS: list[tuple[tuple[str, ...], re.Pattern[str], str]] = [
    (_SEARCHES, re.compile(r"\bRETURN\s*\(", re.I), "ESEARCH"),
    (_SEARCHES, re.compile(r"\bMODSEQ\b", re.I), "CONDSTORE"),
    (("LIST",), re.compile(r"\bRETURN\s*\(.*\bSTATUS\b", re.I), "LIST-STATUS"),
    (("SELECT", "EXAMINE"), re.compile(r"\(\s*CONDSTORE\s*\)", re.I), "CONDSTORE"),
    (("SELECT", "EXAMINE"), re.compile(r"\bQRESYNC\b", re.I), "QRESYNC"),
    (
        ("FETCH", "UID FETCH", "STORE", "UID STORE"),
        re.compile(r"\b(CHANGEDSINCE|UNCHANGEDSINCE|MODSEQ)\b", re.I),
        "CONDSTORE",
    ),
    (("UID FETCH",), re.compile(r"\bVANISHED\b", re.I), "QRESYNC"),
    (("STATUS",), re.compile(r"\bHIGHESTMODSEQ\b", re.I), "CONDSTORE"),
    (("STATUS",), re.compile(r"\bSIZE\b", re.I), "STATUS=SIZE"),
    (("STATUS",), re.compile(r"\bDELETED\b", re.I), "IMAP4rev2"),
]


def sizing_config(connections: int, *, client_limit: int = 1000) -> str:
    """The dovecot.conf lines the README's MWI section gives operators for `connections`
    simultaneous IMAP connections (imapvm's watchers plus everything else), mostly idle in
    IDLE/NOTIFY: each imap process serves up to `client_limit` of them (all users must share one
    uid for that, as virtual users do), so a few processes hold them instead of one process
    (~6 MB measured) each. The kernel side (`fs.inotify.*`) is `inotify_sysctls`."""
    procs = -(-connections // client_limit) + 1  # ceil, plus one for the churn of logins
    return f"""
# sized for {connections} connections (tests/support/dovecot.py: sizing_config)
default_client_limit = {connections + 1000}
service imap {{
  client_limit = {client_limit}
  service_count = 0  # the default, 1, lets a process serve one client in its whole life
  process_limit = {procs}
  vsz_limit = {max(256, client_limit)}M  # ~350 MB measured at 1,000 IDLE clients
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
"""


def inotify_sysctls(connections: int) -> dict[str, int]:
    """Kernel limits for `connections` IDLE/NOTIFY sessions of one mail uid: Dovecot past
    `max_user_instances` (default 128) or `max_user_watches` quietly falls back to checking
    every 30 s, so the lamps lag by up to half a minute with no error anywhere."""
    return {"fs.inotify.max_user_instances": connections + 1024,
            "fs.inotify.max_user_watches": 8 * connections + 65536}


def pool_password(name: str) -> str:
    """The password every user has without being created (see the static passdb below)."""
    return f"{name}-pw"


_EXTRA_MECHANISMS = {"oauth": " xoauth2 oauthbearer", "gssapi": " gssapi"}

_FINISHED = re.compile(r"Debug: Command finished: (.*)$")
_LOG_SENTINEL = "imapvm-log-sentinel"
_SENTINEL_END = re.compile(rf"imap\({_LOG_SENTINEL}\)<[^>]*><[^>]*>: Info: Disconnected")


def unoffered_commands(commands: list[str], capability: str) -> list[str]:
    """The commands (as logged) that need a capability `capability` does not list."""
    offered = set(capability.upper().split())
    bad = []
    for cmd in commands:
        words = cmd.split()
        if not words:
            continue
        name = " ".join(words[:2]).upper() if words[0].upper() == "UID" else words[0].upper()
        need = _EXTENSION_COMMANDS.get(name)
        if need and need.upper() not in offered:
            bad.append(f"{cmd!r} needs {need}")
        for names, pattern, cap in _EXTENSION_ARGUMENTS:
            if name in names and pattern.search(cmd) and cap.upper() not in offered:
                bad.append(f"{cmd!r} needs {cap}")
    return bad


@contextlib.contextmanager
def raised_sysctls(wanted: dict[str, int]) -> Iterator[dict[str, tuple[int, int]]]:
    """Raise (never lower) kernel settings for the duration, and put the old values back at
    the end, failure or not. Yields {name: (old, now)}; a setting that cannot be written (not
    root, a read-only /proc/sys in a container) keeps its old value, so the caller can say so."""
    done: dict[str, tuple[int, int]] = {}
    try:
        for name, value in wanted.items():
            path = Path("/proc/sys") / name.replace(".", "/")
            old = int(path.read_text().split()[0])
            now = old
            if value > old:
                try:
                    path.write_text(str(value))
                    now = value
                except OSError:
                    pass
            done[name] = (old, now)
        yield done
    finally:
        for name, (old, now) in done.items():
            if now != old:
                with contextlib.suppress(OSError):
                    (Path("/proc/sys") / name.replace(".", "/")).write_text(str(old))


@dataclass
class DovecotServer:
    variant: str
    host: str = "127.0.0.1"
    port: int = 0
    directory: Path = field(default_factory=Path)
    process: subprocess.Popen[bytes] | None = None
    users: dict[str, str] = field(default_factory=dict)
    quota_kb: int = QUOTA_KB
    tls_port: int = 0
    introspection_url: str = ""
    krb5_config: str = ""
    """`gssapi` variant: the krb5.conf of the test KDC and the keytab with imap/localhost."""
    krb5_keytab: str = ""
    extra_config: str = ""
    """Appended to the generated dovecot.conf (later settings win): e.g. the process and client
    limits a bench with a thousand connections needs. Empty by default: tests keep the defaults."""
    user_uids: dict[str, int] = field(default_factory=dict)
    """Users (of the passwd-file) that run as their own uid instead of nobody's. A bench with
    many IDLE sessions spreads users over several uids: the kernel's inotify limit
    (fs.inotify.max_user_instances, 128 by default) applies per uid, and past it Dovecot's IDLE
    and NOTIFY quietly fall back to checking every 30 s."""

    @property
    def separator(self) -> str:
        return "." if self.variant == "dot" else "/"

    @property
    def log_path(self) -> Path:
        return self.directory / "dovecot.log"

    # -- life cycle -------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> DovecotServer:
        if shutil.which("dovecot") is None:
            raise RuntimeError("dovecot is not installed (apt-get install dovecot-imapd)")
        self.directory = Path(tempfile.mkdtemp(prefix="dv", dir="/tmp"))
        self.directory.chmod(0o755)  # login processes run as dovenull and must reach base_dir
        (self.directory / "mail").mkdir()
        (self.directory / "run").mkdir()
        os.chown(self.directory / "mail", _nobody_uid(), _nobody_gid())
        self.port = self.port or free_port(self.host)
        if self.variant == "tls":
            self.tls_port = self.tls_port or free_port(self.host)
            self._make_certificate()
        (self.directory / "masters").write_text(f"{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}\n")
        self._write_users()
        (self.directory / "dovecot.conf").write_text(self._config())
        self.process = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.directory / "dovecot.conf")],
            stdin=subprocess.DEVNULL, start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "stderr.log", "wb"),  # noqa: SIM115 - owned by the child
        )
        try:
            wait_for_greeting(self.host, self.port, timeout, alive=self.process.poll)
        except TimeoutError as exc:
            detail = f"dovecot ({self.variant}) did not start: {exc}\n{self._logs()}"
            self.stop()
            raise RuntimeError(detail) from exc
        return self

    @property
    def cert_path(self) -> Path:
        return self.directory / "cert.pem"

    def _make_certificate(self) -> None:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(self.directory / "key.pem"), "-out", str(self.cert_path)],
            check=True, capture_output=True,
        )

    def stop(self) -> None:
        proc, self.process = self.process, None
        stop_process_group(proc)
        if self.directory and self.directory != Path() and self.directory.exists():
            shutil.rmtree(self.directory, ignore_errors=True)

    def pause(self) -> None:
        """Stop the server but keep its mail, so `resume` brings the same mailboxes back."""
        proc, self.process = self.process, None
        stop_process_group(proc)

    def resume(self, timeout: float = 20.0) -> None:
        self.process = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.directory / "dovecot.conf")],
            stdin=subprocess.DEVNULL, start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "stderr.log", "ab"),  # noqa: SIM115
        )
        wait_for_greeting(self.host, self.port, timeout)

    # -- users ------------------------------------------------------------------------------
    def add_user(self, name: str, password: str) -> None:
        """Create a user.

        A password of the form `<name>-pw` needs no change at all (the static pool passdb has
        every such user). Any other goes into the passwd-file, which Dovecot re-reads at most once
        a second, so this then waits until the new user can log in.
        """
        self.users[name] = password
        if password == pool_password(name):
            return
        self._write_users()
        deadline = time.monotonic() + 5
        while not self._can_login(name, password):
            if time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not pick up new user {name}")
            time.sleep(0.2)

    def add_users(self, users: dict[str, str], uids: dict[str, int] | None = None) -> None:
        """Create many users at once (one rewrite of the passwd-file, one wait), optionally
        each with its own uid."""
        self.users.update(users)
        if uids:
            self.user_uids.update(uids)
            (self.directory / "mail").chmod(0o1777)  # they create their homes here
        self._write_users()
        name, password = next(reversed(users.items()))
        deadline = time.monotonic() + 10
        while not self._can_login(name, password):
            if time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not pick up new user {name}")
            time.sleep(0.2)

    def write_maildir(self, user: str, messages: list[bytes]) -> None:
        """Put `messages` straight into a pool user's Maildir (`cur/`, no flags) without IMAP:
        filling ten thousand accounts by APPEND takes minutes, this takes seconds. Dovecot
        indexes them at the user's first login (they get UIDs 1.. in file-name order)."""
        maildir = self.directory / "mail" / user / "Maildir"
        uid, gid = _nobody_uid(), _nobody_gid()
        for sub in ("", "cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        base = int(time.time())
        for i, body in enumerate(messages):
            path = maildir / "cur" / f"{base}.M{i:06d}P{os.getpid()}.imapvm,S={len(body)}:2,"
            path.write_bytes(body)
            os.chown(path, uid, gid)
        for d in (maildir.parent, maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
            os.chown(d, uid, gid)

    def _can_login(self, name: str, password: str) -> bool:
        import imaplib

        conn = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            conn.login(name, password)
            return True
        except imaplib.IMAP4.error:
            return False
        finally:
            conn.shutdown()

    def _write_users(self) -> None:
        uid, gid = _nobody_uid(), _nobody_gid()
        lines = [
            f"{name}:{{PLAIN}}{pw}:{self.user_uids.get(name, uid)}:{gid}::"
            f"{self.directory}/mail/{name}\n"
            for name, pw in self.users.items()
            if pw != pool_password(name)
        ]
        tmp = self.directory / "users.tmp"
        tmp.write_text("".join(lines))
        tmp.replace(self.directory / "users")

    # -- the command log of the restricted variant ------------------------------------------
    def commands(self, since: int = 0) -> list[str]:
        """Every finished IMAP command after login, as `NAME args` (restricted variant only).

        `since` is a value returned by `command_mark()`: only commands logged after it count.
        """
        if self.variant != "restricted":
            raise RuntimeError("only the restricted variant logs commands")
        self._settle_log()
        lines = self.log_path.read_text(errors="replace").splitlines()[since:]
        return [m.group(1).strip() for line in lines
                if (m := _FINISHED.search(line)) and f"imap({_LOG_SENTINEL})" not in line]

    def _settle_log(self) -> None:
        """Wait until every session that ended before this call has its lines in the log.

        Dovecot's imap processes hand their log lines to the log process, which writes them
        when it is next scheduled: on a busy machine a session's last commands reach the file
        after its client has logged out (CI once read the log too early and missed them). A
        sentinel session that logs in and out afterwards is a barrier: its own "Disconnected"
        line is written after the lines that were handed over before it began.
        """
        import imaplib

        def ends() -> int:
            return len(_SENTINEL_END.findall(self.log_path.read_text(errors="replace")))

        before = ends()
        conn = imaplib.IMAP4(self.host, self.port, timeout=10)
        conn.login(_LOG_SENTINEL, pool_password(_LOG_SENTINEL))
        conn.logout()
        deadline = time.monotonic() + 30
        while ends() <= before:
            if time.monotonic() > deadline:
                raise RuntimeError("dovecot never logged the sentinel session's end")
            time.sleep(0.02)

    def command_mark(self) -> int:
        """A position in the command log, for `commands(since=...)`."""
        return len(self.log_path.read_text(errors="replace").splitlines())

    def assert_only_offered(self, since: int = 0) -> None:
        """Fail if any client used a command or argument that the restricted CAPABILITY lacks."""
        bad = unoffered_commands(self.commands(since), RESTRICTED_CAPABILITY)
        assert not bad, "client used what the server did not offer:\n" + "\n".join(bad)

    def _logs(self) -> str:
        parts = []
        for name in ("stderr.log", "dovecot.log"):
            p = self.directory / name
            if p.exists():
                parts.append(f"--- {name}\n{p.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def _config(self) -> str:
        d = self.directory
        extra = ""
        if self.variant == "gssapi":
            extra = (f"auth_krb5_keytab = {self.krb5_keytab}\n"
                     "auth_gssapi_hostname = localhost\n"
                     f"import_environment = TZ KRB5_CONFIG={self.krb5_config}\n")
        if self.variant == "oauth":
            (d / "oauth2.conf.ext").write_text(
                f"introspection_mode = post\nintrospection_url = {self.introspection_url}\n"
                "username_attribute = username\nactive_attribute = active\n"
                "active_value = true\nforce_introspection = yes\n")
            extra = ("passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                     f"  args = {d}/oauth2.conf.ext\n}}\n")
        if self.variant == "restricted":
            extra = (
                f"imap_capability = {RESTRICTED_CAPABILITY}\n"
                "log_debug = event=imap_command_finished\n"
            )
        ssl = "ssl = no"
        if self.variant == "tls":
            ssl = f"ssl = yes\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem"
        return f"""# throwaway test dovecot ({self.variant}); everything lives under {d}
base_dir = {d}/run
state_dir = {d}/run/state
instance_name = imapvm-test-{self.port}
log_path = {d}/dovecot.log
protocols = imap
listen = {self.host}
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login{_EXTRA_MECHANISMS.get(self.variant, "")}
auth_failure_delay = 0
auth_master_user_separator = *
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_plugins = quota
mailbox_list_index = yes
mail_attribute_dict = file:%h/dovecot-attributes
imap_metadata = yes
{extra}namespace inbox {{
  inbox = yes
  separator = {self.separator}
  prefix =
}}
passdb {{
  driver = passwd-file
  args = {d}/masters
  master = yes
  result_success = continue
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {d}/users
}}
# Pool users (any name, password `<name>-pw`) exist without any file change: passwd-file is
# re-read at most once a second, so users created on the fly by fast tests come from here.
passdb {{
  driver = static
  args = password=%n-pw
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {d}/users
}}
userdb {{
  driver = static
  args = uid={_nobody_uid()} gid={_nobody_gid()} home={d}/mail/%n
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.tls_port}
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
  mail_max_userip_connections = 50
}}
plugin {{
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage={self.quota_kb}K
  quota_grace = 0
}}
{self.extra_config}"""


def _nobody_uid() -> int:
    import pwd

    return pwd.getpwnam("nobody").pw_uid


def _nobody_gid() -> int:
    import pwd

    return pwd.getpwnam("nobody").pw_gid
