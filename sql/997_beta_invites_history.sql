-- 997_beta_invites_history.sql
-- Every invite's history, reminders, and redemption as SQL functions.
--
-- public.beta_invites_events: an append-only history of every invite. Rows
-- are written by triggers on beta_invites (and on beta_invites_reminders), in
-- the same transaction as the change, whoever makes it: the invites CLI, its
-- Python API, the functions below, or the host application's own
--   UPDATE public.beta_invites SET used_at = now() WHERE code = ...
-- The triggers are statement-level with transition tables, so a bulk insert
-- of 100,000 invites writes its 100,000 events in one set-based INSERT.
--
-- Kinds and their detail (jsonb, never an email address):
--   issued                                  (sent_by)
--   sent               message_id           (accepted by the mail server or marked sent)
--   resent             message_id
--   reminded           step, about_expiry, message_id
--   delivery_failed    reply_code           (e.g. "451 4.3.0"; the reply text is not kept)
--   delivery_uncertain reply_code
--   bounced            reply_code
--   extended           from, to             (expires_at moved other than by a revocation)
--   revoked            reason
--   redeemed           user_id              (redeemed_by, when known)
--   anonymised                              (the sweep removed the address)
--
-- actor: who made the change: the transaction-local setting invites.actor
-- (SET LOCAL invites.actor = 'support-desk'), which the invites CLI sets in
-- each of its transactions (the operator's user id, 'operator' when it has
-- none, 'cron' for the sweep); else 'host', the host application. A
-- transaction-local setting, because anything set for a session leaks from
-- one client to the next behind a pooler in transaction mode.
--
-- NOTIFY: each statement that adds events notifies the channel
-- beta_invites_events, once per kind, with a small JSON payload:
--   {"kind": "redeemed", "count": 1, "first_event_id": 41, "last_event_id": 41,
--    "invite_id": "..."}
-- invite_id is there when the statement added one event of that kind (a bulk
-- insert sends one notification with the count, not 100,000). The payload
-- never carries an email address. A listener reads the events after the last
-- id it has seen.
CREATE TABLE IF NOT EXISTS public.beta_invites_events (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  invite_id UUID NOT NULL,  -- no foreign key: the history outlives the invite's row
  kind TEXT NOT NULL CHECK (kind IN ('issued', 'sent', 'resent', 'reminded', 'delivery_failed',
    'delivery_uncertain', 'bounced', 'extended', 'revoked', 'redeemed', 'anonymised')),
  at TIMESTAMPTZ NOT NULL DEFAULT now(),
  actor TEXT NOT NULL,
  detail JSONB
);
COMMENT ON TABLE public.beta_invites_events IS
  'Append-only history of every invite (no email addresses), written by triggers on beta_invites.';
CREATE INDEX IF NOT EXISTS idx_beta_invites_events_invite
  ON public.beta_invites_events (invite_id, id);

-- Append-only: rows are never changed or deleted (TRUNCATE by the owner remains
-- possible, for test databases).
CREATE OR REPLACE FUNCTION public.beta_invites_events_append_only()
  RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION 'beta_invites_events is append-only: % is not allowed', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$fn$;
DROP TRIGGER IF EXISTS beta_invites_events_append_only ON public.beta_invites_events;
CREATE TRIGGER beta_invites_events_append_only
  BEFORE UPDATE OR DELETE ON public.beta_invites_events
  FOR EACH STATEMENT EXECUTE FUNCTION public.beta_invites_events_append_only();

-- Reminders sent: one row per invite and step; a before-expiry step is per
-- expiry date (an invite extended after its reminder is reminded again before
-- its new expiry), an after-sent step once per invite.
CREATE TABLE IF NOT EXISTS public.beta_invites_reminders (
  invite_id UUID NOT NULL REFERENCES public.beta_invites(id) ON DELETE CASCADE,
  step TEXT NOT NULL,  -- 'before-expiry 3d', 'after-sent 7d'
  about_expiry TIMESTAMPTZ NOT NULL,  -- the invite's expires_at when it was reminded
  reminded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  message_id TEXT,  -- for matching a bounce of the reminder
  PRIMARY KEY (invite_id, step, about_expiry)
);
CREATE INDEX IF NOT EXISTS idx_beta_invites_reminders_message_id
  ON public.beta_invites_reminders (message_id);
