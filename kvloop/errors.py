"""Error codes of the wire protocol and the exception that carries one to the reply.

Every error reply is ``{"status":"Error","code":CODE,"mesg":...}``. Code anywhere in the core
raises :class:`CommandError` with one of the codes below; the command layer turns it into that
reply. The codes are part of the protocol contract (SPEC §2): never rename one.
"""

from __future__ import annotations

NOT_FOUND = "NOT_FOUND"
UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
BAD_REQUEST = "BAD_REQUEST"
TOO_LARGE = "TOO_LARGE"
NO_TRANSACTION = "NO_TRANSACTION"
IN_TRANSACTION = "IN_TRANSACTION"
CONFLICT = "CONFLICT"
AUTH_REQUIRED = "AUTH_REQUIRED"
AUTH_FAILED = "AUTH_FAILED"
LIMIT = "LIMIT"
READONLY = "READONLY"
INTERNAL = "INTERNAL"

ALL_CODES = (
    NOT_FOUND, UNKNOWN_COMMAND, BAD_REQUEST, TOO_LARGE, NO_TRANSACTION, IN_TRANSACTION,
    CONFLICT, AUTH_REQUIRED, AUTH_FAILED, LIMIT, READONLY, INTERNAL,
)


class CommandError(Exception):
    """A command failed in an expected way; ``code`` and ``mesg`` become the error reply.

    Raising it promises that the failed command changed nothing, unless ``mesg`` says
    otherwise (a SERIALIZABLE COMMIT that fails validation says the transaction was rolled back).
    """

    def __init__(self, code: str, mesg: str) -> None:
        super().__init__(f"{code}: {mesg}")
        self.code = code
        self.mesg = mesg
