// SQLite's C API, with a shim for the macro the importer cannot see.
#ifndef APPROVALD_CSQLITE_SHIM_H
#define APPROVALD_CSQLITE_SHIM_H
#include <sqlite3.h>

/// SQLITE_TRANSIENT is a cast macro: SQLite copies bound text and blobs.
static inline sqlite3_destructor_type approvald_sqlite_transient(void) {
    return SQLITE_TRANSIENT;
}
#endif
