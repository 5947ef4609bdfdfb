// SQLite's C API.
#ifndef APPROVALD_CSQLITE_SHIM_H
#define APPROVALD_CSQLITE_SHIM_H
#include <sqlite3.h>
#endif
