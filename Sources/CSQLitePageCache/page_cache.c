// See include/CSQLitePageCache.h. Each cache belongs to one connection, which one thread uses at a time.
#include "CSQLitePageCache.h"

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>

// Pages renumbered past every number the cache was asked for, a few at a time (a balance renumbers at most a
// handful of pages); more than this and the bound is given up until the next truncation passed on.
#define RENUMBERED_CAPACITY 16

struct renumbered {
    sqlite3_pcache_page *page;
    unsigned key;
};

struct wrapped_cache {
    sqlite3_pcache *inner;
    // Every page the cache may hold has a number at most max(fetched_max, the renumbered ones' keys); when
    // overflowed, there is no bound.
    unsigned fetched_max;
    int renumbered_count;
    int overflowed;
    struct renumbered renumbered[RENUMBERED_CAPACITY];
};

static sqlite3_pcache_methods2 inner_methods;
static atomic_ullong truncations_skipped;
static atomic_ullong truncations_passed;

static unsigned upper_bound(const struct wrapped_cache *cache) {
    if (cache->overflowed) return 0xffffffffu;
    unsigned bound = cache->fetched_max;
    for (int i = 0; i < cache->renumbered_count; i++) {
        if (cache->renumbered[i].key > bound) bound = cache->renumbered[i].key;
    }
    return bound;
}

static void forget_renumbered(struct wrapped_cache *cache, int index) {
    cache->renumbered[index] = cache->renumbered[--cache->renumbered_count];
}

static int renumbered_index(const struct wrapped_cache *cache, const sqlite3_pcache_page *page) {
    for (int i = 0; i < cache->renumbered_count; i++) {
        if (cache->renumbered[i].page == page) return i;
    }
    return -1;
}

static int wrapped_init(void *unused) {
    (void)unused;
    return inner_methods.xInit(inner_methods.pArg);
}

static void wrapped_shutdown(void *unused) {
    (void)unused;
    if (inner_methods.xShutdown) inner_methods.xShutdown(inner_methods.pArg);
}

static sqlite3_pcache *wrapped_create(int page_size, int extra_size, int purgeable) {
    struct wrapped_cache *cache = calloc(1, sizeof *cache);
    if (!cache) return NULL;
    cache->inner = inner_methods.xCreate(page_size, extra_size, purgeable);
    if (!cache->inner) {
        free(cache);
        return NULL;
    }
    return (sqlite3_pcache *)cache;
}

static void wrapped_cachesize(sqlite3_pcache *p, int size) {
    inner_methods.xCachesize(((struct wrapped_cache *)p)->inner, size);
}

static int wrapped_pagecount(sqlite3_pcache *p) {
    return inner_methods.xPagecount(((struct wrapped_cache *)p)->inner);
}

static sqlite3_pcache_page *wrapped_fetch(sqlite3_pcache *p, unsigned key, int create) {
    struct wrapped_cache *cache = (struct wrapped_cache *)p;
    sqlite3_pcache_page *page = inner_methods.xFetch(cache->inner, key, create);
    if (page) {
        if (key > cache->fetched_max) cache->fetched_max = key;
        // A renumbered page handed out under another number was recycled: its old number is gone.
        int index = renumbered_index(cache, page);
        if (index >= 0 && cache->renumbered[index].key != key) forget_renumbered(cache, index);
    }
    return page;
}

static void wrapped_unpin(sqlite3_pcache *p, sqlite3_pcache_page *page, int discard) {
    struct wrapped_cache *cache = (struct wrapped_cache *)p;
    inner_methods.xUnpin(cache->inner, page, discard);
    if (discard) {
        int index = renumbered_index(cache, page);
        if (index >= 0) forget_renumbered(cache, index);
    }
}

static void wrapped_rekey(sqlite3_pcache *p, sqlite3_pcache_page *page, unsigned old_key, unsigned new_key) {
    struct wrapped_cache *cache = (struct wrapped_cache *)p;
    inner_methods.xRekey(cache->inner, page, old_key, new_key);
    int index = renumbered_index(cache, page);
    if (index >= 0) forget_renumbered(cache, index);
    if (new_key <= cache->fetched_max) return;
    if (cache->renumbered_count == RENUMBERED_CAPACITY) {
        cache->overflowed = 1;
        return;
    }
    cache->renumbered[cache->renumbered_count++] = (struct renumbered){ page, new_key };
}

static void wrapped_truncate(sqlite3_pcache *p, unsigned limit) {
    struct wrapped_cache *cache = (struct wrapped_cache *)p;
    unsigned bound = upper_bound(cache);
    if (limit > bound) {
        atomic_fetch_add_explicit(&truncations_skipped, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&truncations_passed, 1, memory_order_relaxed);
    inner_methods.xTruncate(cache->inner, limit);
    // Every page left is numbered below the limit.
    cache->fetched_max = limit > 0 ? limit - 1 : 0;
    cache->renumbered_count = 0;
    cache->overflowed = 0;
}

static void wrapped_destroy(sqlite3_pcache *p) {
    struct wrapped_cache *cache = (struct wrapped_cache *)p;
    inner_methods.xDestroy(cache->inner);
    free(cache);
}

static void wrapped_shrink(sqlite3_pcache *p) {
    inner_methods.xShrink(((struct wrapped_cache *)p)->inner);
}

static sqlite3_pcache_methods2 wrapped_methods = {
    1, NULL, wrapped_init, wrapped_shutdown, wrapped_create, wrapped_cachesize, wrapped_pagecount, wrapped_fetch,
    wrapped_unpin, wrapped_rekey, wrapped_truncate, wrapped_destroy, wrapped_shrink,
};

int approvald_sqlite_wrap_page_cache(void) {
    if (sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &inner_methods) != SQLITE_OK) return 0;
    return sqlite3_config(SQLITE_CONFIG_PCACHE2, &wrapped_methods) == SQLITE_OK;
}

void approvald_sqlite_page_cache_truncations(unsigned long long *skipped, unsigned long long *passed) {
    *skipped = atomic_load_explicit(&truncations_skipped, memory_order_relaxed);
    *passed = atomic_load_explicit(&truncations_passed, memory_order_relaxed);
}
