-- 992_beta_invites_drop_duplicate_code_index.sql
-- The seed declares `code ... UNIQUE`, which already creates the unique index
-- beta_invites_code_key, and then creates idx_beta_invites_code, a second
-- unique index on exactly the same column. Every INSERT pays for both and
-- every lookup can use either. Dropping the copy changes no behaviour: the
-- constraint's index still enforces uniqueness and serves the
-- /auth/register lookup by code.
--
-- Guarded so that it never leaves `code` without a unique index: it drops
-- idx_beta_invites_code only when another unique index on (code) exists.

DO $$
BEGIN
  IF EXISTS (
    SELECT 1
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid = 'public.beta_invites'::regclass
       AND i.indisunique
       AND i.indkey::text = (
             SELECT a.attnum::text
               FROM pg_attribute a
              WHERE a.attrelid = 'public.beta_invites'::regclass
                AND a.attname = 'code')
       AND c.relname <> 'idx_beta_invites_code'
  ) THEN
    DROP INDEX IF EXISTS public.idx_beta_invites_code;
  END IF;
END
$$;
