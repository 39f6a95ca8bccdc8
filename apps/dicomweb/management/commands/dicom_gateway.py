import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.hardening import harden_process
from apps.dicomweb.gateway import DEFAULT_AE_TITLE, DEFAULT_HOST, DEFAULT_PORT, gateway_start, gateway_stop, tls_context


class Command(BaseCommand):
    help = (
        "Run the DICOM gateway: C-ECHO and C-STORE from registered DICOM nodes into their hospital's archive."
        " Stops gracefully on SIGTERM or SIGINT."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=DEFAULT_HOST, help=f"Address to listen on (default {DEFAULT_HOST})")
        parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
        parser.add_argument(
            "--ae-title", default=DEFAULT_AE_TITLE, help=f"This gateway's AE title (default {DEFAULT_AE_TITLE})"
        )
        parser.add_argument("--tls-cert", help="PEM certificate (chain) of the gateway; enables TLS")
        parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
        parser.add_argument("--tls-ca", help="PEM CA certificates; senders must then present a certificate they issued")

    def handle(self, *args: Any, **options: Any) -> None:
        ae_title = options["ae_title"].strip()
        if not ae_title or len(ae_title) > 16 or "\\" in ae_title or not ae_title.isascii():
            raise CommandError("--ae-title must be 1 to 16 ASCII characters without a backslash.")
        cert, key, ca = options["tls_cert"], options["tls_key"], options["tls_ca"]
        if bool(cert) != bool(key):
            raise CommandError("--tls-cert and --tls-key go together.")
        if ca and not cert:
            raise CommandError("--tls-ca needs --tls-cert and --tls-key.")
        try:
            ssl_context = tls_context(cert_file=cert, key_file=key, ca_file=ca) if cert else None
        except (OSError, ValueError) as error:
            raise CommandError(f"Cannot load the TLS files: {error}") from error

        harden_process()  # it holds what it receives: no core dumps, no new privileges
        try:
            server = gateway_start(
                host=options["host"], port=options["port"], ae_title=ae_title, ssl_context=ssl_context
            )
        except OSError as error:
            raise CommandError(f"Cannot listen on {options['host']}:{options['port']}: {error}") from error
        stop = threading.Event()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signal_number, lambda *_: stop.set())
        self.stdout.write(
            f"DICOM gateway {ae_title} listening on {options['host']}:{options['port']}"
            f"{' with TLS' if ssl_context else ''}{', client certificates required' if ca else ''}"
        )
        stop.wait()
        self.stdout.write("Stopping: letting running associations finish")
        gateway_stop(server)
