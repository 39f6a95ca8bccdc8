"""A helper process that prepares objects for the process that started it (apps.imaging.parse_pool):
``python -m apps.imaging.dicom.helper``, with requests on its standard input and results on its
standard output, as multiprocessing connection messages (pickles of our own types, between two
processes of ours; an object's bytes as they are, in a message of their own after its number).
It ends when its input closes, that is when its parent ends or lets it go.
No Django here."""

import os
import sys
from multiprocessing.connection import Connection

from pydicom import config

from apps.core.hardening import harden_process
from apps.imaging.dicom.prepare import prepare_or_none

READY = "ready"


def serve(requests: Connection, results: Connection) -> None:
    # The archive's pydicom settings, as ImagingConfig.ready sets them in every Django process.
    config.settings.reading_validation_mode = config.IGNORE
    results.send(READY)
    while True:
        try:
            number, policy = requests.recv()
            data = requests.recv_bytes()
        except EOFError:
            return
        # The object's size beside its number: the request checks both before it uses the result.
        results.send((number, len(data), prepare_or_none(data, policy)))


def main() -> None:
    # It holds the objects it parses: no core dumps, no new privileges.
    harden_process()
    requests = Connection(os.dup(0), writable=False)
    results = Connection(os.dup(1), readable=False)
    # Anything printed goes to the log (standard error), never into the results.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(requests, results)


if __name__ == "__main__":
    main()
