-- Issue 17: site-scoped access. A user or API token may be limited to some sites: a
-- grant of site codes and regions, comma-separated ('DAL,ATL,region:South'), resolved
-- against the sites table when the principal is authenticated. NULL: every site.
ALTER TABLE users ADD COLUMN sites TEXT;
ALTER TABLE api_tokens ADD COLUMN sites TEXT;
