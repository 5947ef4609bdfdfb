// hiredis (Debian's 0.14): the reply reader and the asynchronous API. Its libevent adapter is compiled apart
// (CHiredisLibevent): a second module that includes libevent's headers would clash with CLibevent's.
#ifndef APPROVALD_CHIREDIS_SHIM_H
#define APPROVALD_CHIREDIS_SHIM_H
#include <features.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#endif
