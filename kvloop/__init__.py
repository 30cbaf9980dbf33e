"""kvloop: a key/value database server with transactions, in pure Python.

Map of the package (data flows one way: socket -> protocol -> commands -> store -> reply):

    errors.py       the protocol's error codes and CommandError, which carries one to a reply
    protocol.py     bytes -> request lines (framing, limits) -> (VERB, rest); replies -> bytes
    commands.py     one function per command and the dispatch table (CommandExecutor), and
                    the batch path for a read's lines with its plain GET/PUT fast paths
    replycache.py   GET replies made once per value (ReplyCache), dropped when it changes
    session.py      one client's state between commands: open transaction, AUTH, QUIT
    transaction.py  one open transaction: isolation level, snapshot, undo log, read set, ranges
    store.py        the data: values, write intents, commit sequence, older versions for
                    snapshot reads (Versions), range reads (SCAN)
    keyindex.py     SortedKeys: the committed keys in order, a list of sorted chunks
    stats.py        the counters behind STATS
    logformat.py    the data files' bytes: headers, records (length + CRC32), commits, snapshots
    datafiles.py    the data folder: lock, log segments, snapshots, recovery, retiring old files
    wal.py          the running log: group commit, fsync modes, compaction child, READONLY
    config.py       Settings (one dataclass) and the server's command line
    server.py       the selectors event loop: accepting, fairness, limits, timers, shutdown
    connection.py   one client connection as the loop sees it, with its explicit state
    transport.py    between the loop and a socket: plain TCP, or TLS over memory BIOs
    timers.py       cancellable timers for the loop (handshake, idle, AUTH delay, linger)
    connlimits.py   connection limits: their LIMIT replies, the client buffer budget
    limits.py       command-layer limits: AUTH throttling, idle-transaction deadlines, write cost
    client.py       the Python client API (Client, errors with the server's codes)
    cli.py          client.py's interactive prompt and script runner
    bench.py        ``python -m kvloop.bench``: a multi-process load generator (ops/s, latency)

Everything but server.py, transport.py, datafiles.py, wal.py, client.py, cli.py and bench.py
does no IO and is tested without sockets or files.
"""

from .client import (
    Client,
    CommitOutcomeUnknown,
    ConflictError,
    ConnectionLost,
    KvloopError,
    NotFoundError,
    ServerError,
)

__version__ = "0.1.0"

__all__ = [
    "Client", "CommitOutcomeUnknown", "ConflictError", "ConnectionLost", "KvloopError",
    "NotFoundError", "ServerError", "__version__",
]
