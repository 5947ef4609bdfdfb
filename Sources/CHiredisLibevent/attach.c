// See include/CHiredisLibevent.h.
//
// hiredis's own adapter (adapters/libevent.h) costs two epoll_ctl calls a reply: its read event does not persist,
// so libevent takes it out of epoll before the callback and hiredis puts it back after. Here the read event
// persists. Writes are as with hiredis's adapter: a command adds the write event, and the next pass of the loop
// writes what every callback since has queued. (Writing at the end of the pass that queued the command instead
// saved the write event's two calls too, but under load Redis then got more, smaller batches, and took more CPU:
// measured with bench/redis/run.)
#include <stdlib.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include "CHiredisLibevent.h"

typedef struct {
    redisAsyncContext *context;
    struct event *readable, *writable;
} Events;

static void on_readable(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    redisAsyncHandleRead(((Events *)arg)->context);
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    redisAsyncHandleWrite(((Events *)arg)->context);
}

static void add_read(void *data) {
    // Already added (it persists): no system call.
    event_add(((Events *)data)->readable, NULL);
}

static void del_read(void *data) { event_del(((Events *)data)->readable); }

static void add_write(void *data) { event_add(((Events *)data)->writable, NULL); }

static void del_write(void *data) { event_del(((Events *)data)->writable); }

static void cleanup(void *data) {
    Events *events = data;
    event_free(events->readable);
    event_free(events->writable);
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
    if (events->readable == NULL || events->writable == NULL) {
        if (events->readable) event_free(events->readable);
        if (events->writable) event_free(events->writable);
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
