// libqrencode's API (Debian's libqrencode-dev), for drawing activation QR codes.
#ifndef APPROVALD_CQRENCODE_SHIM_H
#define APPROVALD_CQRENCODE_SHIM_H
#include <qrencode.h>
#endif