-- When the invite's last reminder was accepted. On the invite's own row, so
-- that two reminder runs racing for one invite see each other: the second
-- one's SELECT ... FOR UPDATE re-checks its condition on the row the first
-- one changed (a row in another table would not be re-read).
ALTER TABLE public.beta_invites
  ADD COLUMN IF NOT EXISTS reminded_at TIMESTAMPTZ;
COMMENT ON COLUMN public.beta_invites.reminded_at IS
  'When the last reminder (invites remind) was accepted by the mail server. NULL: never reminded.';

CREATE OR REPLACE FUNCTION public.beta_invites_actor()
  RETURNS text LANGUAGE sql STABLE AS $fn$
  SELECT coalesce(nullif(current_setting('invites.actor', true), ''), 'host')
$fn$;

-- One notification per kind of event a statement added (see the header).
CREATE OR REPLACE FUNCTION public.beta_invites_events_notify(
  kind text, n bigint, first_id bigint, last_id bigint)
  RETURNS void LANGUAGE sql AS $fn$
  SELECT pg_notify('beta_invites_events', json_build_object(
    'kind', kind, 'count', n, 'first_event_id', first_id, 'last_event_id', last_id,
    'invite_id', CASE WHEN n = 1 THEN
      (SELECT e.invite_id FROM public.beta_invites_events e WHERE e.id = first_id) END)::text)
   WHERE n > 0
$fn$;

-- Kept lean: it runs once for every bulk insert, and 100,000 invites make 100,000 events.
CREATE OR REPLACE FUNCTION public.beta_invites_history_on_insert()
  RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  who text := public.beta_invites_actor();
  n bigint;
  first_id bigint;
  last_id bigint;
BEGIN
  WITH added AS (
    INSERT INTO public.beta_invites_events (invite_id, kind, actor, detail)
    SELECT i.id, 'issued', who,
           CASE WHEN i.sent_by IS NOT NULL THEN jsonb_build_object('sent_by', i.sent_by) END
      FROM new_invites i
     ORDER BY i.id  -- the index on invite_id is then filled in order: cheaper
    RETURNING id)
  SELECT count(*), min(id), max(id) INTO n, first_id, last_id FROM added;
  PERFORM public.beta_invites_events_notify('issued', n, first_id, last_id);
  -- Inserted as already sent (generate --mark-sent) or redeemed (by the host): rare.
  WITH added AS (
    INSERT INTO public.beta_invites_events (invite_id, kind, actor, detail)
    SELECT i.id, k.kind, who, k.detail
      FROM new_invites i
     CROSS JOIN LATERAL (VALUES
       ('sent', i.sent_at IS NOT NULL,
        CASE WHEN i.message_id IS NOT NULL THEN jsonb_build_object('message_id', i.message_id) END),
       ('redeemed', i.used_at IS NOT NULL,
        CASE WHEN i.redeemed_by IS NOT NULL THEN jsonb_build_object('user_id', i.redeemed_by) END)
     ) AS k(kind, happened, detail)
     WHERE (i.sent_at IS NOT NULL OR i.used_at IS NOT NULL) AND k.happened
    RETURNING id, kind)
  SELECT count(*) INTO n FROM (
    SELECT public.beta_invites_events_notify(a.kind, count(*), min(a.id), max(a.id))
      FROM added a GROUP BY a.kind) AS per_kind;
  RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION public.beta_invites_history_on_update()
  RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  who text := public.beta_invites_actor();
  notified bigint;
