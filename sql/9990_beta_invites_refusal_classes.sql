-- 9990_beta_invites_refusal_classes.sql
-- Whose fault a refusal was, and the repair of what the old rule got wrong.
--
-- Until now every 5xx reply bounced the invite and suppressed the address for good. A 5xx is
-- often the sender's fault (550 5.7.26: our domain is unauthenticated; 554 5.7.1: relay access
-- denied), and then it said nothing about the recipient. Refusals now have a class
-- (beta_invites_cli/delivery/refusals.py; the README has the table):
--   recipient-gone   bounced, address suppressed (as before);
--   soft             failed, tried again; suppressed (soft-bounced) after soft refusals on
--                    INVITES_SOFT_BOUNCE_LIMIT different days;
--   sender-refused   failed, never suppressed;
--   unclassified     failed the first time, bounced by a second one on another day.

ALTER TABLE public.beta_invites
  ADD COLUMN IF NOT EXISTS delivery_class TEXT
  CHECK (delivery_class IN ('recipient-gone', 'soft', 'sender-refused', 'unclassified'));
COMMENT ON COLUMN public.beta_invites.delivery_class IS
  'The class of the refusal delivery_reply records: recipient-gone, soft, sender-refused or unclassified (NULL: no refusal, or not an SMTP one).';

-- When the recipient reported the invitation as spam (a complaint matched to this invite):
-- the report's complaint rate, and send's refusal past 0.3 %.
ALTER TABLE public.beta_invites
  ADD COLUMN IF NOT EXISTS complained_at TIMESTAMPTZ;
COMMENT ON COLUMN public.beta_invites.complained_at IS
  'When a spam complaint about this invite''s message was imported (bounces import). NULL: none.';

ALTER TABLE public.beta_invites_suppressions
  DROP CONSTRAINT IF EXISTS beta_invites_suppressions_reason_check;
ALTER TABLE public.beta_invites_suppressions
  ADD CONSTRAINT beta_invites_suppressions_reason_check
  CHECK (reason IN ('bounced', 'soft-bounced', 'unsubscribed', 'complained', 'manual'));
COMMENT ON COLUMN public.beta_invites_suppressions.reason IS
  'bounced (the address does not exist), soft-bounced (refused for now on too many days), unsubscribed, complained (a spam complaint) or manual.';

ALTER TABLE public.beta_invites_events
  DROP CONSTRAINT IF EXISTS beta_invites_events_kind_check;
ALTER TABLE public.beta_invites_events
  ADD CONSTRAINT beta_invites_events_kind_check
  CHECK (kind IN ('issued', 'sent', 'resent', 'reminded', 'delivery_failed',
    'delivery_uncertain', 'bounced', 'reclassified', 'complained', 'extended', 'revoked',
    'redeemed', 'anonymised'));

-- The days an address was refused, by class (soft, unclassified): what the soft-bounce limit
-- and the second unclassified refusal count. By digest, like the suppression list.
CREATE TABLE IF NOT EXISTS public.beta_invites_refusal_days (
  digest BYTEA NOT NULL CHECK (octet_length(digest) = 32),
  kind TEXT NOT NULL CHECK (kind IN ('soft', 'unclassified')),
  day DATE NOT NULL,
  PRIMARY KEY (digest, kind, day)
);
COMMENT ON TABLE public.beta_invites_refusal_days IS
  'Days an address (by invites_email_digest) was refused for now or unclassifiably: the soft-bounce limit counts them.';

-- The class of a kept reply or a report's Diagnostic-Code (with its Status field): the rules
-- of beta_invites_cli/delivery/refusals.py, in SQL (a test holds the two together). NULL when
-- it is not a refusal.
CREATE OR REPLACE FUNCTION public.beta_invites_refusal_kind(reply text, status text DEFAULT NULL)
  RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT CASE
    WHEN c.basic IS NULL AND c.enhanced IS NULL THEN NULL
    WHEN coalesce(c.basic, c.enhanced) LIKE '2%' THEN NULL
    WHEN c.enhanced ~ '^(5\.1\.(1|2|3|6|10)|5\.2\.1)$' THEN 'recipient-gone'
    WHEN c.enhanced ~ '^5\.2\.2$' THEN 'soft'
    WHEN c.enhanced ~ '^4\.7\.\d{1,3}$' THEN 'sender-refused'
    WHEN c.enhanced ~ '^4\.\d{1,3}\.\d{1,3}$' THEN 'soft'
    WHEN c.enhanced ~ '^5\.7\.\d{1,3}$' THEN 'sender-refused'
    WHEN c.enhanced ~ '^5\.[346]\.\d{1,3}$' THEN 'sender-refused'
    WHEN c.words ~* ('spam|block|black ?list|policy|relay|authenticat|reputation|dmarc|\yspf\y|dkim'
                     '|not authori[sz]ed|rate limit|too many|starttls|encryption required')
      THEN 'sender-refused'
    WHEN c.words ~* ('user unknown|unknown (user|recipient)|no such (user|mailbox|recipient|address)'
                     '|mailbox (not found|does not exist|is disabled)|address does not exist'
                     '|account (is )?disabled')
      THEN 'recipient-gone'
    WHEN c.words ~* 'mailbox (is )?full|over quota|quota exceeded|insufficient storage' THEN 'soft'
    WHEN c.basic ~ '^53[05]$' THEN 'sender-refused'
    WHEN c.basic ~ '^4\d\d$' THEN 'soft'
    WHEN coalesce(c.basic, c.enhanced) LIKE '5%' THEN 'unclassified'
  END
  FROM (SELECT substring(reply FROM
                 '^\s*(?:[245]\.\d{1,3}\.\d{1,3}\s+)?(?:[\w-]+;\s*)?([245]\d\d)(?:[\s-]|$)') AS basic,
               coalesce(
                 substring(status FROM '(?<![\d.])([245]\.(?:[1-9]\d{0,2}\.\d{1,3}|0\.[1-9]\d{0,2}))(?![\d.])'),
                 substring(reply FROM '(?<![\d.])([245]\.(?:[1-9]\d{0,2}\.\d{1,3}|0\.[1-9]\d{0,2}))(?![\d.])'),
                 substring(status FROM '(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])'),
                 substring(reply FROM '(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])')) AS enhanced,
               regexp_replace(reply, '<?[^\s<>@]+@[^\s<>]+>?', ' ', 'g') AS words) AS c
