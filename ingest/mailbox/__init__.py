"""Mail front doors (SMTP listener, later IMAP) and the e-mail processing step."""
