// Counts the allocations of the process it is preloaded into (LD_PRELOAD): malloc, calloc, realloc and
// posix_memalign/aligned_alloc calls, over every thread. SIGUSR2 writes the count so far to the file
// $MALLOC_COUNT_FILE (a decimal number and a newline), so that a benchmark can read it before and after a phase.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong count;
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);

// dlsym may itself call calloc before real_calloc is known: a small static arena serves those calls.
static char bootstrap[4096];
static size_t bootstrap_used;

static void write_count(int signal) {
    (void)signal;
    const char *path = getenv("MALLOC_COUNT_FILE");
    if (!path) return;
    char text[32];
    unsigned long value = atomic_load(&count);
    int length = 0;
    char digits[24];
    do { digits[length++] = (char)('0' + value % 10); value /= 10; } while (value);
    for (int i = 0; i < length; i++) text[i] = digits[length - 1 - i];
    text[length] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    (void)!write(fd, text, (size_t)length + 1);
    close(fd);
}

__attribute__((constructor)) static void setup(void) {
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = write_count;
    action.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &action, NULL);
}

void *malloc(size_t size) {
    if (!real_malloc) setup();
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_malloc(size);
}

void *calloc(size_t n, size_t size) {
    if (!real_calloc) {
        size_t bytes = (n * size + 15) & ~(size_t)15;
        if (bootstrap_used + bytes > sizeof bootstrap) return NULL;
        void *p = bootstrap + bootstrap_used;
        bootstrap_used += bytes;
        return p;  // zeroed: static storage
    }
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_calloc(n, size);
}

void *realloc(void *pointer, size_t size) {
    if (!real_realloc) setup();
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_realloc(pointer, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (!real_posix_memalign) setup();
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_posix_memalign(out, alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    if (!real_aligned_alloc) setup();
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    return real_aligned_alloc(alignment, size);
}

void free(void *pointer) {
    static void (*real_free)(void *);
    if ((char *)pointer >= bootstrap && (char *)pointer < bootstrap + sizeof bootstrap) return;
    if (!real_free) real_free = dlsym(RTLD_NEXT, "free");
    real_free(pointer);
}
