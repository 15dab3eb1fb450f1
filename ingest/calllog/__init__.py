"""Call-log webhooks (issue 5): verify, store raw, enqueue; then CallRecord -> card."""
