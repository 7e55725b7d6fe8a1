-- 9991_beta_invites_waitlist_and_seats.sql
-- Seats that refill from a waitlist: a soft launch paced on purpose.
--
-- A cohort may have a number of seats (beta_invites_cohorts.seats): the invites that take one
-- are the pending and the redeemed ones, so a seat is free again when its invite expires or is
-- revoked. People wait for a seat in public.beta_invites_waitlist, in order of priority
-- (higher first), then of joining. `invites fill` invites the next ones while seats are free,
-- at most per_day a day; nothing ever leaves more seats taken than a cohort has (fill and
-- every other issuing command take the issuing lock, then count).
--
-- Privacy: a waiting person's address is PII like an invite's. An entry keeps its address only
-- while it waits: once invited, the invite holds it (and the entry points at the invite, whose
-- id it gave); removed, it holds none. The history never carries an address.

CREATE TABLE IF NOT EXISTS public.beta_invites_cohorts (
  cohort VARCHAR(64) PRIMARY KEY,
  -- NULL: no cap.
  seats INTEGER CHECK (seats >= 0),
  -- How many `invites fill` invites a day when it is not told (--per-day); NULL: no limit.
  per_day INTEGER CHECK (per_day > 0),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON TABLE public.beta_invites_cohorts IS
  'Per cohort: its seats (pending + redeemed invites may not pass them) and the pace of invites fill.';

CREATE TABLE IF NOT EXISTS public.beta_invites_waitlist (
  -- Becomes the id of the invite the entry gets, so the entry's history is the invite's.
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  cohort VARCHAR(64) NOT NULL,
  -- Only while waiting: NULL once invited (the invite holds it) or removed.
  email VARCHAR(320),
  source TEXT,
  priority INTEGER NOT NULL DEFAULT 0,
  joined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  invited_at TIMESTAMPTZ,
  invite_id UUID REFERENCES public.beta_invites(id) ON DELETE SET NULL,
  invited_position INTEGER,  -- where it stood in the queue when it was invited
  removed_at TIMESTAMPTZ,
  CHECK (email IS NOT NULL OR invited_at IS NOT NULL OR removed_at IS NOT NULL)
);
COMMENT ON TABLE public.beta_invites_waitlist IS
  'People waiting for a seat in a cohort; the address only while waiting (no address once invited or removed).';

-- One waiting entry per person and cohort (concurrent joins of one address make one entry).
CREATE UNIQUE INDEX IF NOT EXISTS idx_beta_invites_waitlist_waiting
  ON public.beta_invites_waitlist (cohort, public.invites_email_key(email))
  WHERE email IS NOT NULL;
-- The queue, in the order fill takes it.
CREATE INDEX IF NOT EXISTS idx_beta_invites_waitlist_queue
  ON public.beta_invites_waitlist (cohort, priority DESC, joined_at, id)
  WHERE email IS NOT NULL;
-- Today's invitations per cohort (the day's quota) and the report.
CREATE INDEX IF NOT EXISTS idx_beta_invites_waitlist_invited
  ON public.beta_invites_waitlist (cohort, invited_at)
  WHERE invited_at IS NOT NULL;
