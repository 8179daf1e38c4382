"""A throwaway Cyrus IMAP 3.6 server (recipe: shared/reference/test-infra.md §2).

Debian's cyrus-imapd conflicts with dovecot-imapd, so `scripts/bootstrap.sh test` installs
cyrus-common (master, tools) and unpacks only the `imapd` binary from the cyrus-imapd .deb into
`.cache/cyrus`. Users live in a private sasldb; `vmadmin` is a proxy server (the master-user
equivalent: AUTHENTICATE PLAIN with an authorization id) and an admin.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.net import free_port, stop_process_group, wait_for_greeting

REPO = Path(__file__).resolve().parents[2]
IMAPD = REPO / ".cache/cyrus/usr/lib/cyrus/bin/imapd"
MASTER = Path("/usr/lib/cyrus/bin/master")
CTL_CYRUSDB = Path("/usr/lib/cyrus/bin/ctl_cyrusdb")
MASTER_USER = "vmadmin"
MASTER_PASSWORD = "masterpw"
QUOTA_KB = 300


@dataclass
class CyrusServer:
    host: str = "127.0.0.1"
    port: int = 0
    directory: Path = field(default_factory=Path)
    process: subprocess.Popen[bytes] | None = None
    users: dict[str, str] = field(default_factory=dict)
    separator: str = "/"
    variant: str = "cyrus"

    def start(self, timeout: float = 20.0) -> CyrusServer:
        for need in (IMAPD, MASTER, CTL_CYRUSDB):
            if not need.exists():
                raise RuntimeError(f"Cyrus is not installed: {need} missing "
                                   "(run scripts/bootstrap.sh test)")
        if shutil.which("saslpasswd2") is None:
            raise RuntimeError("saslpasswd2 missing (apt-get install sasl2-bin)")
        self.directory = Path(tempfile.mkdtemp(prefix="cy", dir="/tmp"))
        d = self.directory
        for sub in ("conf", "spool", "run"):
            (d / sub).mkdir()
        self.port = self.port or free_port(self.host)
        (d / "imapd.conf").write_text(self._imapd_conf())
        (d / "cyrus.conf").write_text(self._cyrus_conf())
        self._saslpasswd(MASTER_USER, MASTER_PASSWORD)
        self._chown()
        self.process = subprocess.Popen(
            [str(MASTER), "-C", str(d / "imapd.conf"), "-M", str(d / "cyrus.conf"),
             "-p", str(d / "run/master.pid"), "-D", "-L", str(d / "master.log")],
            stdin=subprocess.DEVNULL, start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=open(d / "stderr.log", "wb"),  # noqa: SIM115 - owned by the child
        )
        try:
            wait_for_greeting(self.host, self.port, timeout, alive=self.process.poll)
        except TimeoutError as exc:
            logs = "\n".join(
                (d / n).read_text(errors="replace")[-3000:]
                for n in ("master.log", "stderr.log") if (d / n).exists()
            )
            self.stop()
            raise RuntimeError(f"cyrus did not start: {exc}\n{logs}") from exc
        return self

    def stop(self) -> None:
        proc, self.process = self.process, None
        stop_process_group(proc)
        if self.directory != Path() and self.directory.exists():
            shutil.rmtree(self.directory, ignore_errors=True)

    def add_user(self, name: str, password: str) -> None:
        """Create a user; its mailbox and Old/Work/Family/Friends appear at first login."""
        self.users[name] = password
        self._saslpasswd(name, password)
        self._chown()

    def _saslpasswd(self, name: str, password: str) -> None:
        subprocess.run(
            ["saslpasswd2", "-p", "-c", "-f", str(self.directory / "sasldb2"), name],
            input=password.encode(), check=True, capture_output=True,
        )

    def _chown(self) -> None:
        uid, gid = pwd.getpwnam("cyrus").pw_uid, grp.getgrnam("mail").gr_gid
        for root, dirs, files in os.walk(self.directory):
            for name in dirs + files:
                os.chown(os.path.join(root, name), uid, gid)
        os.chown(self.directory, uid, gid)

    def _imapd_conf(self) -> str:
        d = self.directory
        return f"""configdirectory: {d}/conf
partition-default: {d}/spool
admins: cyrus {MASTER_USER}
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {d}/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
unixhierarchysep: yes
altnamespace: yes
proxyservers: {MASTER_USER}
autocreate_post: yes
autocreate_quota: {QUOTA_KB}
autocreate_inbox_folders: Old|Work|Family|Friends
imapidlepoll: 1
master_pid_file: {d}/run/master.pid
lmtpsocket: {d}/run/lmtp
idlesocket: {d}/run/idle
notifysocket: {d}/run/notify
syslog_prefix: cyrus-test-{self.port}
"""

    def _cyrus_conf(self) -> str:
        d = self.directory
        conf = d / "imapd.conf"
        return f"""START {{
  recover cmd="{CTL_CYRUSDB} -r -C {conf}"
}}
SERVICES {{
  imap cmd="{IMAPD} -C {conf}" listen="{self.host}:{self.port}" prefork=0
}}
EVENTS {{
  checkpoint cmd="{CTL_CYRUSDB} -c -C {conf}" period=30
}}
"""
