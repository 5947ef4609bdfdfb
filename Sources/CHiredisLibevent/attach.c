// See include/CHiredisLibevent.h.
//
// hiredis's own adapter (adapters/libevent.h) costs two epoll_ctl calls a reply and two a write: its read event does
// not persist, so libevent removes it from epoll before the callback and hiredis adds it back after; and every
// command adds a write event, removed again once the socket took the bytes. This one keeps the read event, and
// flushes what the commands of one pass of the loop wrote at the end of that pass, through an event made active by
// hand (no system call): only a write the socket did not take whole waits for a write event. Before the connection
// is up, writes wait for the write event as with hiredis's adapter, which is how a non-blocking connect completes.
#include <stdlib.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include "CHiredisLibevent.h"

typedef struct {
    redisAsyncContext *context;
    struct event *readable, *writable, *flush;
} Events;

// The connection whose pending bytes are being written: a write that did not finish asks for the socket's write
// event, not for another flush. One loop per thread; a connection freed meanwhile is only compared, never read.
static __thread Events *flushing;

static void on_readable(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    redisAsyncHandleRead(((Events *)arg)->context);
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    redisAsyncHandleWrite(((Events *)arg)->context);
}

static void on_flush(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    Events *events = arg;
    flushing = events;
    // May free `events`: a failed write disconnects, and the disconnect cleans up.
    redisAsyncHandleWrite(events->context);
    flushing = NULL;
}

static void add_read(void *data) {
    // Already added (it persists): no system call.
    event_add(((Events *)data)->readable, NULL);
}

static void del_read(void *data) { event_del(((Events *)data)->readable); }

static void add_write(void *data) {
    Events *events = data;
    if ((events->context->c.flags & REDIS_CONNECTED) && flushing != events) {
        // Many commands in one pass, one flush: activating an active event changes nothing.
        event_active(events->flush, EV_WRITE, 0);
    } else {
        event_add(events->writable, NULL);
    }
}

static void del_write(void *data) { event_del(((Events *)data)->writable); }

static void cleanup(void *data) {
    Events *events = data;
    event_free(events->readable);
    event_free(events->writable);
    event_free(events->flush);
    free(events);
}

int approvald_redis_attach(void *opaqueContext, void *opaqueBase) {
    redisAsyncContext *context = opaqueContext;
    struct event_base *base = opaqueBase;
    if (context->ev.data != NULL) return -1;
    Events *events = calloc(1, sizeof(*events));
    if (events == NULL) return -1;
    events->context = context;
    int fd = context->c.fd;
    events->readable = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, events);
    events->writable = event_new(base, fd, EV_WRITE, on_writable, events);
    events->flush = event_new(base, -1, 0, on_flush, events);
    if (events->readable == NULL || events->writable == NULL || events->flush == NULL) {
        if (events->readable) event_free(events->readable);
        if (events->writable) event_free(events->writable);
        if (events->flush) event_free(events->flush);
        free(events);
        return -1;
    }
    context->ev.addRead = add_read;
    context->ev.delRead = del_read;
    context->ev.addWrite = add_write;
    context->ev.delWrite = del_write;
    context->ev.cleanup = cleanup;
    context->ev.data = events;
    // The write event tells when the non-blocking connect is done.
    event_add(events->readable, NULL);
    event_add(events->writable, NULL);
    return 0;
}
