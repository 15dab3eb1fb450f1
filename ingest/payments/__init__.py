"""Payment webhooks (issue 12): Stripe and our own JSON; verify, store raw, enqueue; then
one payment event -> its card."""
