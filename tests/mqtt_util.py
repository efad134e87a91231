"""A real mosquitto broker on a free loopback port, and a subscriber that records what it sees.

Each test starts its own broker from a generated config (never the system service): anonymous,
or with a password file made by ``mosquitto_passwd``. ``stop()`` and ``start()`` again on the
same port stand in for a broker that goes away and comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
needs_mosquitto = pytest.mark.skipif(
    not os.path.exists(MOSQUITTO), reason="mosquitto is not installed (scripts/bootstrap --test)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1: (CA, certificate, key) files."""
    now = datetime.datetime.now(datetime.UTC)

    def issue(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: Any, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        else:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )  # fmt: skip
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca_cert = issue("test CA", ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue("127.0.0.1", key, ca_name, ca_key, ca=False)
    paths = folder / "ca.crt", folder / "server.crt", folder / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class Broker:
    """One mosquitto process; ``url`` is where the bridge finds it."""

    def __init__(
        self, folder: Path, *, users: dict[str, str] | None = None, tls: bool = False
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ca: Path | None = None
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest none"]
        if tls:
            self.ca, cert, key = make_tls(folder)
            lines += [f"certfile {cert}", f"keyfile {key}"]
        if os.geteuid() == 0:
            lines.append("user root")  # as root mosquitto would switch to a user we lack
        if users:
            passwd = folder / "passwd"
            passwd.touch(mode=0o600)
            for user, password in users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwd), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    async def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - it returns at once; the wait is below
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err}")
            await asyncio.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        """Stop the broker (its retained messages go with it: persistence is off)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


@dataclass
class Seen:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Watcher:
    """A subscriber to ``#`` that keeps every message it receives."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[Seen] = []
        self._new = asyncio.Event()

    async def run(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
            self.messages.append(Seen(message.topic.value, data, message.retain))
            self._new.set()

    def on(self, topic: str) -> list[Seen]:
        return [m for m in self.messages if m.topic == topic]

    def last(self, topic: str) -> Seen | None:
        found = self.on(topic)
        return found[-1] if found else None

    async def wait(self, check: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Wait until ``check()`` gives something true, and return it."""
        async with asyncio.timeout(timeout):
            while not (result := check()):
                self._new.clear()
                await self._new.wait()
            return result

    async def wait_for(
        self, topic: str, check: Callable[[Seen], bool], timeout: float = 20.0
    ) -> Seen:
        """Wait until the last message on ``topic`` passes ``check``, and return it."""

        def found() -> Seen | None:
            last = self.last(topic)
            return last if last is not None and check(last) else None

        seen: Seen = await self.wait(found, timeout)
        return seen

    async def wait_payload(self, topic: str, payload: bytes, timeout: float = 20.0) -> Seen:
        """Wait until the last message on ``topic`` is ``payload``."""
        return await self.wait_for(topic, lambda m: m.payload == payload, timeout)

    async def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        await self.client.publish(topic, payload, qos=1, retain=retain)


@contextlib.asynccontextmanager
async def watching(
    broker: Broker, topic: str = "#", *, username: str | None = None, password: str | None = None
) -> AsyncIterator[Watcher]:
    """A connected Watcher of ``topic`` on ``broker``."""
    tls = ssl.create_default_context(cafile=str(broker.ca)) if broker.ca is not None else None
    async with aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username=username,
        password=password,
        timeout=10,
        tls_context=tls,
    ) as client:
        await client.subscribe(topic, qos=1)
        watcher = Watcher(client)
        task = asyncio.get_running_loop().create_task(watcher.run())
        try:
            yield watcher
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
