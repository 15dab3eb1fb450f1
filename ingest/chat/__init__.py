"""Chat widget, WhatsApp and SMS webhooks (issue 6): verify, store raw, enqueue."""