BEGIN
  WITH added AS (
  INSERT INTO public.beta_invites_events (invite_id, kind, actor, detail)
  SELECT n.id, k.kind, who, k.detail
    FROM new_invites n
    JOIN old_invites o ON o.id = n.id
   CROSS JOIN LATERAL (VALUES
     ('sent', o.sent_at IS NULL AND n.sent_at IS NOT NULL,
      jsonb_build_object('message_id', n.message_id)),
     ('resent', o.sent_at IS NOT NULL AND n.sent_at IS NOT NULL
                AND n.message_id IS DISTINCT FROM o.message_id,
      jsonb_build_object('message_id', n.message_id)),
     ('delivery_failed', n.delivery_outcome = 'failed'
                         AND n.delivery_outcome_at IS DISTINCT FROM o.delivery_outcome_at,
      jsonb_build_object('reply_code', substring(n.delivery_reply FROM '^\d{3}(?: \d\.\d{1,3}\.\d{1,3})?'))),
     ('delivery_uncertain', n.delivery_outcome = 'uncertain'
                            AND n.delivery_outcome_at IS DISTINCT FROM o.delivery_outcome_at,
      NULL::jsonb),
     ('bounced', n.delivery_outcome = 'bounced' AND o.delivery_outcome IS DISTINCT FROM 'bounced',
      jsonb_build_object('reply_code', substring(n.delivery_reply FROM '^\d{3}(?: \d\.\d{1,3}\.\d{1,3})?'))),
     ('extended', n.expires_at IS DISTINCT FROM o.expires_at
                  AND NOT (o.revoked_at IS NULL AND n.revoked_at IS NOT NULL),
      jsonb_build_object('from', o.expires_at, 'to', n.expires_at)),
     ('revoked', o.revoked_at IS NULL AND n.revoked_at IS NOT NULL,
      jsonb_build_object('reason', n.revoked_reason)),
     ('redeemed', o.used_at IS NULL AND n.used_at IS NOT NULL,
      CASE WHEN n.redeemed_by IS NOT NULL THEN jsonb_build_object('user_id', n.redeemed_by) END),
     ('anonymised', o.anonymized_at IS NULL AND n.anonymized_at IS NOT NULL, NULL::jsonb)
   ) AS k(kind, happened, detail)
   WHERE k.happened
  RETURNING id, kind)
  SELECT count(*) INTO notified FROM (
    SELECT public.beta_invites_events_notify(a.kind, count(*), min(a.id), max(a.id))
      FROM added a GROUP BY a.kind) AS per_kind;
  RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION public.beta_invites_history_on_reminder()
  RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  who text := public.beta_invites_actor();
  notified bigint;
BEGIN
  WITH added AS (
  INSERT INTO public.beta_invites_events (invite_id, kind, actor, detail)
  SELECT r.invite_id, 'reminded', who,
         jsonb_build_object('step', r.step, 'about_expiry', r.about_expiry,
                            'message_id', r.message_id)
    FROM new_reminders r
  RETURNING id, kind)
  SELECT count(*) INTO notified FROM (
    SELECT public.beta_invites_events_notify(a.kind, count(*), min(a.id), max(a.id))
      FROM added a GROUP BY a.kind) AS per_kind;
  RETURN NULL;
END
$fn$;

DROP TRIGGER IF EXISTS beta_invites_history_insert ON public.beta_invites;
CREATE TRIGGER beta_invites_history_insert
  AFTER INSERT ON public.beta_invites
  REFERENCING NEW TABLE AS new_invites
  FOR EACH STATEMENT EXECUTE FUNCTION public.beta_invites_history_on_insert();
DROP TRIGGER IF EXISTS beta_invites_history_update ON public.beta_invites;
CREATE TRIGGER beta_invites_history_update
  AFTER UPDATE ON public.beta_invites
  REFERENCING OLD TABLE AS old_invites NEW TABLE AS new_invites
  FOR EACH STATEMENT EXECUTE FUNCTION public.beta_invites_history_on_update();
DROP TRIGGER IF EXISTS beta_invites_history_reminder ON public.beta_invites_reminders;
CREATE TRIGGER beta_invites_history_reminder
  AFTER INSERT ON public.beta_invites_reminders
  REFERENCING NEW TABLE AS new_reminders
  FOR EACH STATEMENT EXECUTE FUNCTION public.beta_invites_history_on_reminder();

