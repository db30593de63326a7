"""TLS and mTLS for servers and the channels between services, from PEM files.

Server certificates are read through grpc's dynamic credentials: before each new
handshake grpc asks :class:`ReloadingServerCertificates` for a configuration, and
it answers with a fresh one only when a file's mtime changed. cert-manager (or any
tool) rewriting the mounted files is picked up by the next connection, with no
restart; connections already open keep their certificate until they close (the
server's maximum connection age bounds that).

Client-side (the channels a service opens to others) the files are read when the channel is made;
:class:`ClientTls` tells the owner when they changed, so it can open new channels.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger("loomflow.tls")


def _mtimes(paths: tuple[str, ...]) -> tuple[int, ...]:
    """Nanosecond mtimes (and sizes, so a same-tick rewrite still counts); -1 for a missing file."""
    stamps: list[int] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamps += [-1, -1]
            continue
        stamps += [st.st_mtime_ns, st.st_size]
    return tuple(stamps)


class ReloadingServerCertificates:
    """The server's certificate configuration, re-read when the PEM files change."""

    def __init__(self, cert_file: str, key_file: str, client_ca_file: str = "") -> None:
        self._paths = tuple(p for p in (cert_file, key_file, client_ca_file) if p)
        self._cert_file, self._key_file, self._client_ca_file = cert_file, key_file, client_ca_file
        self._lock = threading.Lock()  # grpc calls the fetcher from its own threads
        self._stamps = _mtimes(self._paths)
        self.loads = 0
        self.initial = self._load()

    def _load(self) -> grpc.ServerCertificateConfiguration:
        key = Path(self._key_file).read_bytes()
        chain = Path(self._cert_file).read_bytes()
        roots = Path(self._client_ca_file).read_bytes() if self._client_ca_file else None
        self.loads += 1
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        """grpc's fetcher: a new configuration when the files changed, None to keep the current one."""
        stamps = _mtimes(self._paths)
        if stamps == self._stamps:
            return None
        with self._lock:
            if stamps == self._stamps:
                return None
            try:
                config = self._load()
            except OSError as error:
                # Mid-rotation (one file written, the other not yet): keep serving the old pair.
                log.warning("certificate files changed but cannot be read yet: %s", error)
                return None
            self._stamps = stamps
        log.info("reloaded TLS certificates", extra={"cert_file": self._cert_file})
        return config

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.initial,
            self,  # type: ignore[arg-type]  # grpc documents None as "keep the current one"; the stub omits it
            require_client_authentication=bool(self._client_ca_file),
        )


def server_credentials(cert_file: str, key_file: str, client_ca_file: str = "") -> grpc.ServerCredentials | None:
    """TLS credentials for a server (mTLS when ``client_ca_file`` is set), or None for plaintext."""
    if not cert_file and not key_file:
        if client_ca_file:
            raise ValueError("a client CA needs a server certificate: set the TLS cert and key too")
        return None
    if not (cert_file and key_file):
        raise ValueError("TLS needs both a certificate and its private key")
    return ReloadingServerCertificates(cert_file, key_file, client_ca_file).credentials()


@dataclass(frozen=True)
class ClientTls:
    """How a loomflow process dials another over TLS: the CA it trusts and, for mTLS, its own pair."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""
    """Overrides the name checked against the server certificate (an IP or `ipv4:` target)."""

    @property
    def enabled(self) -> bool:
        return bool(self.ca_file or self.cert_file)

    def files(self) -> tuple[str, ...]:
        return tuple(p for p in (self.ca_file, self.cert_file, self.key_file) if p)

    def stamps(self) -> tuple[int, ...]:
        """Changes when any file is rewritten: the owner re-makes its channels then."""
        return _mtimes(self.files())

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("a client certificate needs its private key (and the other way round)")
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca_file).read_bytes() if self.ca_file else None,
            private_key=Path(self.key_file).read_bytes() if self.key_file else None,
            certificate_chain=Path(self.cert_file).read_bytes() if self.cert_file else None,
        )

    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def secure_or_insecure_channel(target: str, tls: ClientTls, options: list[tuple[str, int | str]]) -> grpc.aio.Channel:
    """A channel to ``target``: TLS when ``tls`` names files, plaintext otherwise."""
    if tls.enabled:
        return grpc.aio.secure_channel(target, tls.credentials(), options=[*options, *tls.options()])
    return grpc.aio.insecure_channel(target, options=options)
