// libevent's core, listener, bufferevent (plain and OpenSSL) and pthreads APIs, with shims for what the importer cannot see.
#ifndef APPROVALD_CLIBEVENT_SHIM_H
#define APPROVALD_CLIBEVENT_SHIM_H
// libevent's event-config.h defines _GNU_SOURCE. Were it seen before glibc's features.h, this module would declare
// system types (fd_set) differently from Glibc and the other C modules, and a clean build would fail to import
// them together. features.h first settles glibc's feature macros as everywhere else; the later define is inert.
#include <features.h>
#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <event2/bufferevent_ssl.h>
// malloc_trim, which Glibc's module does not export: the server hands freed connection memory back with it.
#include <malloc.h>

/// `evtimer_new` and friends are macros.
static inline struct event *approvald_evtimer_new(struct event_base *base, event_callback_fn cb, void *arg) {
    return event_new(base, -1, 0, cb, arg);
}
static inline struct event *approvald_evsignal_new(struct event_base *base, int signum, event_callback_fn cb,
                                                   void *arg) {
    return event_new(base, signum, EV_SIGNAL | EV_PERSIST, cb, arg);
}
#endif
