// SQLite's default page cache behind a thin wrapper that skips the truncations which have nothing to drop.
//
// At the end of every transaction SQLite truncates its page cache to the database's size. The default cache
// (pcache1) scans its whole hash table, touching every cached page, whenever a page was once given a number far
// past the end, and balancing a b-tree does that for a moment (SQLite renumbers pages through the locking page,
// 1 GiB / page size + 1). With a commit that changes many rows that is nearly every commit, so a commit's cost
// grew with the cache. The wrapper keeps an upper bound of the page numbers the cache may hold and passes a
// truncation on only when a page at or past the limit may be there.
#ifndef APPROVALD_CSQLITE_PAGE_CACHE_H
#define APPROVALD_CSQLITE_PAGE_CACHE_H

/// Installs the wrapper around the default page cache. Only possible before SQLite initializes (before the first
/// connection opens): 1 when installed, 0 when SQLite was already initialized and the default stays.
int approvald_sqlite_wrap_page_cache(void);

/// How many truncations the wrapper skipped and how many it passed on, since the process started.
void approvald_sqlite_page_cache_truncations(unsigned long long *skipped, unsigned long long *passed);

#endif
