// The version and commit baked in at build time: the Makefile writes generated/build_info.h (ignored by git) before
// it builds, and only when its contents change, so that a new commit recompiles this file alone. A build without the
// Makefile says so.
#include "CBuildInfo.h"

#if __has_include("generated/build_info.h")
#include "generated/build_info.h"
#endif

#ifndef APPROVALD_VERSION
#define APPROVALD_VERSION "0.0.0-dev"
#endif
#ifndef APPROVALD_COMMIT
#define APPROVALD_COMMIT "unknown"
#endif

const char *approvald_build_version(void) { return APPROVALD_VERSION; }
const char *approvald_build_commit(void) { return APPROVALD_COMMIT; }
