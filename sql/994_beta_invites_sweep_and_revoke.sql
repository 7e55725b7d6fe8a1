-- 994_beta_invites_sweep_and_revoke.sql
-- Bookkeeping for `invites expire` (the anonymising sweep) and `invites revoke`.
--
-- anonymized_at: when the sweep replaced the email of an expired, never
-- redeemed invite. The seed's partial index idx_beta_invites_pending_expiry
-- keeps every unredeemed row forever, anonymised or not, so a sweep using it
-- would walk all the rows earlier sweeps already finished. The partial index
-- below holds only what is still to do, so a sweep right after a sweep
-- touches nothing.
--
-- revoked_at / revoked_reason: `invites revoke` ends an invite early by
-- setting expires_at to now(); these say that it was revoked, and why.
-- The reason is operator text: do not put personal data in it.

ALTER TABLE public.beta_invites
  ADD COLUMN IF NOT EXISTS anonymized_at TIMESTAMPTZ;
ALTER TABLE public.beta_invites
  ADD COLUMN IF NOT EXISTS revoked_at TIMESTAMPTZ;
ALTER TABLE public.beta_invites
  ADD COLUMN IF NOT EXISTS revoked_reason TEXT;

COMMENT ON COLUMN public.beta_invites.anonymized_at IS
  'When `invites expire` replaced the email of this expired, unredeemed invite. NULL: not anonymised.';
COMMENT ON COLUMN public.beta_invites.revoked_at IS
  'When the invite was revoked (its expires_at was set to that moment). NULL: never revoked.';
COMMENT ON COLUMN public.beta_invites.revoked_reason IS
  'Why it was revoked (operator text, no personal data).';

CREATE INDEX IF NOT EXISTS idx_beta_invites_sweep
  ON public.beta_invites (expires_at)
  WHERE used_at IS NULL AND anonymized_at IS NULL;
