// hiredis's asynchronous connections on a libevent loop (attach.c): an adapter of the project's own in place of
// hiredis's adapters/libevent.h, compiled here in C so that no Swift module imports libevent's headers twice.
// Opaque pointers: the caller's types come from CHiredis and CLibevent.
#ifndef APPROVALD_CHIREDIS_LIBEVENT_H
#define APPROVALD_CHIREDIS_LIBEVENT_H

/// Attaches an asynchronous context (`redisAsyncContext *`) to an event base (`struct event_base *`): its reads and
/// writes then run on that base's loop. 0 on success, -1 when the context already has a loop (or no memory).
int approvald_redis_attach(void *context, void *base);

#endif
