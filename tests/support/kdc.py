"""A throwaway Kerberos KDC (MIT krb5) for GSSAPI login tests: its own realm, database,
keytab for the IMAP service `imap/localhost` and users with passwords, in a temp directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.net import free_port

REALM = "TEST.IMAPVM"


@dataclass
class Kdc:
    directory: Path = field(default_factory=Path)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def krb5_config(self) -> Path:
        return self.directory / "krb5.conf"

    @property
    def keytab(self) -> Path:
        return self.directory / "imap.keytab"

    def env(self) -> dict[str, str]:
        return dict(os.environ, KRB5_CONFIG=str(self.krb5_config),
                    KRB5_KDC_PROFILE=str(self.directory / "kdc.conf"))

    def start(self) -> Kdc:
        for tool in ("krb5kdc", "kdb5_util", "kadmin.local", "kinit"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} missing (apt-get install krb5-kdc krb5-admin-server "
                                   "krb5-user)")
        self.directory = Path(tempfile.mkdtemp(prefix="kdc", dir="/tmp"))
        self.directory.chmod(0o755)
        self.port = free_port()
        d = self.directory
        self.krb5_config.write_text(
            f"[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n"
            " dns_lookup_realm = false\n rdns = false\n dns_canonicalize_hostname = false\n"
            " udp_preference_limit = 1\n"
            f"[realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{self.port}\n }}\n")
        (d / "kdc.conf").write_text(
            f"[kdcdefaults]\n kdc_ports = {self.port}\n kdc_tcp_ports = {self.port}\n"
            f"[realms]\n {REALM} = {{\n  database_name = {d}/principal\n"
            f"  key_stash_file = {d}/stash\n  acl_file = {d}/kadm5.acl\n }}\n")
        env = self.env()
        subprocess.run(["kdb5_util", "create", "-s", "-r", REALM, "-P", "kdc-master-pw"],
                       env=env, check=True, capture_output=True)
        self._kadmin("addprinc -randkey imap/localhost")
        self._kadmin(f"ktadd -k {self.keytab} imap/localhost")
        self.keytab.chmod(0o644)  # read by Dovecot's auth process
        self.process = subprocess.Popen(
            ["krb5kdc", "-n", "-P", str(d / "kdc.pid")], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(d / "kdc.log", "wb"),  # noqa: SIM115 - owned by the child
            start_new_session=True)
        return self

    def _kadmin(self, query: str) -> None:
        subprocess.run(["kadmin.local", "-q", query], env=self.env(), check=True,
                       capture_output=True)

    def add_user(self, name: str, password: str) -> None:
        self._kadmin(f"addprinc -pw {password} {name}")

    def kinit(self, name: str, password: str, ccache: Path) -> None:
        """Get `name`'s tickets into `ccache` (what the operator's kinit or k5start does)."""
        env = dict(self.env(), KRB5CCNAME=f"FILE:{ccache}")
        subprocess.run(["kinit", name], input=password.encode(), env=env, check=True,
                       capture_output=True, timeout=20)

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        if self.directory != Path() and self.directory.exists():
            shutil.rmtree(self.directory, ignore_errors=True)
