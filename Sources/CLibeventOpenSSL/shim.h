// libevent's OpenSSL bufferevents.
#ifndef APPROVALD_CLIBEVENT_OPENSSL_SHIM_H
#define APPROVALD_CLIBEVENT_OPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <event2/bufferevent_ssl.h>
#endif
