-- 993_beta_invites_issue_and_send_indexes.sql
-- Indexes for the two hot paths of the invites CLI.
--
-- Issuing skips people who already hold a live or redeemed invite, comparing
-- addresses case-insensitively: that lookup runs once per recipient.
CREATE INDEX IF NOT EXISTS idx_beta_invites_email_lower
  ON public.beta_invites (lower(email));

-- `invites send` walks the unsent invites of one cohort in issue order. The
-- partial index holds only what is still owed a message, so it stays small
-- however large the table grows.
CREATE INDEX IF NOT EXISTS idx_beta_invites_unsent
  ON public.beta_invites (cohort, created_at, id)
  WHERE sent_at IS NULL AND used_at IS NULL;
