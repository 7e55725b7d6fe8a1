"""How invitations are sent: one answer, in five parts.

- `channel`: where messages go (SMTP_URL or an outbox) and who they come from, checked first;
- `message`: one invitation as it goes on the wire (CRLF, IDNA, SMTPUTF8, quoted-printable);
- `smtp`: SMTP delivery with a deadline on every step, retries, and uncertain outcomes;
- `outbox`: .eml files instead of email, and their removal by the anonymising sweep;
- `engine`: the crash-safe loop over a cohort (lock, send, record, commit), resend, preview.
"""