-- The entry of an invite (the foreign key's ON DELETE SET NULL looks it up).
CREATE INDEX IF NOT EXISTS idx_beta_invites_waitlist_invite
  ON public.beta_invites_waitlist (invite_id)
  WHERE invite_id IS NOT NULL;
-- An address looked up across cohorts (a person holding an invite already).
CREATE INDEX IF NOT EXISTS idx_beta_invites_waitlist_email
  ON public.beta_invites_waitlist (public.invites_email_key(email))
  WHERE email IS NOT NULL;

-- Seats taken per cohort: an index-only scan of the invites that may hold one (neither revoked
-- nor swept), with what tells a pending invite from an expired one.
CREATE INDEX IF NOT EXISTS idx_beta_invites_cohort_taken
  ON public.beta_invites (cohort, expires_at) INCLUDE (used_at)
  WHERE revoked_at IS NULL AND anonymized_at IS NULL;

ALTER TABLE public.beta_invites_events
  DROP CONSTRAINT IF EXISTS beta_invites_events_kind_check;
ALTER TABLE public.beta_invites_events
  ADD CONSTRAINT beta_invites_events_kind_check
  CHECK (kind IN ('issued', 'sent', 'resent', 'reminded', 'delivery_failed',
    'delivery_uncertain', 'bounced', 'reclassified', 'complained', 'extended', 'revoked',
    'redeemed', 'anonymised', 'waitlisted', 'invited_from_waitlist', 'seat_freed'));

-- Where an address stands in a cohort's queue (1 is next); NULL when it is not waiting.
CREATE OR REPLACE FUNCTION public.beta_invites_waitlist_position(email text, cohort text)
  RETURNS bigint LANGUAGE sql STABLE AS $fn$
  SELECT 1 + (SELECT count(*) FROM public.beta_invites_waitlist AS o
               WHERE o.cohort = me.cohort AND o.email IS NOT NULL
                 AND (o.priority > me.priority
                      OR (o.priority = me.priority AND (o.joined_at, o.id) < (me.joined_at, me.id))))
    FROM public.beta_invites_waitlist AS me
   WHERE me.cohort = $2 AND me.email IS NOT NULL
     AND public.invites_email_key(me.email) = public.invites_email_key($1)
$fn$;
COMMENT ON FUNCTION public.beta_invites_waitlist_position(text, text) IS
  'Where an address stands in a cohort''s waitlist (1 is next); NULL when it is not waiting.';

-- The host's landing page: put an address on a cohort's waitlist, in the caller's transaction.
-- status: joined, already_waiting, already_invited (holds a live or redeemed invite),
-- suppressed, invalid (not an address, or not a cohort label).
CREATE OR REPLACE FUNCTION public.beta_invites_waitlist_join(
  email text, cohort text, source text DEFAULT NULL)
  RETURNS TABLE (status text, "position" bigint) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
  address text := btrim($1);
  label text := $2;
  added uuid;
BEGIN
  IF address IS NULL OR length(address) > 320
     OR address !~ '^[^@[:space:]]+@[^@[:space:].]+(\.[^@[:space:].]+)+$'
     OR label IS NULL OR length(label) NOT BETWEEN 1 AND 64 OR label <> btrim(label)
     OR label ~ '[[:cntrl:]]' THEN
    RETURN QUERY SELECT 'invalid'::text, NULL::bigint;
    RETURN;
  END IF;
  IF EXISTS (SELECT 1 FROM public.beta_invites_suppressions AS s
              WHERE s.digest = public.invites_email_digest(address)) THEN
    RETURN QUERY SELECT 'suppressed'::text, NULL::bigint;
    RETURN;
  END IF;
  IF EXISTS (SELECT 1 FROM public.beta_invites AS b
              WHERE public.invites_email_key(b.email) = public.invites_email_key(address)
                AND (b.used_at IS NOT NULL
                     OR (b.revoked_at IS NULL AND b.anonymized_at IS NULL
                         AND b.expires_at > now()))) THEN
    RETURN QUERY SELECT 'already_invited'::text, NULL::bigint;
    RETURN;
  END IF;
  INSERT INTO public.beta_invites_waitlist AS w (cohort, email, source)
  VALUES (label, address, $3)
  ON CONFLICT (cohort, public.invites_email_key(email)) WHERE email IS NOT NULL DO NOTHING
  RETURNING w.id INTO added;
  RETURN QUERY SELECT CASE WHEN added IS NULL THEN 'already_waiting' ELSE 'joined' END,
                      public.beta_invites_waitlist_position(address, label);
END
$fn$;
COMMENT ON FUNCTION public.beta_invites_waitlist_join(text, text, text) IS
  'Put an address on a cohort''s waitlist: (status, position); status joined, already_waiting, already_invited, suppressed or invalid.';

-- The waitlist's history: joining, and being invited (with the place it had in the queue).
-- The event's invite_id is the entry's id, which its invite takes.
CREATE OR REPLACE FUNCTION public.beta_invites_history_on_waitlist()
  RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  who text := public.beta_invites_actor();
  notified bigint;
BEGIN
  IF TG_OP = 'INSERT' THEN
    WITH added AS (
      INSERT INTO public.beta_invites_events (invite_id, kind, actor, detail)
      SELECT w.id, 'waitlisted', who,
             jsonb_strip_nulls(jsonb_build_object('cohort', w.cohort, 'source', w.source,
                                                  'priority', w.priority))
        FROM new_entries w
      RETURNING id)
    SELECT public.beta_invites_events_notify('waitlisted', count(*), min(id), max(id))
      INTO notified FROM added HAVING count(*) > 0;
  ELSE
    WITH added AS (
      INSERT INTO public.beta_invites_events (invite_id, kind, actor, detail)
      SELECT n.id, 'invited_from_waitlist', who,
             jsonb_strip_nulls(jsonb_build_object('cohort', n.cohort,
                                                  'position', n.invited_position))
        FROM new_entries n JOIN old_entries o ON o.id = n.id
       WHERE o.invited_at IS NULL AND n.invited_at IS NOT NULL
      RETURNING id)
    SELECT public.beta_invites_events_notify('invited_from_waitlist', count(*), min(id), max(id))
      INTO notified FROM added HAVING count(*) > 0;
  END IF;
  RETURN NULL;
END
$fn$;
DROP TRIGGER IF EXISTS beta_invites_waitlist_history_insert ON public.beta_invites_waitlist;
CREATE TRIGGER beta_invites_waitlist_history_insert
  AFTER INSERT ON public.beta_invites_waitlist
  REFERENCING NEW TABLE AS new_entries
  FOR EACH STATEMENT EXECUTE FUNCTION public.beta_invites_history_on_waitlist();
DROP TRIGGER IF EXISTS beta_invites_waitlist_history_update ON public.beta_invites_waitlist;
CREATE TRIGGER beta_invites_waitlist_history_update
  AFTER UPDATE ON public.beta_invites_waitlist
  REFERENCING OLD TABLE AS old_entries NEW TABLE AS new_entries
  FOR EACH STATEMENT EXECUTE FUNCTION public.beta_invites_history_on_waitlist();

-- A seat freed: an unredeemed invite of a cohort with seats revoked, or swept after expiry.
CREATE OR REPLACE FUNCTION public.beta_invites_history_on_seat_freed()
  RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  who text := public.beta_invites_actor();
  notified bigint;
BEGIN
  WITH added AS (
    INSERT INTO public.beta_invites_events (invite_id, kind, actor, detail)
    SELECT n.id, 'seat_freed', who,
           jsonb_build_object('cohort', n.cohort,
                              'why', CASE WHEN n.revoked_at IS NOT NULL THEN 'revoked'
                                          ELSE 'expired' END)
      FROM new_invites n
      JOIN old_invites o ON o.id = n.id
      JOIN public.beta_invites_cohorts c ON c.cohort = n.cohort AND c.seats IS NOT NULL
     WHERE n.used_at IS NULL
       AND ((o.revoked_at IS NULL AND n.revoked_at IS NOT NULL AND o.anonymized_at IS NULL)
            OR (o.anonymized_at IS NULL AND n.anonymized_at IS NOT NULL
                AND n.revoked_at IS NULL))
    RETURNING id)
  SELECT public.beta_invites_events_notify('seat_freed', count(*), min(id), max(id))
    INTO notified FROM added HAVING count(*) > 0;
  RETURN NULL;
END
$fn$;
DROP TRIGGER IF EXISTS beta_invites_seat_freed ON public.beta_invites;
CREATE TRIGGER beta_invites_seat_freed
  AFTER UPDATE ON public.beta_invites
  REFERENCING OLD TABLE AS old_invites NEW TABLE AS new_invites
  FOR EACH STATEMENT EXECUTE FUNCTION public.beta_invites_history_on_seat_freed();
