-- 998_beta_invites_events_in_commit_order.sql
-- Reading the history without ever missing an event.
--
-- Event ids come from a sequence: they are handed out when a transaction
-- writes its events, not when it commits. Two transactions at once: the first
-- takes id 100 and is still working, the second takes id 101 and commits. A
-- reader that keeps "the last id I have read" reads 101, moves past 100, and
-- never sees it once the first transaction commits.
--
-- So each event now carries its transaction's id (tx, a 64-bit transaction id
-- that never wraps), and a reader asks for the events of transactions that
-- have all ended:
--   SELECT * FROM public.beta_invites_events_after(checkpoint)
-- returns the events with checkpoint <= tx < the oldest transaction still
-- running, in the order (tx, id), each row carrying next_checkpoint: every
-- transaction below it has committed or rolled back, so nothing can appear
-- there later. Start at 0; keep the next_checkpoint of the last call that
-- returned rows. A long-open transaction delays what comes after it; nothing
-- is skipped. Events written before this migration have tx 0.
ALTER TABLE public.beta_invites_events
  ADD COLUMN IF NOT EXISTS tx BIGINT NOT NULL DEFAULT 0;
ALTER TABLE public.beta_invites_events
  ALTER COLUMN tx SET DEFAULT (pg_current_xact_id()::text::bigint);
-- Transaction ids grow as rows are appended: a BRIN index finds the recent
-- ones for almost nothing per insert.
CREATE INDEX IF NOT EXISTS idx_beta_invites_events_tx
  ON public.beta_invites_events USING brin (tx);

CREATE OR REPLACE FUNCTION public.beta_invites_events_after(checkpoint BIGINT)
  RETURNS TABLE (id BIGINT, invite_id UUID, kind TEXT, at TIMESTAMPTZ, actor TEXT,
                 detail JSONB, tx BIGINT, next_checkpoint BIGINT)
  LANGUAGE sql STABLE AS $fn$
  -- One statement: the horizon and the rows come from the same snapshot.
  SELECT e.id, e.invite_id, e.kind, e.at, e.actor, e.detail, e.tx, h.below
    FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS below) AS h
    JOIN public.beta_invites_events AS e ON e.tx >= checkpoint AND e.tx < h.below
   ORDER BY e.tx, e.id
$fn$;
COMMENT ON FUNCTION public.beta_invites_events_after(BIGINT) IS
  'The events of transactions that have all ended, from checkpoint on; keep next_checkpoint.';