$fn$;
COMMENT ON FUNCTION public.beta_invites_refusal_kind(text, text) IS
  'The class of an SMTP refusal: recipient-gone, soft, sender-refused, unclassified; NULL when it is not one.';

-- The history now says which class each failure was (the code and the class, never the reply
-- text), records a bounce set back to failed as `reclassified`, and a complaint.
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
      jsonb_strip_nulls(jsonb_build_object(
        'reply_code', substring(n.delivery_reply FROM '^(?:\d{3} )?(?:\d\.\d{1,3}\.\d{1,3}|\d{3})'),
        'class', n.delivery_class))),
     ('delivery_uncertain', n.delivery_outcome = 'uncertain'
                            AND n.delivery_outcome_at IS DISTINCT FROM o.delivery_outcome_at,
      NULL::jsonb),
     ('bounced', n.delivery_outcome = 'bounced' AND o.delivery_outcome IS DISTINCT FROM 'bounced',
      jsonb_strip_nulls(jsonb_build_object(
        'reply_code', substring(n.delivery_reply FROM '^(?:\d{3} )?(?:\d\.\d{1,3}\.\d{1,3}|\d{3})'),
        'class', n.delivery_class))),
     ('reclassified', o.delivery_outcome = 'bounced' AND n.delivery_outcome = 'failed'
                      AND n.delivery_outcome_at IS NOT DISTINCT FROM o.delivery_outcome_at,
      jsonb_build_object('from', 'bounced', 'to', 'failed', 'class', n.delivery_class)),
     ('complained', o.complained_at IS NULL AND n.complained_at IS NOT NULL, NULL::jsonb),
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

-- The repair. Invites the old rule bounced for a reply that is not "recipient gone" go back to
-- failed (retryable; the history records each as `reclassified`), keeping when they failed. An
-- unclassified one counts as its first unclassified day. A bounce without an SMTP code (an
-- address that could not be written) stays bounced.
SET LOCAL invites.actor = 'migration 9990';

CREATE TEMPORARY TABLE beta_invites_repaired ON COMMIT DROP AS
SELECT id, email, delivery_outcome_at,
       public.beta_invites_refusal_kind(delivery_reply) AS kind
  FROM public.beta_invites
 WHERE delivery_outcome = 'bounced'
   AND public.beta_invites_refusal_kind(delivery_reply) IS DISTINCT FROM 'recipient-gone'
   AND public.beta_invites_refusal_kind(delivery_reply) IS NOT NULL;

UPDATE public.beta_invites AS i
   SET delivery_outcome = 'failed', delivery_class = r.kind
  FROM beta_invites_repaired AS r
 WHERE i.id = r.id;

UPDATE public.beta_invites
   SET delivery_class = public.beta_invites_refusal_kind(delivery_reply)
 WHERE delivery_outcome IN ('bounced', 'failed') AND delivery_class IS NULL
   AND delivery_reply IS NOT NULL;

INSERT INTO public.beta_invites_refusal_days (digest, kind, day)
SELECT DISTINCT public.invites_email_digest(email), 'unclassified', delivery_outcome_at::date
  FROM beta_invites_repaired
 WHERE kind = 'unclassified' AND email IS NOT NULL AND delivery_outcome_at IS NOT NULL
ON CONFLICT DO NOTHING;

-- The suppressions those bounces alone created: an address that another invite's real bounce
-- (recipient gone) also suppressed stays suppressed; so do unsubscribes, complaints and
-- entries by hand.
DELETE FROM public.beta_invites_suppressions AS s
 USING beta_invites_repaired AS r
 WHERE r.email IS NOT NULL
   AND s.digest = public.invites_email_digest(r.email)
   AND s.reason = 'bounced' AND s.source IN ('send', 'bounces-import')
   AND NOT EXISTS (
     SELECT 1 FROM public.beta_invites AS other
      WHERE other.delivery_outcome = 'bounced'
        AND other.email IS NOT NULL
        AND public.invites_email_digest(other.email) = s.digest);
