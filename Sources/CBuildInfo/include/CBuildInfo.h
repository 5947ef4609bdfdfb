// The version and commit the binary was built from (see build_info.c).
#ifndef APPROVALD_CBUILDINFO_H
#define APPROVALD_CBUILDINFO_H

const char *approvald_build_version(void);
const char *approvald_build_commit(void);

#endif
