"""The fault suite: real damage (kill -9, Redis and PostgreSQL restarts, a broker outage)
under a steady load of mail, calls and chat, then exactly-once and counter checks."""