-- The code a person meant, as the invites CLI reads it: spaces and hyphens
-- dropped, upper case, a zero read as the letter O (codes never contain 0).
-- NULL when the result is not 16 symbols of the alphabet (1, I and L are
-- never guessed: 1 could stand for either).
CREATE OR REPLACE FUNCTION public.beta_invites_normalise_code(typed text)
  RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
  SELECT CASE WHEN c ~ '^[23456789ABCDEFGHJKMNOPQRSTUVWXYZ]{16}$' THEN c END
    FROM (SELECT translate(
            regexp_replace(typed,
              '[-\t\n\u000b\f\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]',
              '', 'g'),
            'abcdefghijklmnopqrstuvwxyz0', 'ABCDEFGHIJKLMNOPQRSTUVWXYZO') AS c) AS typed_code
$fn$;

-- Redeem a code for a user, in the caller's transaction: status is one of
-- redeemed, already_redeemed, expired, revoked, unknown, invalid. One
-- conditional UPDATE decides, so of any number of concurrent callers exactly
-- one gets 'redeemed' (at READ COMMITTED, a waiting caller re-checks the
-- condition on the winner's row); a caller that rolls back leaves the code
-- redeemable. The 'redeemed' event is written by the history trigger.
CREATE OR REPLACE FUNCTION public.beta_invites_redeem(code text, user_id uuid DEFAULT NULL)
  RETURNS TABLE (status text, invite_id uuid, cohort text)
  LANGUAGE plpgsql VOLATILE ROWS 1 AS $fn$
#variable_conflict use_variable
DECLARE
  wanted text := public.beta_invites_normalise_code($1);
BEGIN
  IF wanted IS NULL THEN
    RETURN QUERY SELECT 'invalid'::text, NULL::uuid, NULL::text;
    RETURN;
  END IF;
  RETURN QUERY
    UPDATE public.beta_invites AS i
       SET used_at = now(), redeemed_by = $2
     WHERE i.code = wanted AND i.used_at IS NULL AND i.revoked_at IS NULL
       AND i.anonymized_at IS NULL AND i.expires_at > now()
    RETURNING 'redeemed'::text, i.id, i.cohort::text;
  IF FOUND THEN
    RETURN;
  END IF;
  RETURN QUERY SELECT * FROM public.beta_invites_check(wanted);
END
$fn$;

-- The state of a code, changing nothing: redeemable, already_redeemed,
-- expired, revoked, unknown, invalid.
CREATE OR REPLACE FUNCTION public.beta_invites_check(code text)
  RETURNS TABLE (status text, invite_id uuid, cohort text)
  LANGUAGE sql STABLE ROWS 1 AS $fn$
  SELECT CASE
           WHEN w.code IS NULL THEN 'invalid'
           WHEN i.id IS NULL THEN 'unknown'
           WHEN i.used_at IS NOT NULL THEN 'already_redeemed'
           WHEN i.revoked_at IS NOT NULL THEN 'revoked'
           WHEN i.anonymized_at IS NOT NULL OR i.expires_at <= now() THEN 'expired'
           ELSE 'redeemable'
         END,
         i.id, i.cohort::text
    FROM (SELECT public.beta_invites_normalise_code($1) AS code) AS w
    LEFT JOIN public.beta_invites i ON i.code = w.code
$fn$;

-- Invites issued before this migration get the events their timestamps tell
-- (issued, sent, redeemed, revoked, anonymised), so every invite has a history.
INSERT INTO public.beta_invites_events (invite_id, kind, at, actor, detail)
SELECT i.id, k.kind, k.at, 'operator', k.detail
  FROM public.beta_invites i
 CROSS JOIN LATERAL (VALUES
   ('issued', i.created_at, true, NULL::jsonb),
   ('sent', i.sent_at, i.sent_at IS NOT NULL, jsonb_build_object('message_id', i.message_id)),
   ('redeemed', i.used_at, i.used_at IS NOT NULL,
    CASE WHEN i.redeemed_by IS NOT NULL THEN jsonb_build_object('user_id', i.redeemed_by) END),
   ('revoked', i.revoked_at, i.revoked_at IS NOT NULL,
    jsonb_build_object('reason', i.revoked_reason)),
   ('anonymised', i.anonymized_at, i.anonymized_at IS NOT NULL, NULL::jsonb)
 ) AS k(kind, at, happened, detail)
 WHERE k.happened
   AND NOT EXISTS (SELECT 1 FROM public.beta_invites_events e WHERE e.invite_id = i.id);
