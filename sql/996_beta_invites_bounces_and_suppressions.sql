-- Delivery outcomes that last, and the list of addresses never to email again.
--
-- beta_invites.delivery_outcome gains `bounced`: the address was refused for good (a 5xx reply
-- at send time, or a bounce report that arrived later by mail). A bounced invite is not sent
-- again by `send`. message_id is the Message-ID its last message went out with, so a bounce
-- report that arrives later can be matched to its invite.
--
-- public.beta_invites_suppressions holds, for every address that must not be emailed again
-- (hard bounces, unsubscribes, spam complaints, entries by hand), a SHA-256 digest of the
-- address in its comparison form (invites_email_key), never the address itself: the list
-- outlives the anonymising sweep without becoming a list of addresses. Anyone who can read it
-- and guesses an address can confirm the guess; nobody can read the addresses off it.

ALTER TABLE public.beta_invites
  ADD COLUMN IF NOT EXISTS message_id TEXT;

COMMENT ON COLUMN public.beta_invites.message_id IS
  'The Message-ID of the last message sent for this invite (without angle brackets), to match bounce reports.';
COMMENT ON COLUMN public.beta_invites.delivery_outcome IS
  'How the last delivery attempt ended when it did not simply succeed: bounced (refused for good; not sent again), failed (refused for now; sent again by the next run) or uncertain (fate unknown; not sent again automatically).';

CREATE INDEX IF NOT EXISTS idx_beta_invites_message_id
  ON public.beta_invites (message_id) WHERE message_id IS NOT NULL;

CREATE OR REPLACE FUNCTION public.invites_email_digest(address text)
  RETURNS bytea
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $fn$
  SELECT sha256(convert_to(public.invites_email_key(address), 'UTF8'))
$fn$;

COMMENT ON FUNCTION public.invites_email_digest(text) IS
  'SHA-256 of an address in its comparison form: how the suppression list names an address without storing it.';

CREATE TABLE IF NOT EXISTS public.beta_invites_suppressions (
  digest BYTEA PRIMARY KEY CHECK (octet_length(digest) = 32),
  reason TEXT NOT NULL CHECK (reason IN ('bounced', 'unsubscribed', 'complained', 'manual')),
  source TEXT NOT NULL,
  detail TEXT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

COMMENT ON TABLE public.beta_invites_suppressions IS
  'Addresses never to email again, by digest (invites_email_digest), never by address.';
COMMENT ON COLUMN public.beta_invites_suppressions.reason IS
  'bounced (a hard bounce), unsubscribed, complained (a spam complaint) or manual.';
COMMENT ON COLUMN public.beta_invites_suppressions.source IS
  'What recorded it: send, bounces-import, unsubscribe (the host application), suppress-add.';
COMMENT ON COLUMN public.beta_invites_suppressions.detail IS
  'Free text without the address: a bounce''s status and reply, an operator''s note.';
