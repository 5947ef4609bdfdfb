// See include/CHiredisLibevent.h.
#include <features.h>
#include <hiredis/adapters/libevent.h>
#include "CHiredisLibevent.h"

int approvald_redis_attach(void *context, void *base) {
    return redisLibeventAttach((redisAsyncContext *)context, (struct event_base *)base) == REDIS_OK ? 0 : -1;
}
