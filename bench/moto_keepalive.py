"""A moto server that keeps its connections alive (HTTP/1.1), as DynamoDB does.

werkzeug, under moto's server, closes every connection after its response, so each request a
client sends pays a TCP connect and close that a client of DynamoDB does not: a benchmark of our
CPU per request would count them. Same arguments as ``python -m moto.server``, and:

``--no-transaction-backup``: moto backs a TransactWriteItems up by copying the whole table once
per item of the transaction, to restore it if one fails; past a few thousand items a transaction
takes minutes and the copies fill the memory. With this flag the table is not copied, so a failed
transaction would stay partly applied: only for benchmarks whose transactions do not fail, which
check their totals afterwards (bench/events.py --import).
"""
import io
import sys

from moto import server
from moto.moto_server import werkzeug_app


class KeepAliveHandler(werkzeug_app.MotoRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # answers go out at once, as from DynamoDB (not 40 ms later)

    def run_wsgi(self):
        # Read the whole body first: the app may leave part of it unread, which the next request
        # on the connection would then start with (why werkzeug closes every connection).
        length = int(self.headers.get("Content-Length") or 0)
        real, self.rfile = self.rfile, io.BytesIO(self.rfile.read(length) if length else b"")
        try:
            return super().run_wsgi()
        finally:
            self.rfile = real

    def send_header(self, keyword, value):
        if keyword.lower() == "connection" and value.lower() == "close":
            return  # the body is read whole above: the next request starts where it should
        super().send_header(keyword, value)


def without_transaction_backup() -> None:
    import copy

    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    class TableNotCopied:
        @staticmethod
        def deepcopy(value, *args):
            return value if isinstance(value, Table) else copy.deepcopy(value, *args)

    models.copy = TableNotCopied  # the module's other copies (an item's, for its old image) stay


if "--no-transaction-backup" in sys.argv:
    sys.argv.remove("--no-transaction-backup")
    without_transaction_backup()
werkzeug_app.MotoRequestHandler = KeepAliveHandler
server.MotoRequestHandler = KeepAliveHandler
server.main(sys.argv[1:])
