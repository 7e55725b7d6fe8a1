-- 991_beta_invites_delivery.sql
-- Delivery and redemption details the invites CLI records.
--
-- sent_at: when the invitation email was accepted by the mail server, or
-- when the operator marked the invite as delivered by other means
-- (`invites generate --mark-sent`). NULL means nobody has been told the
-- code yet, so `invites send` still owes that person a message.
--
-- redeemed_by: the account created with the code, when the caller of
-- redeem() knows it. ON DELETE SET NULL like sent_by: deleting an account
-- must not delete the history of the invitation.
--
-- Both statements are idempotent so that the host application may run this
-- file itself.

ALTER TABLE public.beta_invites
  ADD COLUMN IF NOT EXISTS sent_at TIMESTAMPTZ;

ALTER TABLE public.beta_invites
  ADD COLUMN IF NOT EXISTS redeemed_by UUID REFERENCES public.users(id) ON DELETE SET NULL;

COMMENT ON COLUMN public.beta_invites.sent_at IS
  'When the invitation was accepted by the mail server or marked delivered. NULL: not yet delivered.';
COMMENT ON COLUMN public.beta_invites.redeemed_by IS
  'The account (public.users.id) created with this code, when known.';
