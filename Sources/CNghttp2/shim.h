// nghttp2's public API, as the HTTP module sees it.
#ifndef APPROVALD_CNGHTTP2_SHIM_H
#define APPROVALD_CNGHTTP2_SHIM_H
#include <nghttp2/nghttp2.h>
#endif
