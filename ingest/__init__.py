"""Front doors and workers of the CRM ingestion pipeline.

Inputs arrive (SMTP, IMAP, webhooks), are stored raw in the inbound store, and
are processed by Dramatiq actors that call one `crm_core` use case each.
"""
