"""The SMTP door's replies (RFC 3463 enhanced status codes), shared by the handler
(`smtp_handler`) and the protocol (`smtp_session`). None carries internal detail.
"""

from __future__ import annotations

UNKNOWN_ADDRESS = "550 5.1.1 No such archive address"
NOT_OUR_DOMAIN = "550 5.7.1 Relaying denied"
BAD_ADDRESS = "501 5.1.3 Bad recipient address syntax"
TRY_LATER = "451 4.3.0 Temporary failure, please try again later"
ACCEPTED = "250 2.0.0 Message accepted"
RECIPIENT_OK = "250 2.1.5 OK"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
TOO_MANY_UNKNOWN = "450 4.7.1 Too many unknown recipients, try later"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try later"
COMMAND_TOO_LONG = "500 5.5.2 Line too long"
TEXT_LINE_TOO_LONG = "500 5.5.2 Line too long in message text"
MUST_STARTTLS = "530 5.7.0 Must issue a STARTTLS command first"
TOO_MUCH_DATA = "552 5.3.4 Message size exceeds fixed limit"
SERVICE_NOT_AVAILABLE = "421 4.3.0 Service not available, closing connection"
# {host}: our hostname. Written as the session is closed.
IDLE_TIMEOUT = "421 4.4.2 {host} Idle timeout, closing connection"
SESSION_TOO_LONG = "421 4.4.2 {host} Session time limit reached, closing connection"
TOO_MANY_JUNK = "421 4.7.0 {host} Too many commands without mail, closing connection"

# XFORWARD (Postfix): our answers, as Postfix's smtpd words them.
XFORWARD_OK = "250 2.0.0 Ok"
XFORWARD_REFUSED = "550 5.7.0 Error: insufficient authorization"
XFORWARD_NO_HELO = "503 5.5.1 Error: send HELO/EHLO first"
XFORWARD_IN_MAIL = "503 5.5.1 Error: MAIL transaction in progress"
XFORWARD_SYNTAX = "501 5.5.4 Syntax: XFORWARD attribute=value..."

# aiosmtpd's own answers to the same cases, without enhanced status codes (RFC 2034).
WITH_ENHANCED_CODE = {
    "500 Command line too long": COMMAND_TOO_LONG,
    "500 Line too long (see RFC5321 4.5.3.1.6)": TEXT_LINE_TOO_LONG,
    "530 Must issue a STARTTLS command first": MUST_STARTTLS,
    "552 Error: message size exceeds fixed maximum message size": TOO_MUCH_DATA,
}
